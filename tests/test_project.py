"""Project-level promises: the Space front matter matches the pins, and of the data set only the example images
listed in examples/manifest.csv are in git."""

import ast
import csv
import re
import subprocess
from pathlib import Path

import pytest

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


def test_only_the_listed_example_images_of_the_data_set_are_tracked():
    """The one exception to "nothing from the data set is committed": the manifest's examples, at most 16."""
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (e.g. an exported Space): nothing to check
        return
    with open(ROOT / "examples" / "manifest.csv", newline="") as f:
        listed = [f"examples/{row['image_id']}.jpg" for row in csv.DictReader(f)]
    assert len(listed) <= 16 and len(set(listed)) == len(listed)
    in_examples = sorted(p for p in tracked if p.startswith("examples/"))
    assert in_examples == sorted(["examples/README.md", "examples/manifest.csv", *listed])
    data_set_images = [p for p in tracked if re.search(r"ISIC_\d+\.(jpe?g|png|bmp|tiff?|webp)$", p, flags=re.I)]
    assert sorted(data_set_images) == sorted(listed)
    assert not [p for p in tracked if p.startswith("shared/") or "HAM10000_metadata" in p]


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_space_installs_no_training_stack_and_training_gets_it():
    space = (ROOT / "requirements.txt").read_text().lower()
    for package in ("tensorflow", "keras", "matplotlib", "scikit-learn", "ray", "torch"):
        assert not re.search(rf"^{package}", space, flags=re.M), package
    train = (ROOT / "requirements-train.txt").read_text()
    assert "-r requirements.txt" in train and "tensorflow-cpu==" in train and "keras==" in train
    assert "scikit-learn==" in train
    assert "-r requirements-train.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_a_command_that_needs_training_packages_says_how_to_install_them(monkeypatch, capsys):
    from classifier import cli
    from classifier.commands import describe

    def run_without_tensorflow(args):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setattr(describe, "run", run_without_tensorflow)
    assert cli.main(["describe", "--data", "somewhere", "--out", "elsewhere"]) == 2
    err = capsys.readouterr().err
    assert "needs tensorflow" in err and "pip install -r requirements-train.txt" in err

    def run_without_something_else(args):
        raise ModuleNotFoundError("No module named 'missing_thing'", name="missing_thing")

    monkeypatch.setattr(describe, "run", run_without_something_else)
    with pytest.raises(ModuleNotFoundError):  # a real bug is not disguised as an install hint
        cli.main(["describe", "--data", "somewhere", "--out", "elsewhere"])


def module_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is imported: every import statement not inside a function."""
    found, pending = set(), list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))  # if/try/class bodies run at import time too
    return found


PACKAGE = ROOT / "classifier"
TRAINING_COMMANDS = {"train.py", "export.py"}  # they exist to train and export


def test_only_training_and_its_commands_import_training_code_at_module_level():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        inside = path.relative_to(PACKAGE).parts
        if inside[0] == "training" or (inside[0] == "commands" and inside[-1] in TRAINING_COMMANDS):
            continue
        heavy = {m for m in module_level_imports(path)
                 if m.split(".")[0] in ("tensorflow", "keras") or m.startswith("classifier.training")}
        if heavy:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(heavy)}")
    assert offenders == []


SERVING = [*PACKAGE.glob("*.py"), *(PACKAGE / "runtime").glob("*.py")]  # what the API, CLI and page load


def test_serving_modules_import_neither_training_nor_measuring_nor_gradio():
    """What the API and CLI load to classify (the package's top level and the runtimes) stays free of the heavier
    rooms, even inside functions: only the Keras runtime names TensorFlow, and only when it is asked for."""
    heavy_rooms = ("classifier.training", "classifier.evaluation", "classifier.documents", "classifier.commands")
    for path in SERVING:
        for module in module_level_imports(path):
            assert not module.startswith(heavy_rooms), (path.name, module)
            assert module.split(".")[0] not in ("gradio", "sklearn", "matplotlib", "tensorflow", "keras"), (
                path.name, module)
        for module in all_imports(path):
            assert not module.startswith("classifier.training"), (path.name, module)


def all_imports(path: Path) -> set[str]:
    """Every module a file names in an import statement, inside functions too (relative imports resolved)."""
    found = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (a package's ``__init__`` is its name)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: {m for m in all_imports(path) if m in names and m != name} for name, path in names.items()}


def test_no_import_circles_in_the_package_not_even_inside_functions():
    graph = package_import_graph()
    state, circles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_nothing_in_the_package_imports_gradio_or_the_app():
    for path in PACKAGE.rglob("*.py"):
        assert not {m for m in all_imports(path) if m.split(".")[0] in ("gradio", "app")}, path


def test_no_module_is_over_450_lines():
    modules = [*PACKAGE.rglob("*.py"), ROOT / "app.py", *(ROOT / "scripts").glob("*.py")]
    assert {str(p.relative_to(ROOT)): n for p in modules if (n := len(p.read_text().splitlines())) > 450} == {}


def test_the_layout_keeps_module_names_apart_from_command_names():
    commands = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__"}
    modules = {p.stem for p in PACKAGE.rglob("*.py") if "commands" not in p.parts}
    assert commands & modules == set()


def test_the_layout_check_sees_imports_inside_blocks_but_not_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import a\ntry:\n    from b.c import d\nexcept ImportError:\n    pass\n"
                      "def f():\n    import e\n")
    assert module_level_imports(source) == {"a", "b.c", "b.c.d"}
