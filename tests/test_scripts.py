"""The maintenance scripts: modules run from the repository root (``python -m scripts.NAME``) that neither edit
``sys.path`` nor import the tests, and answer a wrong folder with a usage error, not a traceback."""

import ast
import subprocess
import sys

from tests.conftest import ROOT


def test_compare_checkpoints_names_a_folder_that_is_not_a_training_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.compare_checkpoints", "--work", str(tmp_path / "none"),
                           "--data", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a training run (no state.json)" in done.stderr and "Traceback" not in done.stderr


def test_compare_serving_names_a_missing_model_or_one_without_a_split(tmp_path, tiny_litert_dir):
    for folder, message in ((tmp_path / "none", "model folder does not exist"),
                            (tiny_litert_dir, "no split.json")):
        done = subprocess.run([sys.executable, "-m", "scripts.compare_serving", "--models", str(folder),
                               "--data", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def test_gpu_run_unpack_names_a_folder_that_is_not_a_device_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.gpu_run", "unpack", "--files", str(tmp_path),
                           "--work", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no state.json" in done.stderr and "Traceback" not in done.stderr


def test_gpu_run_pack_names_a_missing_data_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.gpu_run", "pack", "--data", str(tmp_path / "none")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "none" in done.stderr


def test_scripts_neither_edit_sys_path_nor_import_the_tests():
    found = {}
    for path in sorted((ROOT / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        if "sys.path" in path.read_text() or any(n.split(".")[0] == "tests" for n in names):
            found[path.name] = sorted(names)
    assert found == {}
