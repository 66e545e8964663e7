"""TensorBoard's own Histograms tab on a split demo logdir, in Chromium: every layer's `my_variable1` has its card."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tb_varscope_plugin.rewrite.split import split_logdir

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

from test_browser import CHROMIUM_ARGS, SCREENSHOTS  # noqa: E402

# The demo's runs (demo/train.py), from the scenarios that train the same models.
DEMO = {
    "tfkeras_seed": "1-tfkeras-init-weight",
    "tfkeras_fixed": "2-tfkeras-build-weight",
    "keras3_vname": "3-keras3-v-name",
    "keras3_vpath": "4-keras3-v-path",
}
LAYERS = ["my_layer", "my_layer_1", "my_layer_2"]


def test_the_histograms_tab_shows_each_layers_variable_after_split(scenario, tmp_path):
    from tensorboard_process import tensorboard

    logdir = tmp_path / "demo-logs"
    for name, run in DEMO.items():
        shutil.copytree(scenario(name), logdir / run)
    split_logdir(str(logdir), str(tmp_path / "demo-logs-split"))

    with tensorboard(tmp_path / "demo-logs-split", "--reload_interval", "1") as url:
        playwright = sync_api.sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 760})
            page.goto(url + "#histograms")
            page.locator("tf-histogram-loader").first.wait_for()
            page.locator("tf-runs-selector input").fill("^1-")
            page.locator("tf-tag-filterer input").fill("my_variable1")
            matching = page.locator("tf-category-paginated-view").first  # "Tags matching /my_variable1/"
            for layer in LAYERS:
                matching.get_by_text(f"{layer}/my_variable1_0/histogram", exact=True).first.wait_for()
            # The run filter applies a moment after typing: until then the fixed run's cards match too.
            sync_api.expect(matching.locator("tf-histogram-loader")).to_have_count(3, timeout=60_000)
            # Each card draws its own layer's values: one run, three steps, a chart per card.
            assert matching.locator("tf-histogram-loader svg").count() >= 3
            if SCREENSHOTS:
                os.makedirs(SCREENSHOTS, exist_ok=True)
                page.screenshot(path=os.path.join(SCREENSHOTS, "split-histograms.png"))
        finally:
            browser.close()
            playwright.stop()
