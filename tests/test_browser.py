"""The VarScope tab as a person sees it: a real `tensorboard` process with the installed plugin, in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
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
DAMAGED_RUN = "damaged"
DAMAGED_FILE = "events.out.tfevents.5.damaged"
BIDI_TAG = "\u202egnp.exe\u202c/kernel"
DRIFT_RUN = "training"
DRIFT_TAG = "dense/kernel"
DRIFT_LAYERS = ["sequential/dense/kernel", "sequential/dense_1/kernel", "sequential/dense_2/kernel"]


@pytest.fixture(scope="module")
def logdir(scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed article's tf-keras run and a Keras 3 loop logging `v.name`; tests add runs while TensorBoard runs."""
    root = tmp_path_factory.mktemp("browser-logdir")
    shutil.copytree(scenario("tfkeras_seed"), root / "tfkeras_seed")
    shutil.copytree(scenario("keras3_vname"), root / "keras3_vname")
    # A run whose collision is read up to a record whose data fails its checksum (the file's last byte flipped).
    damaged = root / DAMAGED_RUN / DAMAGED_FILE
    layered_run(str(damaged), "dense/kernel", [4, 6], steps=5)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    layered_run(str(root / "bidi" / "events.out.tfevents.6.bidi"), BIDI_TAG, [3, 5], steps=3)
    write_drifting_run(root / DRIFT_RUN / "events.out.tfevents.7.training")
    return root


def write_drifting_run(path: Path) -> None:
    """Three layers' kernels logged under one tag for 30 steps, spreading and drifting apart as training goes on."""
    rng = np.random.default_rng(7)
    events = [
        histogram_event(step, DRIFT_TAG, rng.normal(0.15 * k * step / 30, (0.2 + 0.1 * k) * (1 + step / 20), 2000))
        for step in range(30)
        for k in range(3)
    ]
    write_events(str(path), events)


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


def open_lanes(page, run: str, tag: str):
    """Opens a collision's lanes view from its card; returns the frame locator of the tab."""
    card = collision_card(page, run, tag)
    reload_until_visible(page, card)
    card.get_by_test_id("open-histograms").click()
    tab(page).get_by_test_id("chart").first.locator("svg").wait_for()
    return tab(page)


def served(tensorboard_url: str, run: str, tag: str, lane: int) -> list:
    """What the plugin's /histograms route serves for one lane."""
    query = urllib.parse.urlencode({"run": run, "tag": tag, "lane": lane})
    with urllib.request.urlopen(f"{tensorboard_url}data/plugin/varscope/histograms?{query}") as answer:
        return json.loads(answer.read())


def hover(page, chart, fx: float, fy: float):
    """Points at a fraction of a chart's width and height; returns its readout once it shows.

    Moves again while the readout stays hidden: a chart redrawn at a new width (a scrollbar appeared) starts
    with its readout hidden until the pointer moves.
    """
    readout = chart.get_by_test_id("hover-readout")
    chart.scroll_into_view_if_needed()
    for attempt in range(10):
        box = chart.locator("svg").bounding_box()
        page.mouse.move(box["x"] + box["width"] * fx - 3, box["y"] + box["height"] * fy)
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=3)
        try:
            readout.wait_for(state="visible", timeout=1000)
            return readout
        except sync_api.TimeoutError:
            if attempt == 9:
                raise
    return readout


