"""A real `tensorboard` process for tests: default loader, a free port, the plugin through its entry point."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# What TensorBoard prints once it listens: "TensorBoard 2.21.0 at http://localhost:PORT/ (Press CTRL+C to quit)".
SERVING = re.compile(r"TensorBoard \S+ at (http://\S+) ")


@contextlib.contextmanager
def tensorboard(logdir: Path | str, *flags: str) -> Iterator[str]:
    """Runs `tensorboard --logdir LOGDIR --port 0 FLAGS...` and yields its base URL (ending in `/`)."""
    with tensorboard_process(logdir, *flags) as (url, _):
        yield url


@contextlib.contextmanager
def tensorboard_process(
    logdir: Path | str, *flags: str, setup: str | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """As `tensorboard`, yielding the process too, for tests of how it ends; it is stopped on the way out.
    `setup`: Python run in TensorBoard's process before TensorBoard's own main (to lower a threshold)."""
    names = [ep.name for ep in importlib.metadata.entry_points(group="tensorboard_plugins")]
    if "varscope" not in names:
        pytest.fail("the `varscope` entry point is not installed: run `pip install -e .` first", pytrace=False)
    main = (
        ["-m", "tensorboard.main"]
        if setup is None
        else ["-c", f"{setup}\nimport tensorboard.main\ntensorboard.main.run_main()"]
    )
    command = [sys.executable, *main, "--logdir", str(logdir), "--port", "0", *flags]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        # Keep reading stderr for the whole run, so TensorBoard never blocks on a full pipe.
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = SERVING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(timeout=180) or not found:
            pytest.fail(f"TensorBoard did not start:\n{''.join(lines[-40:])}", pytrace=False)
        yield found[0], process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get_json(base: str, route: str, **params: str) -> object:
    """GETs `route` (e.g. `data/plugin/histograms/histograms`) with query `params` and parses the JSON answer."""
    url = base + route + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())
