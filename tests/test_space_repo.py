"""The repository as a Hugging Face Space: the Hub refuses plain git files over 10 MB, so large files must be
routed through LFS (.gitattributes) and a Space gets a fresh snapshot commit (scripts/push_space.sh), while this
repository's own history keeps the real bytes (a plain clone must be able to run the model)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 10 * 1024 * 1024  # the Hub's limit for a file stored without LFS/Xet
POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
ZERO = "0" * 40

# A stand-in for the Hub's check: any pushed blob over 10 MB is refused (an LFS pointer is ~130 bytes).
PRE_RECEIVE = f"""#!/bin/sh
status=0
while read old new ref; do
  [ "$new" = "{ZERO}" ] && continue
  big=$(git rev-list --objects "$new" --not --all \\
    | git cat-file --batch-check='%(objecttype) %(objectsize) %(rest)' \\
    | awk '$1 == "blob" && $2 > {LIMIT} {{print $3}}')
  if [ -n "$big" ]; then echo "rejected: over 10 MB and not stored with LFS: $big" >&2; status=1; fi
done
exit $status
"""


def git(*args: str, cwd: Path = ROOT, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=check, **kwargs)


@pytest.fixture(scope="module")
def checkout() -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if git("rev-parse", "--is-inside-work-tree", check=False).stdout.strip() != b"true":
        pytest.skip("not a git checkout (e.g. an exported tree)")
    return ROOT


def tracked(root: Path) -> list[str]:
    return [p for p in git("ls-files", "-z", cwd=root).stdout.decode().split("\0") if p]


def lfs_filtered(root: Path, paths: list[str]) -> set[str]:
    """The paths whose `filter` attribute is lfs (git check-attr, as git add would apply it)."""
    out = git("check-attr", "-z", "filter", "--", *paths, cwd=root).stdout.decode().split("\0")
    return {path for path, _, value in zip(out[::3], out[1::3], out[2::3], strict=False) if value == "lfs"}


def blob_sizes(root: Path, rev: str, cwd: Path | None = None) -> dict[str, tuple[str, int]]:
    """{path: (blob sha, size)} of a commit's tree."""
    sizes = {}
    for line in git("ls-tree", "-r", "-l", "-z", rev, cwd=cwd or root).stdout.decode().split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            _, kind, sha, size = meta.split()
            if kind == "blob":
                sizes[path] = (sha, int(size))
    return sizes


def test_tracked_files_over_10_mb_go_through_lfs(checkout):
    paths = tracked(checkout)
    big = [p for p in paths if (checkout / p).is_file() and (checkout / p).stat().st_size > LIMIT]
    assert "model/model.keras" in big or not (checkout / "model" / "model.keras").exists()
    assert set(big) <= lfs_filtered(checkout, big), "add their pattern to .gitattributes (the Hub refuses them)"
    # the Hub's defaults for model files, whatever is tracked today
    probes = ["m.keras", "m.tflite", "m.npz", "m.h5", "m.safetensors", "m.onnx", "m.bin", "a/m.keras"]
    assert lfs_filtered(checkout, probes) == set(probes)
    assert not lfs_filtered(checkout, ["model/config.json", "README.md", "app.py", "examples/ISIC_0024336.jpg"])


def test_this_repository_keeps_the_real_bytes(checkout):
    """LFS routing is for the Space's snapshot: here the model files stay ordinary blobs, so a plain clone (CI)
    has them. A model committed with git-lfs installed would be a pointer; see .gitattributes for the bypass."""
    sizes = blob_sizes(checkout, "HEAD")
    routed = lfs_filtered(checkout, sorted(sizes))
    assert {"model/model.keras", "model/model.tflite"} <= routed or "model/model.keras" not in sizes
    for path in sorted(routed):
        sha, size = sizes[path]
        head = git("cat-file", "blob", sha).stdout[:len(POINTER_PREFIX)] if size < 1024 else b""
        assert head != POINTER_PREFIX, f"{path} is committed as an LFS pointer: commit the real file"


@pytest.mark.slow
def test_push_space_makes_a_snapshot_the_hub_accepts(checkout, tmp_path):
    if git("lfs", "version", check=False).returncode != 0:
        pytest.skip("git-lfs is not installed (apt-get install git-lfs)")
    space = tmp_path / "space.git"
    git("init", "-q", "--bare", str(space), cwd=tmp_path)
    hook = space / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE)
    hook.chmod(0o755)
    url = space.as_uri()  # git-lfs needs a URL (file://) for a local remote

    # The hook refuses what the Hub refuses: a plain 11 MB blob.
    plain = tmp_path / "plain"
    git("init", "-q", "-b", "main", str(plain), cwd=tmp_path)
    (plain / "weights.bin").write_bytes(os.urandom(LIMIT + (1 << 20)))
    git("add", "weights.bin", cwd=plain)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "big", cwd=plain)
    refused = git("push", url, "main", cwd=plain, check=False, text=True)
    assert refused.returncode != 0 and "rejected: over 10 MB" in refused.stderr
    assert git("rev-parse", "--verify", "-q", "main", cwd=space, check=False).returncode != 0

    script = str(ROOT / "scripts" / "push_space.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    pushed = subprocess.run([script, url], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert pushed.returncode == 0, pushed.stderr
    head = blob_sizes(checkout, "HEAD")
    space_tree = blob_sizes(checkout, "main", cwd=space)
    assert space_tree.keys() == head.keys()  # the committed tree, every file of it
    assert len(git("rev-list", "main", cwd=space).stdout.split()) == 1  # none of this repository's history
    routed = lfs_filtered(checkout, sorted(head))
    assert any(size > LIMIT for _, size in (head[p] for p in routed))
    for path, (sha, size) in head.items():
        if path not in routed:
            assert space_tree[path][0] == sha, path
            continue
        pointer = git("cat-file", "blob", space_tree[path][0], cwd=space).stdout.decode()
        real = git("cat-file", "blob", sha).stdout
        oid = hashlib.sha256(real).hexdigest()
        assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n", path
        stored = space / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        assert stored.read_bytes() == real, path  # the LFS object arrived with the push

    # Again: nothing to push. With --model-repo: model/ stays out, the front matter names the model repo, and the
    # snapshot is the next commit of the Space's history (no force push).
    again = subprocess.run([script, url], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "nothing to push" in again.stdout, again.stderr
    first = git("rev-parse", "main", cwd=space, text=True).stdout.strip()
    slim = subprocess.run([script, url, "--model-repo", "me/ham10000"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert slim.returncode == 0, slim.stderr
    assert git("rev-parse", "main^", cwd=space, text=True).stdout.strip() == first
    slim_tree = blob_sizes(checkout, "main", cwd=space)
    assert slim_tree.keys() == {p for p in head if not p.startswith("model/")}
    card = git("cat-file", "blob", slim_tree["README.md"][0], cwd=space, text=True).stdout
    front, _, body = card.removeprefix("---\n").partition("\n---\n")
    assert front.endswith("models:\n  - me/ham10000") and "sdk: gradio" in front and body.lstrip().startswith("#")
