"""Gradio demo of the HAM10000 skin-lesion classifier (research only; no clinical or diagnostic value).

Start it with ``python app.py`` (``--help`` lists the options; each has an environment variable for Spaces).
The model is loaded once, before the server starts; the logic lives in ``classifier.app_logic`` (one image),
``classifier.web_input``, ``classifier.model_summary`` and ``classifier.batch_tab``; this file only wires it to the
page.

API (``pip install gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")          # or the Space id, e.g. "owner/space"
    result = client.predict(handle_file("lesion.jpg"), 3, False, "predicted", api_name="/classify_json")
    # -> dict: label, top_k, probabilities, malignant_probability, out_of_distribution, similar_cases, ...
    result = client.predict(handle_file("lesion.jpg"), 3, False, "predicted", 70, "male", "back",
                            api_name="/classify_json")       # with patient context: result["context_note"]
    warning, labels, malignancy, heatmap, caption, result = client.predict(
        handle_file("lesion.jpg"), 3, False, "predicted", api_name="/classify")

Arguments, in order: image, top_k (1..number of classes), test-time augmentation (bool), heatmap class
("predicted" or a class code), then the optional patient context: age (years), sex ("male", "female"), body site
(``classifier.context.SITES``); None, "" or "unknown" = not given, the default, so calls without them still work.
``/classify_json`` is an API-only endpoint (``gr.api``): it returns the result dict and raises an error
(gradio_client's AppError) on bad input. ``/classify`` is what the page calls: on a bad image or option its first
output is the message and the others are empty; a bad patient-context value raises an error on both.

The named endpoints, with the labels that ``client.view_api()`` gives their values (the page's labels; some
are hidden on the page):

- ``/classify``: image "Dermatoscopic image (at most ...)", top_k "Top-k classes", tta "Test-time
  augmentation", heatmap_class "Heatmap for class", age "Age (years)", sex "Sex", site "Body site" -> "Warning
  or error message" (Markdown text, empty when all is well), "Most probable classes" (label dict), "Malignancy"
  (Markdown), "Heatmap" (JPEG file path), "Heatmap caption" (Markdown), "Result" (the JSON result dict).
- ``/classify_json``: the same seven parameters -> "Result" (the JSON result dict).
- ``/classify_batch``: files "Images, or one zip of images" -> "Summary" (Markdown), "Results table"
  (dataframe: headers and data), "Results as CSV" (file path).

Nothing else is an endpoint: the example gallery, the heatmap toggle, the decision line, the context note and the
similar-cases gallery are private to the page (the decision is the result's "label"; "most_probable" and
"decision_note" say when it is not the most probable class).
"""

import argparse
import logging
import os
import sys

# The page's layout. Desktop: input and examples on the left, the result on the right, all in one 1280x800
# screen. Narrow screens: one column in the order input, result, examples.
PAGE_CSS = """
.main.app { padding-top: 4px !important; }
#title h1 { margin: 0 !important; font-size: 1.45rem !important; }
#model-summary { font-size: 0.9em; }
#decision { border-left: 4px solid #1d4ed8; padding: 2px 0 2px 10px !important; }
#decision p { margin: 0 0 4px 0 !important; }
#decision p + p { font-size: 0.92em; line-height: 1.35; }
#classify-grid { display: grid !important; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr);
  grid-template-rows: auto 1fr; grid-template-areas: "input result" "examples result"; gap: 12px;
  align-items: start; }
#input-column { grid-area: input; }
#result-column { grid-area: result; }
#examples-column { grid-area: examples; }
#examples .grid-wrap, #similar .grid-wrap { height: auto !important; min-height: 0 !important;
  max-height: none !important; }
#examples .grid-container, #similar .grid-container { grid-template-rows: none !important;
  grid-auto-rows: auto !important; padding-top: 0 !important; margin-top: 26px; gap: 6px; }
#examples .grid-container { grid-template-columns: repeat(7, minmax(0, 1fr)) !important; }
#similar .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
#examples .gallery-item, #similar .gallery-item { height: auto !important; }
#examples .thumbnail-item { width: 100%; height: auto; aspect-ratio: 1 / 1; }
#examples .caption-label { font-size: 12px; padding: 1px 4px; bottom: 3px; left: 3px; max-width: calc(100% - 6px); }
#similar .thumbnail-item { height: auto; aspect-ratio: auto; display: flex; flex-direction: column; cursor: default; }
#similar .thumbnail-item img { width: 100%; height: auto; aspect-ratio: 1 / 1; object-fit: cover; }
#similar .caption-label { position: static; max-width: none; white-space: normal; border: 0; border-radius: 0;
  font-size: 11px; line-height: 1.25; padding: 2px 4px; }
#similar-text { font-size: 0.85em; }
#context-note { font-size: 0.9em; border-left: 3px solid var(--color-accent); padding: 2px 8px !important; }
#heatmap-caption { font-size: 0.85em; }
@media (max-width: 760px) {
  .main.app { padding-left: 8px !important; padding-right: 8px !important; }
  #classify-grid { grid-template-columns: minmax(0, 1fr); grid-template-rows: none;
    grid-template-areas: "input" "result" "examples"; }
  #examples .grid-container { grid-template-columns: repeat(5, minmax(0, 1fr)) !important; }
  #similar .grid-container { grid-template-columns: repeat(3, minmax(0, 1fr)) !important; }
  #similar .caption-label { font-size: 10px; }
}
"""


