"""The demo in headless Chromium: one screen at 1280x800, the phone order, the heatmap toggle, the batch tab; on
the bundled model, the patient context and the similar cases."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from classifier.labels import CODES, DISCLAIMER
from classifier.similar import ATTRIBUTION
from scripts import screenshot as shots
from tests.conftest import lesion_like

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RESULT = re.compile(rf"\b({'|'.join(CODES)}) — \w")
CAPTION = re.compile(rf"^({'|'.join(CODES)}) · [a-z -]+ · \d\.\d\d$")


def serving(model_dir):
    """The app with ``model_dir`` on 127.0.0.1 for a module's tests: yields its URL (skips without Chromium)."""
    if not shots.CHROMIUM.is_file():
        pytest.skip(f"{shots.CHROMIUM} not found (Debian: apt-get install chromium)")
    demo, url = shots.start_app(str(model_dir))
    yield url
    demo.close()


@pytest.fixture(scope="module")
def served(tiny_litert_dir):
    yield from serving(tiny_litert_dir)


@pytest.fixture(scope="module")
def served_bundled(bundled_model_dir):
    """The bundled model, which has a patient-context head and a similar-cases index (the tiny one has neither)."""
    yield from serving(bundled_model_dir)


@pytest.fixture(scope="module")
def browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = shots.launch(p)
        yield browser
        browser.close()


def box(page, selector: str) -> dict:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not displayed"
    return found


def assert_in_view(page, selector: str, viewport: dict) -> dict:
    b = box(page, selector)
    assert b["y"] >= 0 and b["y"] + b["height"] <= viewport["height"], (selector, b)
    assert b["x"] >= 0 and b["x"] + b["width"] <= viewport["width"], (selector, b)
    return b


def test_first_view_holds_everything_and_an_example_click_shows_its_result_in_place(browser, served, tmp_path):
    from playwright.sync_api import expect

    page = shots.open_page(browser, served, shots.DESKTOP)
    for selector in ("#title", "#disclaimer", "#image-input", "#examples", "#result-column"):
        assert_in_view(page, selector, shots.DESKTOP)
    assert page.get_by_text(DISCLAIMER.split("'")[0]).is_visible()
    thumbnails = page.locator("#examples button.thumbnail-item")
    assert thumbnails.count() == 14
    captions = page.locator("#examples .caption-label").all_inner_texts()
    assert sorted(set(captions)) == sorted(CODES)  # every class, each under its thumbnail

    thumbnails.nth(8).click()  # a melanoma
    expect(page.locator("#probabilities")).to_contain_text(RESULT, timeout=60_000)
    expect(page.locator("#malignancy")).to_contain_text("P(malignant) =", timeout=30_000)
    expect(page.locator("#heatmap img")).to_be_visible(timeout=30_000)
    assert page.evaluate("window.scrollY") == 0  # the page did not move
    for selector in ("#probabilities", "#malignancy", "#heatmap", "#examples", "#disclaimer"):
        assert_in_view(page, selector, shots.DESKTOP)
    assert box(page, "#warning")["y"] < box(page, "#probabilities")["y"]  # a warning would come first
    for hidden in ("#context", "#context-note", "#similar", "#similar-text"):  # this model has no head, no index
        expect(page.locator(hidden)).to_be_hidden()
    page.screenshot(path=tmp_path / "desktop.png")
    print(f"screenshot: {tmp_path / 'desktop.png'}")

    # The toggle shows the model's view alone, and the heatmap again; a new image keeps the choice.
    overlay_src = page.locator("#heatmap img").get_attribute("src")
    page.locator("#show-heatmap input").uncheck()
    expect(page.locator("#heatmap")).to_contain_text("alone", timeout=30_000)
    expect(page.locator("#heatmap img")).not_to_have_attribute("src", overlay_src)
    view_src = page.locator("#heatmap img").get_attribute("src")
    thumbnails.nth(12).click()
    expect(page.locator("#heatmap img")).not_to_have_attribute("src", view_src, timeout=30_000)  # the new image
    expect(page.locator("#heatmap")).to_contain_text("alone")
    page.locator("#show-heatmap input").check()
    expect(page.locator("#heatmap")).to_contain_text("Heatmap", timeout=30_000)
    page.close()


