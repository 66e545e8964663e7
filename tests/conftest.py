"""Shared fixtures: real logs and checkpoints from tests/scenarios.py, generated once per test session.

`scenario("tfkeras_seed")` returns the run directory of one scenario (read-only: it is shared by the session).
`logdir_of("tfkeras_seed", "torch_leaf")` returns a fresh logdir holding copies of several scenarios, one
subdirectory each, safe to modify.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tb_varscope_plugin.checkpoints import isolated
from tb_varscope_plugin.server.live import READER_THREAD

SCENARIOS_SCRIPT = Path(__file__).with_name("scenarios.py")

# The modules a scenario's subprocess imports (scenarios.py always loads TensorFlow and both Kerases). Scenarios
# needing the same ones are generated together in one subprocess, so TensorFlow, slow to import, is loaded once
# per group and never in the pytest process itself.
_TF = ("tensorflow", "tf_keras", "keras")
SCENARIO_NEEDS: dict[str, tuple[str, ...]] = {
    "tfkeras_seed": _TF,
    "tfkeras_fixed": _TF,
    "keras3_vname": _TF,
    "keras3_vpath": _TF,
    "keras3_callback": _TF,
    "keras313_kernel": _TF,
    "resumed": _TF,
    "multi_run": _TF,
    "torch_leaf": (*_TF, "torch", "safetensors"),
    "torch_full": (*_TF, "torch", "safetensors"),
    "torch_blocks_pt": (*_TF, "torch"),
    "torch_blocks_legacy": (*_TF, "torch"),
    "tbx_leaf": (*_TF, "tensorboardX", "safetensors"),
    "torch_blocks": (*_TF, "torch"),
    "torch_restart": (*_TF, "torch"),
    "tfmodule_shared": _TF,
    "keras3_shared_name": _TF,
}


# Importing either costs seconds, so the fast subset (`-m "not slow"`) must not: a test that needs one is slow.
HEAVY_MODULES = ("tensorflow", "torch")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ran_slow = any(item.get_closest_marker("slow") for item in session.items)
    loaded = [name for name in HEAVY_MODULES if name in sys.modules]
    if session.items and not ran_slow and loaded:
        session.config.get_terminal_writer().line(
            f"error: tests not marked slow imported {', '.join(loaded)} into the pytest process; mark them slow",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


class ScenarioCache:
    """Run directories of scenarios, each written on first request by a `scenarios.py` subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._failed: dict[tuple[str, ...], str] = {}

    def __call__(self, name: str) -> Path:
        if name not in SCENARIO_NEEDS:
            raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NEEDS)}")
        run_dir = self.root / name
        if not run_dir.exists():
            self._generate(SCENARIO_NEEDS[name])
        return run_dir

    def _generate(self, needs: tuple[str, ...]) -> None:
        missing = [module for module in needs if importlib.util.find_spec(module) is None]
        if missing:
            pytest.skip(f"scenario needs {', '.join(missing)}, which is not installed")
        if needs in self._failed:
            pytest.fail(self._failed[needs], pytrace=False)
        names = [n for n, n_needs in SCENARIO_NEEDS.items() if n_needs == needs and not (self.root / n).exists()]
        # Write into a staging directory and move runs into place only on success, so a crash never leaves
        # a half-written scenario that later tests would take for a finished one.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        args = [arg for n in names for arg in (n, str(staging / n))]
        result = subprocess.run(
            [sys.executable, str(SCENARIOS_SCRIPT), *args], capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            self._failed[needs] = (
                f"scenarios.py {' '.join(names)} failed with status {result.returncode}:\n{result.stderr[-4000:]}"
            )
            pytest.fail(self._failed[needs], pytrace=False)
        for n in names:
            (staging / n).rename(self.root / n)
        shutil.rmtree(staging)


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> ScenarioCache:
    """`scenario(name) -> Path`: the run directory of a scenario from tests/scenarios.py (do not modify it)."""
    return ScenarioCache(tmp_path_factory.mktemp("scenarios"))


@pytest.fixture
def logdir_of(scenario: ScenarioCache, tmp_path: Path) -> Callable[..., Path]:
    """`logdir_of(*names) -> Path`: a new logdir with a copy of each named scenario in a subdirectory of that name."""

    def build(*names: str) -> Path:
        logdir = Path(tempfile.mkdtemp(prefix="logdir-", dir=tmp_path))
        for name in names:
            shutil.copytree(scenario(name), logdir / name)
        return logdir

    return build


@pytest.fixture
def failing_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every forked reader fails before it can send anything back (its pickling raises), as a crashing child would."""
    from tb_varscope_plugin.reading import parallel

    parent = os.getpid()
    dumps = parallel.pickle.dumps

    def fail_in_child(*args, **kwargs):
        if os.getpid() != parent:
            raise RuntimeError("child fails")
        return dumps(*args, **kwargs)

    monkeypatch.setattr(parallel.pickle, "dumps", fail_in_child)


@pytest.fixture(autouse=True)
def no_reader_left_running() -> Iterator[None]:
    """A test whose request started the tab's reader (reload interval 0: one pass) lets it end before the next
    test: a reader thread still running there would keep that test's readers from forking (a fork copies locks
    another thread may hold), and its counts from adding up."""
    yield
    for thread in threading.enumerate():
        if thread.name == READER_THREAD:
            thread.join(60)


@pytest.fixture(autouse=True)
def no_h5_worker_left_running() -> Iterator[None]:
    """A test that read an h5 file outside a scan (which ends its worker when it is done) leaves the worker
    (checkpoints/isolated.py) running: ended here, so no test finds a child process of this one it did not start."""
    yield
    isolated.stop()