# Gradio's delete_cache: every 30 minutes, delete uploads and output files more than an hour old (longer than
# the page's state keeps a result, 15 minutes).
CACHE_CLEANUP = (1800, 3600)
# Sessions whose state Gradio keeps (least recently used go first). A page visitor's session is refreshed by each
# request; one pushed out only loses the "Show the heatmap" toggle's picture until the next result.
STATE_SESSIONS = 1000
# glibc malloc arenas for the server process (see limit_malloc_arenas).
MALLOC_ARENAS = 2
# Gradio's queue analytics (read when the queue is made; see serve).
ANALYTICS_LIMITS = {"GRADIO_ANALYTICS_MAX_EVENTS": "1000", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000"}
# What a visitor sees when a handler fails for any reason but a ClassifierError (a bug; the traceback is logged)
INTERNAL_ERROR = ("Something went wrong inside the app (an internal error, logged for its maintainers); it says "
                  "nothing about your image or options. Please try again.")

log = logging.getLogger("app")


def parse_args(argv: list[str] | None = None, environ=os.environ) -> argparse.Namespace:
    """Command-line options, each defaulting to its environment variable."""
    from classifier.model_options import add_model_arguments

    on_space = bool(environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(description="Gradio demo of the HAM10000 skin-lesion classifier "
                                "(research only; no clinical or diagnostic value)")
    add_model_arguments(p, environ=environ)
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
                   help="largest image, however it is sent, e.g. 10mb (env MAX_FILE_SIZE; default 10mb)")
    p.add_argument("--concurrency", type=int, default=int(environ.get("CONCURRENCY") or 2),
                   help="requests processed at once (env CONCURRENCY; default 2)")
    return p.parse_args(argv)


def page_error(err: Exception, prefix: str = ""):
    """The page's one mapping of an error to what a visitor (or an API caller) is told: a ClassifierError (bad
    input, a bad option or context value) becomes ``gr.Error`` with its message; a ``gr.Error`` stays as it is;
    anything else is a bug: logged with its traceback, and shown as ``INTERNAL_ERROR``, never as bad input."""
    import gradio as gr

    from classifier.errors import ClassifierError

    if isinstance(err, gr.Error):
        return err
    if isinstance(err, ClassifierError):
        # Plain text, not escaped: API clients get the message as it is, and the page sanitises the HTML that
        # gr.Error may hold (an escaped quote would reach both as `&#x27;`).
        return gr.Error(f"{prefix}{err}", print_exception=False)
    log.error("internal error while handling a request", exc_info=err)
    return gr.Error(INTERNAL_ERROR, print_exception=False)


def build_demo(classifier, max_file_size: str | int = "10mb"):
    """The page for a loaded ``classifier.api.Classifier``; loads nothing itself. ``max_file_size`` caps every
    image however it arrives (upload, data: URL), counted before decoding."""
    import gradio as gr
    from gradio.data_classes import FileData
    from gradio.utils import get_upload_folder

    from classifier import app_logic as logic
    from classifier import batch_tab, model_summary
    from classifier.context import ContextError
    from classifier.web_input import PREDICTED, human_size, parse_size

    max_bytes = parse_size(max_file_size)
    upload_dir = get_upload_folder()  # the only place the handlers read image files from
    found = logic.examples()
    classes = len(classifier.config.labels)

    def on_classify(image, top_k, tta, heatmap_class, with_heatmap, age=None, sex=None, site=None):
        # A bad image or option is a message in the first output (logic.show); a bad patient-context value an
        # error (the page keeps its last result; an API caller gets AppError), as is a bug (page_error).
        try:
            shown = logic.show(classifier, image, top_k, tta, heatmap_class, max_bytes, upload_dir, age, sex, site)
            # The pictures go out as files written once (see logic.stored_file), and the state keeps their paths
            shown = logic.as_files(shown, upload_dir)
        except Exception as err:
            raise page_error(err, "Patient context: " if isinstance(err, ContextError) else "") from None
        # API calls have no page state (None): they get the heatmap. A plain image, so API callers get a file;
        # the label is the toggle's business.
        picture = logic.displayed_image(shown, with_heatmap is not False)
        return shown.message, shown.labels, shown.malignancy, picture, shown.caption, shown.result, shown

    def on_shown(shown):
        # The page's extras, from the state the classify event left: not API outputs, so /classify keeps its six
        shown = shown or logic.Shown("", None, "", None, None)
        return (gr.Markdown(shown.decision, visible=bool(shown.decision)),
                gr.Markdown(shown.context_note, visible=bool(shown.context_note)),
                gr.Gallery(shown.similar, visible=bool(shown.similar)),
                gr.Markdown(shown.similar_text, visible=bool(shown.similar)))

    def on_toggle_heatmap(with_heatmap, shown):
        picture = logic.displayed_image(shown, with_heatmap)
        return with_heatmap, gr.Image(picture, label=logic.heatmap_label(with_heatmap))

    def classify_json(image: FileData, top_k: int = 3, tta: bool = False, heatmap_class: str = PREDICTED,
                      age: float | None = None, sex: str | None = None, site: str | None = None) -> dict:
        """The full result of one image as JSON (label, top_k, probabilities, malignant_probability,
        out_of_distribution, context, similar_cases, ...); age, sex and site are the optional patient context.
        Research only; no clinical value."""
        try:
            return logic.classify(classifier, image, top_k, tta, heatmap_class, max_bytes, upload_dir, age, sex,
                                  site)
        except Exception as err:  # ImageError, ContextError, ArgumentError (top_k, heatmap class), or a bug
            raise page_error(err) from None

    def on_example(selected: gr.SelectData):
        return str(found[selected.index].path)

    progress_bar = gr.Progress()  # Gradio recognises the default value and drives the bar from it

    def on_batch(files, progress=progress_bar):
        if not files:
            return "Choose some images (or one zip) first.", None, None
        try:
            items = batch_tab.batch_items(list(files))
        except batch_tab.BatchTooLarge as err:
            return f"⚠️ Nothing classified: {err}.", None, None
        try:
            progress((0, len(items)), desc="classifying", unit="images")
            result = batch_tab.classify_batch(classifier, items,
                                              progress=lambda done, total: progress((done, total), unit="images"))
            return result.summary, result.rows, batch_tab.write_csv(result)
        except Exception as err:  # a bad file is a row of its own; this is a bug
            raise page_error(err) from None

    with gr.Blocks(title="HAM10000 skin-lesion classifier (research demo)") as demo:
        gr.Markdown("# HAM10000 skin-lesion classifier", elem_id="title")
        gr.HTML(logic.disclaimer_html())
        with gr.Tabs():
            with gr.Tab("One image", id="one"):
                with gr.Row(elem_id="classify-grid"):
                    with gr.Column(elem_id="input-column"):
                        # type only matters to events that preprocess; the classify events read the file themselves
                        image = gr.Image(type="pil", sources=["upload", "clipboard", "webcam"], height=230,
                                         label=f"Dermatoscopic image (at most {human_size(max_bytes)})",
                                         elem_id="image-input")
                        # Hidden for a model without a context head (an API caller who gives context is told)
                        with gr.Accordion("Patient context (optional)", open=False, elem_id="context",
                                          visible=classifier.context_head is not None):
                            gr.Markdown(logic.CONTEXT_INFO, elem_id="context-info")
                            with gr.Row(elem_id="context-row"):
                                age = gr.Number(None, label="Age (years)", minimum=0, maximum=120,
                                                elem_id="context-age", min_width=90)
                                sex = gr.Dropdown(logic.SEX_CHOICES, value=logic.NOT_GIVEN, label="Sex",
                                                  elem_id="context-sex", min_width=110)
                                site = gr.Dropdown(logic.SITE_CHOICES, value=logic.NOT_GIVEN, label="Body site",
                                                   elem_id="context-site", min_width=150)
                        with gr.Accordion("Options", open=False, elem_id="options"):
                            top_k = gr.Slider(1, classes, value=min(3, classes), step=1, label="Top-k classes")
                            tta = gr.Checkbox(False, label="Test-time augmentation",
                                              info=model_summary.tta_info(classifier))
                            heatmap_class = gr.Dropdown(logic.heatmap_choices(classifier), value=PREDICTED,
                                                        label="Heatmap for class")
                    with gr.Column(elem_id="result-column"):
                        # Labels name the outputs in the API (gradio_client's view_api); hidden on the page.
                        warning = gr.Markdown(label="Warning or error message", show_label=False, elem_id="warning")
                        # the decision, when the model chooses it apart from the probabilities (gr.Label's
                        # headline is the most probable class)
                        decision = gr.Markdown(show_label=False, visible=False, elem_id="decision")
                        labels = gr.Label(label="Most probable classes", elem_id="probabilities", show_heading=False)
                        context_note = gr.Markdown(show_label=False, visible=False, elem_id="context-note")
                        malignancy = gr.Markdown(label="Malignancy", show_label=False, elem_id="malignancy")
                        with gr.Row(elem_id="heatmap-row", equal_height=False):
                            # JPEG: encoding a PNG here took longer than the model (python -m classifier bench)
                            heatmap = gr.Image(label=logic.heatmap_label(True), format="jpeg", height=190,
                                               interactive=False, elem_id="heatmap", scale=0, min_width=200)
                            with gr.Column(min_width=160):
                                show_heatmap = gr.Checkbox(True, label="Show the heatmap", elem_id="show-heatmap")
                                caption = gr.Markdown(label="Heatmap caption", show_label=False,
                                                      elem_id="heatmap-caption")
                        similar = gr.Gallery(label=logic.SIMILAR_LABEL, columns=4, height="auto", visible=False,
                                             allow_preview=False, object_fit="cover", interactive=False,
                                             buttons=[], elem_id="similar")
                        similar_text = gr.Markdown(visible=False, elem_id="similar-text")
                    with gr.Column(elem_id="examples-column"):
                        if found:
                            gallery = gr.Gallery(logic.gallery_items(found), columns=7, rows=2,
                                                 height="auto", allow_preview=False, object_fit="cover",
                                                 interactive=False, buttons=[], elem_id="examples",
                                                 label="Examples from HAM10000's test split (CC BY-NC-SA 4.0): "
                                                       "click one. On each: its true diagnosis")
                            gallery.select(on_example, None, image, api_visibility="private")
                        else:
                            gr.Markdown(logic.NO_EXAMPLES)
                gr.Markdown(model_summary.model_markdown(classifier), elem_id="model-summary")
                with gr.Accordion("Technical details", open=False):
                    gr.Markdown(model_summary.technical_markdown(classifier))
                with gr.Accordion("Full result (JSON)", open=False):
                    result = gr.JSON(label="Result")
                with gr.Accordion(f"The {classes} classes", open=False):
                    gr.Markdown(model_summary.classes_markdown(classifier))
                with gr.Accordion("Model card", open=False, elem_id="model-card"):
                    gr.Markdown(model_summary.model_card_markdown(classifier) or "This model folder has no model card.")
            with gr.Tab("Many images", id="many"):
                gr.Markdown(batch_tab.batch_limits_text(max_bytes), elem_id="batch-limits")
                files = gr.File(file_count="multiple", file_types=["image", ".zip"], height=140,
                                label="Images, or one zip of images", elem_id="batch-files")
                batch_button = gr.Button("Classify all", variant="primary", elem_id="batch-run")
                with gr.Row(equal_height=True):
                    batch_summary = gr.Markdown(label="Summary", show_label=False, elem_id="batch-summary")
                    csv_file = gr.File(label="Results as CSV", elem_id="batch-csv", interactive=False, height=60)
                table = gr.Dataframe(headers=batch_tab.BATCH_HEADERS, interactive=False, wrap=True,
                                     label="Results table", show_label=False,
                                     elem_id="batch-table", column_widths=["22%", "33%", "12%", "33%"])

        # Server-side only (gr.State is neither sent to the browser nor an API parameter): the last result's
        # images, and whether the page shows the heatmap (API callers always get it).
        last_shown = gr.State(None, time_to_live=900)
        with_heatmap = gr.State(True)
        # The patient context comes last, after the state, so an API call with the first four values still works
        # (gradio_client fills in the defaults: None, "unknown", "unknown").
        inputs = [image, top_k, tta, heatmap_class, with_heatmap, age, sex, site]
        # preprocess=False: the handler gets Gradio's file dict and reads it with the project's own loader after
        # checking its size, so an unreadable or oversized image gets a clear message (shown in `warning`).
        # image.change covers upload, paste, webcam and examples; replacing an image fires it twice (clear, then
        # set), and "always_last" keeps the page showing the result for the latest inputs.
        gr.on([image.change, top_k.release, tta.change, heatmap_class.change, age.change, sex.change, site.change],
              on_classify, inputs, [warning, labels, malignancy, heatmap, caption, result, last_shown],
              api_name="classify", preprocess=False, trigger_mode="always_last").then(
            on_shown, last_shown, [decision, context_note, similar, similar_text], api_visibility="private")
        show_heatmap.change(on_toggle_heatmap, [show_heatmap, last_shown], [with_heatmap, heatmap],
                            api_visibility="private")
        json_api = gr.api(classify_json, api_name="classify_json")
        # gr.api labels its values "1st", "2nd", ...: give them the page's names, as the API shows labels
        for block_id, label in zip([*json_api["inputs"], *json_api["outputs"]],
                                   [image.label, top_k.label, tta.label, heatmap_class.label, age.label, sex.label,
                                    site.label, result.label], strict=True):
            demo.blocks[block_id].label = label
        batch_button.click(on_batch, files, [batch_summary, table, csv_file], api_name="classify_batch")
    return demo


def serve(demo, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False, max_file_size: str = "10mb",
          concurrency: int = 2, block: bool = True):
    """Queue and launch ``demo``; returns Gradio's (app, local_url, share_url)."""
    # Two requests at a time matches the two CPU cores of a free Space. The LiteRT interpreter runs one batch
    # at a time behind a lock anyway; more concurrency would only overlap image decoding and heatmap drawing
    # while making every request wait longer for the model.
    # Gradio's queue keeps a record of the last GRADIO_ANALYTICS_MAX_EVENTS events (10,000) for its /monitoring
    # page, and by default rebuilds a pandas DataFrame of all of them after every event: ~40 ms of CPU per request
    # once 10,000 have run, and memory churn. Fewer, summarised every 1,000 events (environment values win).
    for name, value in ANALYTICS_LIMITS.items():
        os.environ.setdefault(name, value)
    demo.queue(default_concurrency_limit=concurrency)
    # Uploads and output files older than an hour are deleted every half hour; without this Gradio's cache (and
    # its in-memory sets of file paths) grows for as long as the server runs.
    demo.delete_cache = CACHE_CLEANUP
    # run_history=False: Gradio 6 would otherwise keep every run (uploaded skin photos included) in the browser.
    # state_session_capacity: Gradio keeps every session (~0.1 MB each; every HTTP API call without a session_hash
    # is one) until 10,000 newer ones push it out; fewer bound the memory (see STATE_SESSIONS).
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_file_size,
                       prevent_thread_lock=not block, run_history=False, css=PAGE_CSS,
                       state_session_capacity=STATE_SESSIONS)


def limit_malloc_arenas(count: int = MALLOC_ARENAS, environ=os.environ) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``) unless MALLOC_ARENA_MAX is set; True if capped.

    glibc gives threads their own arenas, up to 8 per core, and each keeps its high-water mark; Gradio's worker
    threads come and go, so under load the server's RSS crept up for minutes. Call it before threads start."""
    if environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").mallopt(-8, count) == 1  # M_ARENA_MAX; 1 means done
    except (OSError, AttributeError):  # not glibc
        return False


def run(argv: list[str] | None = None) -> int:
    """Load the model, build the page and serve it until stopped."""
    args = parse_args(argv)
    limit_malloc_arenas()
    if not args.analytics:
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported
    from classifier.model_options import open_model

    classifier = open_model(args)
    serve(build_demo(classifier, args.max_file_size), args.host, args.port, args.share, args.max_file_size,
          args.concurrency)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python app.py``: a model that cannot be loaded or a bad option is one ``error: ...`` line and status 2
    (``classifier.errors.exit_status``, as for every command)."""
    from classifier.errors import exit_status

    return exit_status(run, argv)


if __name__ == "__main__":
    sys.exit(main())