def test_phone_order_is_disclaimer_input_result_examples(browser, served):
    from playwright.sync_api import expect

    page = shots.open_page(browser, served, shots.PHONE)
    shots.click_first_example(page)
    expect(page.locator("#probabilities")).to_contain_text(RESULT)
    order = [box(page, s) for s in ("#disclaimer", "#image-input", "#probabilities", "#examples")]
    tops = [b["y"] for b in order]
    assert tops == sorted(tops), tops
    for b in order:
        assert b["x"] >= 0 and b["x"] + b["width"] <= shots.PHONE["width"]
    assert order[0]["y"] + order[0]["height"] <= shots.PHONE["height"]  # the disclaimer is in the first view
    assert page.evaluate("document.documentElement.scrollWidth") <= shots.PHONE["width"]  # no sideways scrolling
    page.close()


def test_upload_is_classified_and_a_broken_file_gets_a_message(browser, served, tmp_path):
    from playwright.sync_api import expect

    image = tmp_path / "lesion.jpg"
    Image.fromarray(lesion_like(200)).save(image, quality=92)
    page = shots.open_page(browser, served, shots.DESKTOP)
    page.locator("#image-input input[type=file]").set_input_files(image)
    probabilities = page.locator("#probabilities")
    expect(probabilities).to_contain_text(RESULT, timeout=60_000)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    page.locator("#image-input input[type=file]").set_input_files(broken)
    expect(page.locator("#warning")).to_contain_text("Cannot classify this input", timeout=30_000)
    expect(probabilities).not_to_contain_text(" — ")
    page.close()


def test_batch_tab_gives_a_row_per_file_and_a_csv(browser, served, tmp_path):
    from playwright.sync_api import expect

    files = []
    for seed in range(3):
        files.append(tmp_path / f"lesion{seed}.jpg")
        Image.fromarray(lesion_like(120, seed)).save(files[-1], quality=90)
    files.append(tmp_path / "broken.jpg")
    files[-1].write_bytes(b"\xff\xd8 not really a jpeg")

    page = shots.open_page(browser, served, shots.DESKTOP)
    page.get_by_role("tab", name="Many images").click()
    expect(page.locator("#batch-limits")).to_contain_text("Up to 100 images")
    page.locator("#batch-files input[type=file]").set_input_files(files)
    expect(page.locator("#batch-files")).to_contain_text("broken", timeout=30_000)
    page.locator("#batch-run").click()
    expect(page.locator("#batch-summary")).to_contain_text("3 of 4 images classified", timeout=60_000)

    rows = page.locator("#batch-table [role=row]:not(:has([role=columnheader]))")
    expect(rows).to_have_count(4)
    texts = rows.all_inner_texts()
    assert sum("error:" in t for t in texts) == 1 and "broken.jpg" in next(t for t in texts if "error:" in t)
    assert sum(bool(RESULT.search(t)) for t in texts) == 3

    link = page.locator("#batch-csv a").first
    expect(link).to_be_visible(timeout=30_000)
    body = page.request.get(link.get_attribute("href")).text()
    records = list(csv.DictReader(io.StringIO(body)))
    assert sorted(r["path"] for r in records) == sorted(p.name for p in files)  # predict's columns
    assert [r["path"] for r in records if r["error"]] == ["broken.jpg"]
    page.close()


def test_screenshot_script_writes_its_views(browser, served, served_bundled, tmp_path):
    """scripts/screenshot.py (which makes docs/demo-*.png) works: PNGs of the right sizes; the view with patient
    context for a model that has a context head."""
    assert [p.name for p in shots.shoot(browser, served, tmp_path / "tiny")] == ["demo-desktop.png", "demo-phone.png"]
    paths = shots.shoot(browser, served_bundled, tmp_path)
    assert [p.name for p in paths] == ["demo-desktop.png", "demo-context.png", "demo-phone.png"]
    for path, viewport in zip(paths, (shots.DESKTOP, shots.DESKTOP, shots.PHONE), strict=True):
        with Image.open(path) as im:
            assert im.size == (viewport["width"], viewport["height"])
    for name in ("demo-desktop.png", "demo-context.png", "demo-phone.png"):  # the committed screenshots exist
        assert Path(shots.ROOT / "docs" / name).is_file()