def luminance(css_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of an `rgb(...)`/`rgba(...)` colour as getComputedStyle gives it."""
    channels = [float(c) / 255 for c in re.findall(r"[\d.]+", css_color)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


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
    # A clean run's tags show once "colliding tags only" (on by default: the logdir has collisions) is off.
    reload_until_visible(page, tab(page).locator('[data-testid=run-list] li[data-run="live"]'))
    tab(page).get_by_test_id("colliding-only").uncheck()
    leaf = tab(page).locator('[data-testid=tree-leaf][data-run="live"]')
    reload_until_visible(page, leaf)
    assert collision_card(page, "live", "dense/kernel").count() == 0

    # Training goes on: at step 3 a second layer starts logging its kernel under the same tag.
    write_events(str(events_file), [histogram_event(3, "dense/kernel", values * k) for k in (1, 2)], append=True)
    card = collision_card(page, "live", "dense/kernel")
    reload_until_visible(page, card)

    assert card.get_by_test_id("lane").count() == 2
    assert "1 (step 3)" in card.locator(".facts").inner_text()


def test_the_hover_readout_shows_the_step_and_the_bucket_under_the_pointer(page, tensorboard_url):
    frame = open_lanes(page, DRIFT_RUN, DRIFT_TAG)
    chart = frame.locator("[data-testid=chart][data-lane='0']")
    last = chart.locator("path.ridge").last
    step = int(last.get_attribute("data-step"))
    # The peak of the last (front) ridge, as a fraction of the chart's width, and its baseline as one of its height.
    peak_x, baseline_y = last.evaluate(
        """path => {
          const svg = path.ownerSVGElement;
          const [width, height] = [svg.viewBox.baseVal.width, svg.viewBox.baseVal.height];
          let top = null;
          for (let i = 0; i <= 200; i++) {
            const p = path.getPointAtLength(path.getTotalLength() * i / 200);
            if (top === null || p.y < top.y) top = p;
          }
          return [top.x / width, path.getBBox().y + path.getBBox().height - 2].map((v, i) => i ? v / height : v);
        }"""
    )
    readout = hover(page, chart, peak_x, baseline_y)
    assert int(readout.get_attribute("data-step")) == step
    text = readout.inner_text()
    assert f"step\t{step}" in text or f"step\n{step}" in text or re.search(rf"step\s+{step}\b", text)
    assert "lane\n0 → " in text or re.search(r"lane\s+0 → ", text)
    assert "wall time" in text
    value = float(readout.get_attribute("data-value"))
    count = float(readout.get_attribute("data-count"))
    left, right = float(readout.get_attribute("data-left")), float(readout.get_attribute("data-right"))
    assert left <= value <= right
    # The count is what the served buckets of that step put in the bin under the pointer (each bucket giving
    # the share of its count that overlaps the bin), as the chart draws it.
    entry = next(e for e in served(tensorboard_url, DRIFT_RUN, DRIFT_TAG, 0) if e[1] == step)
    expected = sum(
        c * max(0.0, min(r, right) - max(lo, left)) / (r - lo) if r > lo else (c if left <= lo < right else 0.0)
        for lo, r, c in entry[2]
    )
    assert count == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert count > 0, "the pointer is on the ridge's peak"
    assert re.search(r"count\s+\S+", text)
    assert chart.locator("path.ridge.hovered").get_attribute("data-step") == str(step)
    keep_screenshot(page, "lanes-hover.png")


def test_lanes_share_one_value_range_unless_asked_per_lane(page):
    frame = open_lanes(page, "keras3_vname", "kernel")

    def x_labels(lane: int) -> list[str]:
        chart = frame.locator(f"[data-testid=chart][data-lane='{lane}']")
        return chart.locator("g.axis text[text-anchor=middle]").all_inner_texts()

    assert x_labels(0) == x_labels(2)
    frame.get_by_test_id("range-lane").click()
    frame.get_by_test_id("range-lane").and_(frame.locator("[aria-pressed=true]")).wait_for()
    assert x_labels(0) != x_labels(2)


def test_the_distributions_view_draws_percentile_bands_for_every_lane(page):
    frame = open_lanes(page, DRIFT_RUN, DRIFT_TAG)
    frame.get_by_test_id("view-distributions").click()
    frame.locator("[data-testid=histograms][data-view=distributions]").wait_for()

    charts = frame.get_by_test_id("chart")
    assert [c.get_attribute("data-lane") for c in charts.all()] == ["0", "1", "2"]
    for chart in [*charts.all(), frame.get_by_test_id("tensorboard-view-chart")]:
        bands = chart.get_by_test_id("band")
        assert bands.count() == 4
        assert all(len(band.get_attribute("d")) > 20 for band in bands.all())
        assert chart.locator("path.median").count() == 1
    readout = hover(page, frame.get_by_test_id("tensorboard-view-chart"), 0.7, 0.5)
    assert "50%" in readout.inner_text() and "lane" in readout.inner_text()
    keep_screenshot(page, "distributions.png")


def test_the_tab_follows_tensorboards_dark_mode_toggle(page):
    card = collision_card(page, SEED_RUN, SEED_TAG)
    reload_until_visible(page, card)
    frame = tab_frame(page)

    def colours() -> tuple[float, float]:
        background = frame.evaluate("() => getComputedStyle(document.body).backgroundColor")
        text = frame.evaluate("() => getComputedStyle(document.querySelector('.header h1')).color")
        return luminance(background), luminance(text)

    light_background, light_text = colours()
    assert light_background > 0.8 and light_text < 0.2
    page.get_by_label("Menu for changing light or dark theme").click()
    page.get_by_title("Force dark TensorBoard theme.").click()
    frame.wait_for_function("() => document.documentElement.classList.contains('dark')")
    dark_background, dark_text = colours()
    assert dark_background < 0.05, "the page behind the tab is dark"
    assert dark_text > 0.3, "and its text light"
    card_background = frame.evaluate("() => getComputedStyle(document.querySelector('.card')).backgroundColor")
    assert luminance(card_background) < 0.08
    # Contrast of the card text on the card (WCAG): at least 4.5:1.
    card_text = frame.evaluate("() => getComputedStyle(document.querySelector('.explanation')).color")
    assert (luminance(card_text) + 0.05) / (luminance(card_background) + 0.05) >= 4.5
    page.locator(".mat-mdc-menu-panel").wait_for(state="detached")
    open_lanes(page, DRIFT_RUN, DRIFT_TAG)
    hover(page, tab(page).locator("[data-testid=chart][data-lane='2']"), 0.45, 0.75)
    assert (
        luminance(frame.evaluate("() => getComputedStyle(document.querySelector('.chart-card')).backgroundColor"))
        < 0.08
    )
    keep_screenshot(page, "dark.png")

    page.get_by_label("Menu for changing light or dark theme").click()
    page.get_by_title("Force light TensorBoard theme.").click()
    frame.wait_for_function("() => !document.documentElement.classList.contains('dark')")
    assert colours()[0] > 0.8


def test_the_view_lives_in_the_url_reload_and_back_restore_it(page):
    frame = open_lanes(page, SEED_RUN, SEED_TAG)
    assert "p.varscope.tag=" in page.url
    frame.get_by_test_id("view-distributions").click()
    frame.locator("[data-testid=histograms][data-view=distributions]").wait_for()
    frame.get_by_test_id("time-relative").click()
    frame.locator("[data-testid=time-relative][aria-pressed=true]").wait_for()
    shared = page.url

    page.reload()
    frame = tab(page)
    view = frame.locator("[data-testid=histograms][data-view=distributions]")
    view.wait_for()
    assert view.get_attribute("data-tag") == SEED_TAG and view.get_attribute("data-run") == SEED_RUN
    assert frame.locator("[data-testid=time-relative][aria-pressed=true]").count() == 1
    assert frame.get_by_test_id("chart").first.get_by_test_id("band").count() == 4
    assert frame.locator("[data-testid=tree-leaf].selected").count() >= 1

    page.go_back()  # undoes the time axis
    frame.locator("[data-testid=time-step][aria-pressed=true]").wait_for()
    page.go_back()  # and the switch to distributions
    frame.locator("[data-testid=histograms][data-view=histograms]").wait_for()
    page.go_back()  # and opening the tag
    frame.get_by_test_id("overview").wait_for()
    page.go_forward()
    frame.locator("[data-testid=histograms][data-view=histograms]").wait_for()

    # A shared link opens the same view in a fresh page.
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    other.goto(shared)
    tab(other).locator("[data-testid=histograms][data-view=distributions]").wait_for()
    assert tab(other).locator("[data-testid=time-relative][aria-pressed=true]").count() == 1
    other.close()


def test_a_damaged_files_warning_shows_in_the_header_on_the_run_and_its_lanes(page):
    card = collision_card(page, DAMAGED_RUN, "dense/kernel")
    reload_until_visible(page, card)
    frame = tab(page)

    header = frame.get_by_test_id("header-warnings")
    assert header.is_visible() and "1 warning" in header.inner_text()
    assert DAMAGED_FILE in header.get_attribute("title") and "@ byte" in header.get_attribute("title")
    header.click()
    panel = frame.get_by_test_id("warnings-panel")
    assert DAMAGED_FILE in panel.inner_text() and "checksum" in panel.inner_text()

    on_card = card.get_by_test_id("card-warnings")
    assert DAMAGED_FILE in on_card.inner_text() and re.search(r"@ byte \d+", on_card.inner_text())
    assert "1 warning" in frame.locator("[data-testid=run-list] li[data-run=damaged]").inner_text()
    run_node = frame.locator("[data-testid=tree-node][data-kind=run]", has_text=DAMAGED_RUN)
    assert "1 warning" in run_node.get_by_test_id("tree-run-warnings").inner_text()

    card.get_by_test_id("open-histograms").click()
    lanes = frame.get_by_test_id("lanes-warnings")
    lanes.wait_for()
    assert DAMAGED_FILE in lanes.inner_text() and re.search(r"@ byte \d+", lanes.inner_text())


def test_the_tree_counts_tags_as_the_header_does(page):
    reload_until_visible(page, collision_card(page, SEED_RUN, SEED_TAG))
    frame = tab(page)
    frame.get_by_test_id("colliding-only").uncheck()
    header_tags = int(re.search(r"(\d+) histogram tags", frame.get_by_test_id("summary").inner_text()).group(1))
    message = frame.get_by_test_id("tree-filter-message").inner_text()
    assert message == f"{header_tags} histogram tags"


def test_at_700_px_an_open_tag_shows_its_charts_in_the_first_screen(browser, tensorboard_url):
    page = browser.new_page(viewport={"width": 700, "height": 900})
    page.goto(tensorboard_url + "#varscope")
    try:
        frame = open_lanes(page, SEED_RUN, SEED_TAG)
        chart = frame.get_by_test_id("tensorboard-view-chart").locator("svg")
        box = chart.bounding_box()
        assert box["y"] + box["height"] / 2 < 900, "the first chart is in the first screen"
        tree = frame.get_by_test_id("tree").bounding_box()
        assert tree["y"] > box["y"], "the tree comes after the charts"
    finally:
        page.close()


def test_the_tree_is_an_aria_tree_driven_by_the_keyboard(page):
    reload_until_visible(page, collision_card(page, SEED_RUN, SEED_TAG))
    frame = tab(page)
    frame.get_by_test_id("collapse-all").click()
    run_row = frame.locator("[data-testid=tree-node][data-kind=run]").first
    assert run_row.get_attribute("aria-expanded") == "false"
    assert run_row.get_attribute("aria-level") == "1"
    assert frame.locator("[role=tree] [role=treeitem][tabindex='0']").count() == 1
    run_row.focus()
    run_row.press("ArrowRight")
    frame.locator("[data-testid=tree-node][data-kind=run][aria-expanded=true]").first.wait_for()
    frame.locator("[role=treeitem]:focus").press("ArrowDown")
    focused = frame.locator("[role=treeitem]:focus")
    assert focused.get_attribute("aria-level") == "2"
    focused.press("ArrowLeft")
    assert frame.locator("[role=treeitem]:focus").get_attribute("aria-level") == "1"

    frame.get_by_test_id("expand-all").click()
    leaf = frame.locator(f"[data-testid=tree-leaf][data-tag={json.dumps(SEED_TAG)}][data-lane='2']").first
    leaf.focus()
    leaf.press("Enter")
    frame.get_by_test_id("chart").first.wait_for()
    assert frame.locator("[data-testid=chart][data-lane='2']").get_attribute("class").count("selected-lane") == 1


def test_bidirectional_controls_in_names_are_shown_escaped(page):
    card = tab(page).locator("[data-testid=collision][data-run=bidi]")
    reload_until_visible(page, card)
    assert card.get_attribute("data-tag") == BIDI_TAG
    assert card.locator(".tag-name").inner_text() == "\\u202egnp.exe\\u202c/kernel"
    assert "\u202e" not in tab(page).locator("body").inner_text()
