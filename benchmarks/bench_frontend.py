"""Times the VarScope tab in headless Chromium on a 10,000-tag logdir, beside TensorBoard's own Histograms tab.

Run: `python benchmarks/bench_frontend.py [--reps 5]` (needs /usr/bin/chromium and playwright). The logdir is 10 runs x
1,000 TF2 histogram tags x 5 steps, one tag in ten written by two layers (benchmarks/synthetic_logs.py). One real
`tensorboard --logdir ... --port 0` serves both tabs; each figure is the median over fresh pages after a first visit
has warmed TensorBoard and the plugin (warm load):

- VarScope warm load: navigation start until the overview's first collision card and the tree's rows are shown.
- Histograms tab warm load: navigation start until its first histogram card has drawn its chart.
- DOM elements of the VarScope tab's document once loaded.
- Filter keystroke: from the `input` event to the next frame painted, and to the painted tree that answers it.
- Leaf click: from the click on a colliding tag's row to the next frame painted after its first chart is drawn.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tab import start_tensorboard  # noqa: E402
from synthetic_logs import build_report_logdir  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FILTER_TEXT = "layer_12/"

# In the tab's frame: time one edit of the tree filter (echo painted, and the tree that answers it painted).
KEYSTROKE_JS = """async (text) => {
  const input = document.querySelector('[data-testid=tree-filter]');
  const tree = document.querySelector('[data-testid=tree]');
  const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const start = performance.now();
  input.value = text;
  input.dispatchEvent(new Event('input'));
  await painted();
  const echo = performance.now() - start;
  while (tree.getAttribute('data-filter') !== text) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await painted();
  return [echo, performance.now() - start];
}"""

# In the tab's frame: click a colliding tag's row and time until its first chart is drawn and painted.
LEAF_CLICK_JS = """async (index) => {
  const leaves = document.querySelectorAll('[data-testid=tree-leaf]');
  const leaf = leaves[index % leaves.length];
  const start = performance.now();
  leaf.click();
  while (!document.querySelector('[data-testid=chart] svg path.ridge')) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  return performance.now() - start;
}"""


def wait_for_report(url: str) -> None:
    """Until the plugin's first pass over the logdir has ended."""
    while True:
        with urllib.request.urlopen(url + "data/plugin/varscope/report") as answer:
            if b'"complete": false' not in answer.read():
                return
        time.sleep(1)


def varscope_load(browser, url: str) -> tuple[float, int, object]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start = time.perf_counter()
    page.goto(url + "#varscope")
    frame = page.frame_locator('iframe[src*="name=varscope"]')
    frame.get_by_test_id("collision").first.wait_for()
    frame.locator("[data-testid=tree] [role=treeitem]").first.wait_for()
    seconds = time.perf_counter() - start
    inner = next(f for f in page.frames if "name=varscope" in f.url)
    elements = inner.evaluate("() => document.getElementsByTagName('*').length")
    return seconds, elements, page


def histograms_load(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start = time.perf_counter()
    page.goto(url + "#histograms")
    # The first histogram card with its chart drawn (Playwright's CSS pierces the dashboard's shadow roots).
    page.locator("tf-histogram-loader vz-histogram-timeseries svg path").first.wait_for(timeout=300_000)
    seconds = time.perf_counter() - start
    page.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    logdir, manifest = build_report_logdir(runs=10, tags=1000, steps=5)
    process, url = start_tensorboard(str(logdir))
    try:
        wait_for_report(url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            # Warm-up: TensorBoard's data, the plugin's report and both frontends' caches.
            histograms_load(browser, url)
            _, _, page = varscope_load(browser, url)
            page.close()
            loads, counts, tb_loads, echoes, filtered, clicks = [], [], [], [], [], []
            for rep in range(args.reps):
                tb_loads.append(histograms_load(browser, url))
                seconds, elements, page = varscope_load(browser, url)
                loads.append(seconds)
                counts.append(elements)
                frame = next(f for f in page.frames if "name=varscope" in f.url)
                for i in range(1, len(FILTER_TEXT) + 1):
                    echo, done = frame.evaluate(KEYSTROKE_JS, FILTER_TEXT[:i])
                    echoes.append(echo)
                    filtered.append(done)
                echo, done = frame.evaluate(KEYSTROKE_JS, "")
                echoes.append(echo)
                filtered.append(done)
                clicks.append(frame.evaluate(LEAF_CLICK_JS, rep))
                page.close()
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)

    tags = manifest["runs"] * manifest["tags"]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"# logdir: {manifest['runs']} runs x {manifest['tags']} tags x {manifest['steps']} steps = {tags} tags, "
        f"{manifest['bytes'] / 1e6:.0f} MB; {args.reps} reps"
    )
    med = statistics.median
    print(
        f"VarScope tab, warm load to overview + tree: median {med(loads):.2f} s "
        f"(range {min(loads):.2f}-{max(loads):.2f})"
    )
    print(
        f"TensorBoard Histograms tab, warm load to first card: median {med(tb_loads):.2f} s "
        f"(range {min(tb_loads):.2f}-{max(tb_loads):.2f})"
    )
    print(f"VarScope DOM elements once loaded: {max(counts)} (max)")
    print(
        f"filter keystroke to painted echo: median {med(echoes):.0f} ms, max {max(echoes):.0f} ms "
        f"({len(echoes)} keystrokes: {FILTER_TEXT!r} typed, then cleared)"
    )
    print(
        f"filter keystroke to painted filtered tree (60 ms debounce included): median {med(filtered):.0f} ms, "
        f"max {max(filtered):.0f} ms"
    )
    print(f"leaf click to drawn chart: median {med(clicks):.0f} ms, max {max(clicks):.0f} ms")


if __name__ == "__main__":
    main()
