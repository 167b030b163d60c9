"""Gradio demo of the HAM10000 skin-lesion classifier (research only; no clinical or diagnostic value).

Start it with ``python app.py`` (``--help`` lists the options; each has an environment variable for Spaces).
The model is loaded once, before the server starts; the logic lives in ``classifier.app_logic``.

API (``pip install gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")          # or the Space id, e.g. "owner/space"
    result = client.predict(handle_file("lesion.jpg"), 3, False, "predicted", api_name="/classify_json")
    # -> dict: label, top_k, probabilities, malignant_probability, out_of_distribution, ...
    warning, labels, malignancy, heatmap_path, result = client.predict(
        handle_file("lesion.jpg"), 3, False, "predicted", api_name="/classify")

Arguments, in order: image, top_k (1-7), test-time augmentation (bool), heatmap class ("predicted" or a code).
``/classify`` is what the page calls: on bad input its first output is the message and the others are None.
``/classify_json`` returns only the result dict and raises an error (gradio_client's AppError) on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from html import escape


def parse_args(argv: list[str] | None = None, environ=os.environ) -> argparse.Namespace:
    """Command-line options, each defaulting to its environment variable."""
    on_space = bool(environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(description="Gradio demo of the HAM10000 skin-lesion classifier "
                                "(research only; no clinical or diagnostic value)")
    p.add_argument("--model", default=environ.get("MODEL_ID") or None,
                   help="model folder or Hub repo id (env MODEL_ID; default: the bundled model/)")
    p.add_argument("--revision", default=environ.get("MODEL_REVISION") or None,
                   help="Hub revision: branch, tag or commit (env MODEL_REVISION)")
    p.add_argument("--host", default=environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1"),
                   help="address to listen on (env GRADIO_SERVER_NAME; default 127.0.0.1, 0.0.0.0 on a Space)")
    p.add_argument("--port", type=int, default=int(environ.get("GRADIO_SERVER_PORT") or 7860),
                   help="port (env GRADIO_SERVER_PORT; default 7860)")
    p.add_argument("--share", action="store_true", default=environ.get("SHARE", "") in ("1", "true", "True"),
                   help="create a public gradio.live link (env SHARE=1)")
    p.add_argument("--analytics", action="store_true",
                   default=environ.get("GRADIO_ANALYTICS_ENABLED", "") == "True",
                   help="allow Gradio's usage analytics (off unless asked; env GRADIO_ANALYTICS_ENABLED=True)")
    p.add_argument("--max-file-size", default=environ.get("MAX_FILE_SIZE") or "10mb",
                   help="largest upload, e.g. 10mb (env MAX_FILE_SIZE; default 10mb)")
    p.add_argument("--concurrency", type=int, default=int(environ.get("CONCURRENCY") or 2),
                   help="requests processed at once (env CONCURRENCY; default 2)")
    return p.parse_args(argv)


def build_demo(classifier):
    """The page for a loaded ``classifier.api.Classifier``; loads nothing itself."""
    import gradio as gr

    from classifier import app_logic as logic
    from classifier.labels import CODES

    def on_classify(image, top_k, tta, heatmap_class):
        shown = logic.show(classifier, image, top_k, tta, heatmap_class)
        return shown.message, shown.labels, shown.malignancy, shown.heatmap, shown.result

    def on_classify_json(image, top_k, tta, heatmap_class) -> dict:
        try:
            return logic.classify(classifier, image, top_k, tta, heatmap_class)
        except ValueError as err:  # ImageError is a ValueError
            raise gr.Error(escape(str(err)), print_exception=False) from None

    with gr.Blocks(title="HAM10000 skin-lesion classifier (research demo)") as demo:
        gr.Markdown("# HAM10000 skin-lesion classifier")
        gr.HTML(logic.disclaimer_html(), js_on_load=None)
        gr.Markdown(logic.model_markdown(classifier))
        with gr.Row():
            with gr.Column():
                # type only matters to events that preprocess; the classify events below read the file themselves
                image = gr.Image(type="pil", sources=["upload", "clipboard", "webcam"], label="Dermatoscopic image",
                                 height=320)
                with gr.Row():
                    top_k = gr.Slider(1, len(CODES), value=3, step=1, label="Top-k classes")
                    tta = gr.Checkbox(False, label="Test-time augmentation",
                                      info="average over flips and rotations (slower)")
                heatmap_class = gr.Dropdown(logic.HEATMAP_CHOICES, value=logic.PREDICTED, label="Heatmap for class")
                button = gr.Button("Classify", variant="primary")
            with gr.Column():
                warning = gr.Markdown(label="Warning", elem_id="warning")
                labels = gr.Label(label="Most probable classes", elem_id="probabilities")
                malignancy = gr.Markdown(label="Malignancy")
                heatmap = gr.Image(label="Class-activation heatmap", format="png", interactive=False, height=260)
        with gr.Accordion("Full result (JSON)", open=False):
            result = gr.JSON(label="Result")

        examples = logic.examples()
        if examples:
            truth = gr.Textbox(label="True diagnosis", visible=False)
            gr.Examples([[str(e.path), logic.example_caption(e)] for e in examples], inputs=[image, truth],
                        label="Examples from HAM10000 (test split; CC BY-NC-SA 4.0): click one to classify it",
                        cache_examples=False, examples_per_page=14)
        else:
            gr.Markdown(logic.NO_EXAMPLES)
        with gr.Accordion("The seven classes", open=False):
            gr.Markdown(logic.classes_markdown())

        inputs = [image, top_k, tta, heatmap_class]
        # preprocess=False: the handler gets Gradio's file dict and reads it with the project's own loader, so an
        # unreadable upload gets the loader's clear message (shown in `warning`) instead of a failure inside
        # gr.Image. image.change covers upload, paste, webcam and examples; replacing an image fires it twice
        # (clear, then set), and "always_last" keeps the page showing the result for the latest inputs.
        gr.on([image.change, button.click, top_k.release, tta.change, heatmap_class.change], on_classify,
              inputs, [warning, labels, malignancy, heatmap, result], api_name="classify", preprocess=False,
              trigger_mode="always_last")
        # API-only: a button that is never shown, whose click returns just the result dict.
        api_button = gr.Button(visible=False)
        api_button.click(on_classify_json, inputs, gr.JSON(label="Result", visible=False), api_name="classify_json",
                         preprocess=False)
    return demo


def serve(demo, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False, max_file_size: str = "10mb",
          concurrency: int = 2, block: bool = True):
    """Queue and launch ``demo``; returns Gradio's (app, local_url, share_url)."""
    # Two requests at a time matches the two CPU cores of a free Space. The LiteRT interpreter runs one batch
    # at a time behind a lock anyway; more concurrency would only overlap image decoding and heatmap drawing
    # while making every request wait longer for the model.
    demo.queue(default_concurrency_limit=concurrency)
    # run_history=False: Gradio 6 would otherwise keep every run (uploaded skin photos included) in the browser.
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_file_size,
                       prevent_thread_lock=not block, run_history=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.analytics:
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported
    from classifier.api import load_classifier
    from classifier.source import ModelSourceError

    try:
        classifier = load_classifier(args.model, args.revision)
    except (ModelSourceError, ValueError, OSError, ImportError) as err:  # ModelFolderError is a ValueError
        print(f"error: cannot load the model: {err}", file=sys.stderr)
        return 1
    if classifier.source is not None and classifier.source.notice:
        print(f"note: {classifier.source.notice}", file=sys.stderr)
    serve(build_demo(classifier), args.host, args.port, args.share, args.max_file_size, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
