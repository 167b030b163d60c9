#!/usr/bin/env bash
# Push this repository's committed tree (HEAD) to a Hugging Face Space as one fresh snapshot commit.
#
#   scripts/push_space.sh REMOTE [--model-repo OWNER/NAME]
#
# REMOTE is the Space's git URL, e.g. https://huggingface.co/spaces/OWNER/NAME (git asks for a user name and,
# as password, a write token; or use a credential helper), or any git remote.
#
# The Hub refuses plain git files over 10 MB, and this repository's history holds model/model.keras as one, so
# its history cannot be pushed. Instead HEAD's tree is exported into a new repository with git-lfs enabled, where
# `git add` routes *.keras, *.tflite, *.npz (.gitattributes) through LFS, and committed on top of the Space's
# current commit (if any; no force push), after checking that no blob over 10 MB is left.
#
# --model-repo OWNER/NAME: leave model/ out and name that published model repo in the README front matter
# (`models:`); then set the Space variable MODEL_ID=OWNER/NAME (Settings -> Variables), or the app has no model.
set -euo pipefail

usage() { echo "usage: $0 REMOTE [--model-repo OWNER/NAME]" >&2; exit 2; }
remote="" model_repo=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model-repo) [ $# -ge 2 ] || usage; model_repo="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) usage ;;
    *) [ -z "$remote" ] || usage; remote="$1"; shift ;;
  esac
done
[ -n "$remote" ] || usage
if [ -n "$model_repo" ] && ! [[ "$model_repo" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
  echo "error: --model-repo must be a Hub repo id OWNER/NAME, not '$model_repo'" >&2; exit 2
fi
if ! git lfs version >/dev/null 2>&1; then
  echo "error: git-lfs is not installed (apt-get install git-lfs, brew install git-lfs, https://git-lfs.com)" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && git rev-parse --show-toplevel)"
head="$(git -C "$root" rev-parse HEAD)"
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes are not pushed: the Space gets HEAD ($head)" >&2
fi
limit=$((10 * 1024 * 1024))
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
shown="${remote//:\/\/*@/:\/\/***@}"  # never print a token embedded in the URL

git init -q -b main "$work/space"
cd "$work/space"
git lfs install --local >/dev/null  # LFS filters and the pre-push hook for this repository only
git config user.name "$(git -C "$root" config user.name || echo push_space)"
git config user.email "$(git -C "$root" config user.email || echo push_space@localhost)"

parent=""
if git fetch -q --depth=1 "$remote" main 2>/dev/null; then
  parent="$(git rev-parse FETCH_HEAD)"
  git reset -q --soft "$parent"  # the snapshot becomes the next commit of the Space's history
fi

git -C "$root" archive --format=tar HEAD | tar -x -C .
if [ -n "$model_repo" ]; then
  rm -rf model
  if ! awk 'NR == 1 && $0 != "---" {exit 1}' README.md || grep -q '^models:' README.md; then
    echo "error: README.md needs front matter without a models: entry to add $model_repo" >&2; exit 1
  fi
  awk -v repo="$model_repo" '$0 == "---" && ++n == 2 {print "models:"; print "  - " repo} {print}' README.md \
    > README.md.tmp && mv README.md.tmp README.md
fi
git add -A .
if [ -n "$parent" ] && git diff --cached --quiet "$parent"; then
  echo "the Space at $shown already holds HEAD's tree ($head): nothing to push"
  exit 0
fi
git commit -q -m "Snapshot of ${head}${model_repo:+ without model/ (MODEL_ID=$model_repo)}"

# What the Hub would refuse: any blob over 10 MB in what is pushed (an LFS pointer is ~130 bytes).
big="$(git rev-list --objects HEAD ${parent:+--not "$parent"} \
  | git cat-file --batch-check='%(objecttype) %(objectsize) %(rest)' \
  | awk -v limit="$limit" '$1 == "blob" && $2 > limit {print $3}')"
if [ -n "$big" ]; then
  echo "error: these files are over 10 MB and not in LFS (add a pattern to .gitattributes):" >&2
  echo "$big" >&2
  exit 1
fi
git lfs ls-files | sed 's/^/lfs: /'
git push -q "$remote" HEAD:main
echo "pushed HEAD ($head) to $shown as $(git rev-parse HEAD)"
