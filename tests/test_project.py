"""Project-level promises: the Space front matter matches the pins, and no data set file is in git."""

import re
import subprocess

from tests.conftest import ROOT


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    block = text.split("---\n")[1]
    return dict(re.findall(r"^(\w+): *(.+)$", block, flags=re.M))


def test_readme_makes_the_repo_a_valid_gradio_space_pinned_like_requirements():
    meta = front_matter()
    pins = dict(re.findall(r"^([\w-]+)==([\w.]+)$", (ROOT / "requirements.txt").read_text(), flags=re.M))
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == pins["gradio"]
    assert (ROOT / meta["app_file"]).is_file()
    assert meta["python_version"].strip('"') == "3.11"


def test_no_images_of_the_data_set_are_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (e.g. an exported Space): nothing to check
        return
    examples = [p for p in tracked if p.startswith("examples/")]
    assert examples == ["examples/manifest.csv"]
    assert not [p for p in tracked if re.search(r"ISIC_\d+\.(jpe?g|png)$", p)]


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