def test_patient_context_and_similar_cases_on_the_bundled_model(browser, served_bundled):
    """The context accordion, folded and empty, right under the image; the similar cases under the result, each
    captioned, with the attribution; the probabilities still in the first screen; giving context shows how it
    moved the answer, a bad value shows an error, and taking it away takes the note away."""
    from playwright.sync_api import expect

    page = shots.open_page(browser, served_bundled, shots.DESKTOP)
    expect(page.locator("#context")).to_be_visible()
    expect(page.locator("#context-age")).to_be_hidden()  # folded
    image, context, options = (box(page, s) for s in ("#image-input", "#context", "#options"))
    assert image["y"] + image["height"] <= context["y"] < options["y"]
    shots.click_first_example(page)
    for selector in ("#probabilities", "#malignancy", "#examples"):
        assert_in_view(page, selector, shots.DESKTOP)
    expect(page.locator("#context-note")).to_be_hidden()  # no context given

    thumbnails = page.locator("#similar button.thumbnail-item")
    expect(thumbnails).to_have_count(8, timeout=30_000)
    captions = page.locator("#similar .caption-label").all_inner_texts()
    assert len(captions) == 8 and all(CAPTION.match(c.strip()) for c in captions), captions
    distances = [float(c.rsplit("·", 1)[1]) for c in captions]
    assert distances == sorted(distances)  # nearest first
    text = page.locator("#similar-text")
    expect(text).to_contain_text(ATTRIBUTION)
    expect(text).to_contain_text("not a diagnosis")
    assert box(page, "#similar")["y"] > box(page, "#heatmap")["y"]  # under the result

    before = page.locator("#probabilities").inner_text()
    note = shots.give_context(page, **shots.CONTEXT)
    expect(page.locator("#context-note")).to_contain_text(note, timeout=60_000)
    expect(page.locator("#context-note")).to_contain_text("(image only → with context)")
    assert page.locator("#probabilities").inner_text() != before  # the answer with context
    assert box(page, "#context-note")["y"] < box(page, "#malignancy")["y"]  # next to the probabilities

    page.locator("#context-age input").fill("150")
    expect(page.get_by_text("age must be between 0 and 120 years, not 150").first).to_be_visible(timeout=30_000)
    shots.give_context(page)  # all back to "not given"
    expect(page.locator("#context-note")).to_be_hidden(timeout=60_000)
    expect(page.locator("#probabilities")).to_have_text(before, timeout=30_000)
    page.close()


def test_phone_order_with_context_and_similar_cases(browser, served_bundled):
    from playwright.sync_api import expect

    page = shots.open_page(browser, served_bundled, shots.PHONE)
    shots.click_first_example(page)
    expect(page.locator("#similar img").first).to_be_visible(timeout=30_000)
    order = [box(page, s) for s in ("#image-input", "#context", "#probabilities", "#similar", "#examples")]
    tops = [b["y"] for b in order]
    assert tops == sorted(tops), tops
    for b in order:
        assert b["x"] >= 0 and b["x"] + b["width"] <= shots.PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= shots.PHONE["width"]  # no sideways scrolling
    page.close()


@pytest.fixture(scope="module")
def served_decision(tiny_litert_dir, tmp_path_factory):
    """The tiny model with a hand-set decision bias (+6 for mel) that makes mel the decision while another class
    stays the most probable (tests/test_decision_bias.py)."""
    import json
    import shutil

    folder = Path(shutil.copytree(tiny_litert_dir, tmp_path_factory.mktemp("decision") / "model"))
    config = json.loads((folder / "config.json").read_text())
    config["calibration"]["decision_bias"] = [0.0, 0.0, 0.0, 0.0, 6.0, 0.0, 0.0]
    (folder / "config.json").write_text(json.dumps(config))
    yield from serving(folder)


def test_the_decision_line_stands_above_the_probabilities_with_why_they_differ(browser, served_decision):
    from playwright.sync_api import expect

    page = shots.open_page(browser, served_decision, shots.DESKTOP)
    shots.click_first_example(page)
    decision = page.locator("#decision")
    expect(decision).to_contain_text("Decision: mel — Melanoma", timeout=30_000)
    expect(decision).to_contain_text("mel is chosen although")
    expect(decision).to_contain_text("not a diagnosis")
    assert "mel" not in page.locator("#probabilities").inner_text().split("\n")[0]  # gr.Label: the most probable
    assert box(page, "#decision")["y"] < box(page, "#probabilities")["y"]
    assert_in_view(page, "#decision", shots.DESKTOP)
    assert page.get_by_text(DISCLAIMER.split("'")[0]).is_visible()
    page.close()
