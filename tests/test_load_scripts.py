"""The pure parts of the load generator and the soak test (scripts/load_test.py, scripts/soak.py), and the
heatmap files the app hands to Gradio (logic.jpeg_file). The load runs themselves are not tests (minutes long)."""

import os

import numpy as np
import pytest
from PIL import Image

from classifier import app_logic as logic
from scripts import load_test, soak


def test_soak_defaults_are_ten_minutes_of_twenty_visitors_and_bad_values_are_refused():
    args = soak.parse_args([])
    assert (args.minutes, args.visitors, args.api_name, args.limit) == (10, 20, "/classify", 1.10)
    for bad in (["--minutes", "0"], ["--visitors", "0"], ["--limit", "0.9"]):
        with pytest.raises(SystemExit):
            soak.parse_args(bad)


def test_soak_reads_the_rss_of_a_process_and_none_for_one_that_is_gone():
    assert soak.rss_mb(os.getpid()) > 1
    assert soak.rss_mb(2**22 + 12345) is None  # above Linux's largest pid


def curve(*rss):
    return [{"t": 10.0 * i, "rss_mb": value, "requests": 10 * i, "failures": 0} for i, value in enumerate(rss)]


def test_soak_verdict_compares_the_end_with_the_rss_after_the_first_minute():
    samples = curve(200, 300, 320, 330, 335, 338, 340, 345, 350, 360)  # 340 at t=60 s
    assert soak.rss_after(samples, 60) == 340
    passed, text = soak.verdict(samples, failures=0)
    assert passed and text.startswith("PASS") and "340.0 MB after 60 s, 360.0 MB at the end" in text
    passed, text = soak.verdict(samples + [{"t": 100.0, "rss_mb": 380}], failures=0)
    assert not passed and "grew 1.118x" in text
    passed, text = soak.verdict(samples, failures=2)
    assert not passed and "2 failed requests" in text
    passed, text = soak.verdict(curve(200, 300), failures=0)  # never reached the first minute
    assert not passed and "no RSS sample" in text


def test_load_test_defaults_to_the_light_engine_and_only_loads_local_apps():
    args = load_test.parse_args([])
    assert (args.engine, args.session, args.clients, args.api_name) == ("httpx", "client", 50, "/classify")
    with pytest.raises(SystemExit):
        load_test.parse_args(["--url", "http://example.com/"])


def test_load_test_reads_gradios_event_stream_and_finds_the_output_files():
    lines = ["event: heartbeat", "data: null", "", "event: complete", 'data: ["", {"a": 1}]', ""]
    assert load_test.sse_result(lines) == ("complete", '["", {"a": 1}]')
    assert load_test.sse_result(["event: error", "data: null"]) == ("error", "null")
    assert load_test.sse_result(["event: heartbeat", "data: null"]) == ("heartbeat", None)
    image = {"path": "/tmp/x.jpeg", "url": "http://127.0.0.1:1/gradio_api/file=/tmp/x.jpeg",
             "meta": {"_type": "gradio.FileData"}}
    assert load_test.file_urls(["text", {"label": "x"}, image, [None, {"inner": image}]]) == [image["url"]] * 2


def test_heatmap_files_are_written_once_under_their_content_hash(tmp_path):
    picture = Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3))
    first = logic.jpeg_file(picture, tmp_path, "heatmap")
    inode = os.stat(first).st_ino
    again = logic.jpeg_file(picture.copy(), tmp_path, "heatmap")
    assert again == first and os.stat(again).st_ino == inode  # not rewritten: a download in progress is safe
    assert first.endswith("heatmap.jpeg") and Image.open(first).size == (64, 64)
    other = logic.jpeg_file(Image.new("RGB", (64, 64)), tmp_path, "view")
    assert other != first
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["heatmap.jpeg", "view.jpeg"]  # no staging
    os.remove(first)  # Gradio's delete_cache removed it: the next identical picture writes it again
    assert logic.jpeg_file(picture, tmp_path, "heatmap") == first and os.path.exists(first)


def test_the_page_state_keeps_file_paths_not_images(tmp_path):
    picture = Image.new("RGB", (8, 8), "red")
    shown = logic.Shown("", {"a": 1.0}, "", picture, {}, view=Image.new("RGB", (8, 8)))
    kept = logic.as_files(shown, tmp_path)
    assert isinstance(kept.heatmap, str) and isinstance(kept.view, str) and kept.heatmap != kept.view
    assert logic.displayed_image(kept, True) == kept.heatmap and logic.displayed_image(kept, False) == kept.view
    nothing = logic.Shown("no image", None, "", None, None)
    assert logic.as_files(nothing, tmp_path) is nothing


def test_the_server_caps_mallocs_arenas_unless_the_environment_says_how_many():
    import sys

    import app

    assert app.limit_malloc_arenas(environ={"MALLOC_ARENA_MAX": "4"}) is False
    assert app.limit_malloc_arenas(environ={}) is sys.platform.startswith("linux")
