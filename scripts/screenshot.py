"""Screenshots of the demo as a visitor first sees it, in headless Debian Chromium, for docs/.

    python -m scripts.screenshot     # bundled model -> docs/demo-desktop.png, demo-phone.png, demo-context.png
    python -m scripts.screenshot --model DIR --out /tmp/shots

Starts the app on 127.0.0.1 (no other host is reachable from the page), opens it at 1280x800 and at 390x844,
clicks the first example and waits for its result, then saves the first view (no scrolling). Then, at 1280x800
for a model with a patient-context head, gives the context (age 70, male, back) and saves the result with its
context note and similar cases. The browser tests (tests/test_browser.py) drive the page with the same functions.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import urllib.parse
from pathlib import Path

from classifier.errors import MissingPackage, exit_status

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
RESULT_PATTERN = r"\b[a-z]+ — \w"  # a "code — name" line of the label
CONTEXT = {"age": "70", "sex": "male", "site": "back"}  # the patient context of demo-context.png


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(model: str | None, max_file_size: str = "10mb"):
    """The demo served on a free 127.0.0.1 port: (demo, url)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import app
    from classifier.api import load_classifier

    demo = app.build_demo(load_classifier(model), max_file_size)
    _, url, _ = app.serve(demo, "127.0.0.1", free_port(), max_file_size=max_file_size, block=False)
    return demo, url


def only_local(route):
    """Let the page reach the app and nothing else."""
    url = urllib.parse.urlsplit(route.request.url)
    if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
        route.abort()
    else:
        route.continue_()


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def open_page(browser, url: str, viewport: dict):
    """A page of the app at ``viewport``, loaded (the disclaimer is visible)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport)
    page.route("**/*", only_local)
    page.goto(url)
    expect(page.locator("#disclaimer")).to_be_visible(timeout=60_000)
    expect(page.locator("#examples img").first).to_be_visible(timeout=30_000)
    return page


def click_first_example(page):
    """Click the first example thumbnail and wait for its labelled probabilities."""
    from playwright.sync_api import expect

    page.locator("#examples button.thumbnail-item").first.click()
    expect(page.locator("#probabilities")).to_contain_text(re.compile(RESULT_PATTERN), timeout=60_000)
    expect(page.locator("#heatmap img")).to_be_visible(timeout=30_000)


def settle(page):
    """Wait until the result's pictures have loaded (the similar cases come just after the probabilities)."""
    page.wait_for_timeout(500)
    page.wait_for_function("[...document.querySelectorAll('#heatmap img, #similar img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)


def choose(page, selector: str, option: str):
    """Pick ``option`` in the Gradio dropdown ``selector``."""
    field = page.locator(f"{selector} input")
    field.click()
    # the option list this input controls (another dropdown's may still be shown)
    page.locator(f"[id='{field.get_attribute('aria-controls')}']").get_by_role(
        "option", name=option, exact=True).click()


def give_context(page, age: str = "", sex: str = "not given", site: str = "not given"):
    """Open the patient-context accordion (if folded) and fill it in; returns the note the page should show
    (empty when no field is given). The caller waits for it: every change classifies again."""
    from playwright.sync_api import expect

    if not page.locator("#context-age").is_visible():
        page.locator("#context").get_by_text("Patient context (optional)").click()
    expect(page.locator("#context-age")).to_be_visible()
    page.locator("#context-age input").fill(age)
    choose(page, "#context-sex", sex)
    choose(page, "#context-site", site)
    given = ([f"age {age}"] if age else []) + [v for v in (sex, site) if v != "not given"]
    return f"With {', '.join(given)}: " if given else ""


def shoot(browser, url: str, out: Path) -> list[Path]:
    """The screenshots of the first view after an example click (desktop, phone) and, for a model with a
    patient-context head, of the result with context and similar cases (desktop); returns their paths."""
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = open_page(browser, url, viewport)
        click_first_example(page)
        settle(page)
        page.evaluate("window.scrollTo(0, 0)")
        paths.append(out / f"demo-{name}.png")
        page.screenshot(path=paths[-1])
        if name == "desktop" and page.locator("#context").is_visible():
            note = give_context(page, **CONTEXT)
            expect(page.locator("#context-note")).to_contain_text(note, timeout=60_000)
            settle(page)
            page.evaluate("window.scrollTo(0, document.querySelector('#probabilities').getBoundingClientRect().top"
                          " + window.scrollY - 12)")
            paths.append(out / "demo-context.png")
            page.screenshot(path=paths[-1])
        page.close()
    return paths


def take(out: Path, model: str | None) -> list[Path]:
    """Start the app with ``model`` and a browser, and :func:`shoot`."""
    from playwright.sync_api import sync_playwright

    demo, url = start_app(model)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            try:
                return shoot(browser, url, out)
            finally:
                browser.close()
    finally:
        demo.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "model"), help="model folder or Hub repo id (default: model/)")
    p.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default: docs/)")
    args = p.parse_args(argv)
    if not CHROMIUM.is_file():
        raise MissingPackage(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    for path in take(args.out, args.model):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
