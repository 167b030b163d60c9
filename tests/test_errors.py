"""One contract for every surface (classifier.errors): every error the package raises for a caller is a
ClassifierError and none is a ValueError; the command line maps them once (exit_status: `error: ...`, status
2), and the page once (app.page_error: the message as gr.Error; anything else a logged internal error, never
"Cannot classify this input")."""

from __future__ import annotations

import ast
import builtins
import logging

import pytest

from classifier.errors import ArgumentError, ClassifierError, MissingPackage, exit_status
from tests.conftest import ROOT

BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}
SURFACES = [ROOT / "app.py", ROOT / "classifier" / "app_logic.py", *sorted((ROOT / "classifier" / "commands")
                                                                            .glob("*.py"))]


def exception_classes() -> dict[str, tuple[str, list[str]]]:
    """Every class defined under classifier/ and in app.py that is an exception (read from the source, so that
    modules needing TensorFlow count too): name -> (file, base names)."""
    classes = {}
    for path in [ROOT / "app.py", *sorted((ROOT / "classifier").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                classes[node.name] = (str(path.relative_to(ROOT)), bases)
    exceptions, grown = {}, True
    while grown:  # a class is an exception if a base is a builtin exception or an exception class found so far
        grown = False
        for name, (where, bases) in classes.items():
            if name not in exceptions and any(b in BUILTIN_ERRORS or b in exceptions for b in bases):
                exceptions[name] = (where, bases)
                grown = True
    return exceptions


def test_classifier_error_is_not_a_value_error_and_every_error_class_is_one():
    assert not issubclass(ClassifierError, ValueError)
    exceptions = exception_classes()

    def in_family(name: str) -> bool:
        return name == "ClassifierError" or any(in_family(b) for b in exceptions.get(name, ("", []))[1])

    assert {"ImageError", "ContextError", "ModelFolderError", "ModelSourceError", "DataError", "OutputError",
            "InputError", "BatchTooLarge", "RayRunError", "ArgumentError", "ExampleError"} <= set(exceptions)
    outside = {name: where for name, (where, _) in exceptions.items() if not in_family(name)}
    assert not outside, f"error classes outside the ClassifierError family: {outside}"

    # ... and imported, the ones a caller meets
    from classifier.batch_tab import BatchTooLarge
    from classifier.commands.predict import RayRunError
    from classifier.context import ContextError
    from classifier.data import DataError
    from classifier.example_images import ExampleError
    from classifier.model_folder import ModelFolderError
    from classifier.preprocessing import ImageError
    from classifier.results import OutputError
    from classifier.scale import InputError
    from classifier.source import ModelSourceError

    for error in (BatchTooLarge, RayRunError, ContextError, DataError, ExampleError, ModelFolderError, ImageError,
                  OutputError, InputError, ModelSourceError, ArgumentError, MissingPackage):
        assert issubclass(error, ClassifierError) and not issubclass(error, ValueError), error


def test_the_surfaces_catch_the_family_not_value_error():
    """A numpy ValueError is a bug: the page's and the commands' handlers never take it for bad input."""
    for path in SURFACES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                assert "ValueError" not in names, f"{path.relative_to(ROOT)}:{node.lineno} catches ValueError"


def test_exit_status_is_the_one_mapping(capsys):
    def raising(error):
        def main(argv):
            raise error
        return main

    assert exit_status(raising(ArgumentError("--top-k must be ..."))) == 2
    assert capsys.readouterr().err == "error: --top-k must be ...\n"
    assert exit_status(raising(FileNotFoundError("no split.json"))) == 2
    assert capsys.readouterr().err == "error: no split.json\n"
    assert exit_status(raising(ModuleNotFoundError("No module named 'keras'", name="keras")), name="`export`") == 2
    assert capsys.readouterr().err.startswith("error: `export` needs keras, which the demo install leaves out: pip")
    assert exit_status(raising(KeyboardInterrupt())) == 130 and capsys.readouterr().err == "interrupted\n"
    for bug in (ValueError("operands could not be broadcast"), ModuleNotFoundError("x", name="missing_thing")):
        with pytest.raises(type(bug)):  # a bug keeps its traceback
            exit_status(raising(bug))


def test_page_error_maps_the_family_to_its_message_and_anything_else_to_an_internal_error(caplog):
    import gradio as gr

    import app
    from classifier.preprocessing import ImageError

    shown = app.page_error(ImageError("Tom's mole.jpg: the file is empty"))
    assert isinstance(shown, gr.Error) and shown.message == "Tom's mole.jpg: the file is empty"
    assert app.page_error(ArgumentError("top_k must be ..."), "Options: ").message == "Options: top_k must be ..."
    same = gr.Error("already for a visitor")
    assert app.page_error(same) is same
    with caplog.at_level(logging.ERROR, logger="app"):
        shown = app.page_error(ValueError("operands could not be broadcast together"))
    assert shown.message == app.INTERNAL_ERROR and "broadcast" not in shown.message
    assert "operands could not be broadcast" in caplog.text  # logged with its traceback for the maintainers


@pytest.fixture(scope="module")
def demo_handlers(bundled_model_dir, tmp_path_factory):
    """The bundled model (LiteRT: no TensorFlow), the page's handlers by API name, and an example image as an
    upload (in the page's upload folder, the only place its handlers read from)."""
    import app
    from classifier.api import Classifier

    uploads = tmp_path_factory.mktemp("uploads")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(uploads))
        classifier = Classifier(bundled_model_dir)
        demo = app.build_demo(classifier)
    upload = uploads / "lesion.jpg"
    upload.write_bytes(sorted((ROOT / "examples").glob("*.jpg"))[0].read_bytes())
    return classifier, {fn.api_name: fn.fn for fn in demo.fns.values()}, {"path": str(upload)}


def test_an_unexpected_exception_in_the_pages_handler_is_not_reported_as_bad_input(demo_handlers, monkeypatch,
                                                                                   caplog):
    import gradio as gr

    import app
    from classifier import app_logic as logic

    classifier, handlers, image = demo_handlers
    assert handlers["classify"](image, 3, False, "predicted", True)[1]  # the upload classifies, until broken

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (7,) (8,)")

    monkeypatch.setattr(classifier, "classify", broken)
    with pytest.raises(ValueError, match="broadcast"):  # the page's logic does not turn a bug into a message
        logic.show(classifier, image["path"], 3)
    for name, args in (("classify", (image, 3, False, "predicted", True)),
                       ("classify_json", (image, 3, False, "predicted"))):
        with caplog.at_level(logging.ERROR, logger="app"), pytest.raises(gr.Error) as raised:
            handlers[name](*args)
        assert raised.value.message == app.INTERNAL_ERROR, name
        assert "Cannot classify" not in raised.value.message and "broadcast" in caplog.text
        caplog.clear()
