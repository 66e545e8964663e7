"""The VarScope tab as a person sees it: a real `tensorboard` process with the installed plugin, in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, write_events
from tensorboard_process import tensorboard

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where the README's pictures are refreshed from: `VARSCOPE_SCREENSHOTS=docs bash scripts/test.sh -m browser`.
SCREENSHOTS = os.environ.get("VARSCOPE_SCREENSHOTS")

SEED_RUN = "tfkeras_seed/train"
SEED_TAG = "my_variable1_0/histogram"
LAYERS = ["my_layer", "my_layer_1", "my_layer_2"]
XSS = "<img src=x onerror=window.__xss=1>"



@pytest.fixture(scope="module")
def logdir(scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed article's tf-keras run and a Keras 3 loop logging `v.name`; tests add runs while TensorBoard runs."""
    root = tmp_path_factory.mktemp("browser-logdir")
    shutil.copytree(scenario("tfkeras_seed"), root / "tfkeras_seed")
    shutil.copytree(scenario("keras3_vname"), root / "keras3_vname")
    return root


@pytest.fixture(scope="module")
def tensorboard_url(logdir: Path) -> Iterator[str]:
    """A `tensorboard` process on a free port with its default loader; the plugin comes through its entry point."""
    with tensorboard(logdir, "--reload_interval", "1") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    playwright = sync_api.sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def page(browser, tensorboard_url: str):
    """TensorBoard opened on the VarScope tab."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(tensorboard_url + "#varscope")
    yield page
    page.close()


def tab(page):
    """The VarScope tab's iframe."""
    return page.frame_locator('iframe[src*="name=varscope"]')


def tab_frame(page):
    page.wait_for_selector('iframe[src*="name=varscope"]')
    return next(frame for frame in page.frames if "name=varscope" in frame.url)


def reload_until_visible(page, locator, timeout: float = 60.0) -> None:
    """Clicks Reload until `locator` shows: the plugin's reader catches up within a reload interval."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            locator.first.wait_for(state="visible", timeout=2000)
            return
        except sync_api.TimeoutError:
            if time.monotonic() > deadline:
                raise
        tab(page).get_by_test_id("reload").click()


def keep_screenshot(page, name: str) -> None:
    """Saves what the page shows for the README, when asked to (a test run does not rewrite tracked files)."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def collision_card(page, run: str, tag: str):
    return tab(page).locator(f"[data-testid=collision][data-run={json.dumps(run)}][data-tag={json.dumps(tag)}]")


def test_overview_names_the_three_layers_behind_the_colliding_tag(page):
    card = collision_card(page, SEED_RUN, SEED_TAG)
    reload_until_visible(page, card)

    assert "collision" in tab(page).get_by_test_id("summary").inner_text()
    assert card.locator(".tag-name").inner_text() == SEED_TAG
    lanes = card.get_by_test_id("lane")
    assert lanes.count() == 3
    names = [lane.locator(".lane-name").inner_text() for lane in lanes.all()]
    assert names == [f"lane {k} → {layer}/my_variable1 (100%)" for k, layer in enumerate(LAYERS)]
    keep_screenshot(page, "screenshot.png")


def test_clicking_a_collision_opens_one_chart_per_lane(page):
    card = collision_card(page, SEED_RUN, SEED_TAG)
    reload_until_visible(page, card)

    card.locator(".explanation").click()

    charts = tab(page).get_by_test_id("chart")
    charts.first.wait_for()
    assert [chart.get_attribute("data-lane") for chart in charts.all()] == ["0", "1", "2"]
    assert all(chart.locator("svg").count() == 1 for chart in charts.all())
    for chart, layer in zip(charts.all(), LAYERS, strict=True):
        assert f"{layer}/my_variable1" in chart.inner_text()
    shown = tab(page).get_by_test_id("tensorboard-view-chart")
    assert shown.locator("svg").count() == 1
    assert tab(page).get_by_test_id("error").count() == 0

    tab(page).get_by_test_id("mode-overlay").click()
    assert charts.count() == 3 and all(chart.locator("svg").count() == 1 for chart in charts.all())


def test_the_histograms_view_says_which_layers_tensorboard_hides(page):
    card = collision_card(page, "keras3_vname", "kernel")
    reload_until_visible(page, card)

    card.locator(".explanation").click()

    charts = tab(page).get_by_test_id("chart")
    charts.first.wait_for()
    titles = [chart.inner_text() for chart in charts.all()]
    for title, layer in zip(titles, ["dense", "dense_1", "dense_2"], strict=True):
        assert f"sequential/{layer}/kernel" in title
    note = tab(page).get_by_text("TensorBoard keeps only the last value written at each step")
    assert "sequential/dense_2/kernel" in note.inner_text()
    assert "Lanes 0, 1 never show" in note.inner_text()
    keep_screenshot(page, "histograms.png")


def test_markup_in_run_and_tag_names_is_shown_as_text(page, logdir):
    layered_run(str(logdir / XSS / "events.out.tfevents.1.a"), XSS, [4, 6], steps=3)
    card = collision_card(page, XSS, XSS)
    reload_until_visible(page, card)

    assert card.locator(".tag-name").inner_text() == XSS
    assert XSS in card.locator(".facts").inner_text()
    card.locator(".explanation").click()
    tab(page).get_by_test_id("chart").first.wait_for()
    assert tab(page).get_by_test_id("chart").count() == 2

    frame = tab_frame(page)
    assert frame.locator("img").count() == 0
    assert frame.evaluate("() => window.__xss") is None
    assert page.evaluate("() => window.__xss") is None


def test_events_appended_while_tensorboard_runs_appear_after_reload(page, logdir):
    events_file = logdir / "live" / "events.out.tfevents.1.a"
    values = np.linspace(-1.0, 1.0, 8)
    write_events(str(events_file), [histogram_event(step, "dense/kernel", values) for step in range(3)])
    leaf = tab(page).locator('[data-testid=tree-leaf][data-run="live"]')
    reload_until_visible(page, leaf)
    assert collision_card(page, "live", "dense/kernel").count() == 0

    # Training goes on: at step 3 a second layer starts logging its kernel under the same tag.
    write_events(str(events_file), [histogram_event(3, "dense/kernel", values * k) for k in (1, 2)], append=True)
    card = collision_card(page, "live", "dense/kernel")
    reload_until_visible(page, card)

    assert card.get_by_test_id("lane").count() == 2
    assert "1 (step 3)" in card.locator(".facts").inner_text()
