"""The demo in headless Chromium: disclaimer visible without scrolling, an upload gets labelled probabilities."""

from __future__ import annotations

import re
import socket
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from classifier.labels import CODES, DISCLAIMER
from tests.conftest import lesion_like

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    import app
    from classifier.api import load_classifier

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(load_classifier(str(tiny_model_dir)))
    _, url, _ = app.serve(demo, "127.0.0.1", port, block=False)
    yield url
    demo.close()


def only_local(route):
    """Let the page reach the app and nothing else."""
    url = urllib.parse.urlsplit(route.request.url)
    if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
        route.abort()
    else:
        route.continue_()


def test_disclaimer_visible_and_upload_is_classified(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    image = tmp_path / "lesion.jpg"
    Image.fromarray(lesion_like(200)).save(image, quality=92)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.route("**/*", only_local)
            page.goto(served)

            disclaimer = page.get_by_text(DISCLAIMER.split("'")[0])
            expect(disclaimer).to_be_visible(timeout=30_000)
            box = disclaimer.bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]
            assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]

            page.locator("input[type=file]").first.set_input_files(image)
            probabilities = page.locator("#probabilities")
            expect(probabilities).to_contain_text(re.compile(rf"\b({'|'.join(CODES)}) — \w"), timeout=60_000)
            page.screenshot(path=tmp_path / "demo.png", full_page=True)
            print(f"screenshot: {tmp_path / 'demo.png'}")

            broken = tmp_path / "broken.jpg"
            broken.write_bytes(b"\xff\xd8 not really a jpeg")
            page.locator("input[type=file]").first.set_input_files(broken)
            expect(page.locator("#warning")).to_contain_text("Cannot classify this input", timeout=30_000)
            expect(probabilities).not_to_contain_text(" — ")
        finally:
            browser.close()
