"""The report keeps one checkpoint per path, the current one, and closes what it drops."""

from __future__ import annotations

import os

import numpy as np
import pytest
from eventlogs import layered_run

from tb_varscope_plugin import report as report_module
from tb_varscope_plugin.checkpoints.variables import CheckpointError
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.report import Reporter

pytestmark = pytest.mark.slow  # Keras writes the checkpoints


def _save_weights(path: str, seed: int) -> None:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="dense")])
    model.layers[0].kernel.assign(np.random.default_rng(seed).normal(size=(3, 4)))
    model.save_weights(path)


@pytest.fixture
def read(monkeypatch) -> list:
    """Every checkpoint the report reads, in order."""
    found: list = []
    real = report_module.read_checkpoint
    monkeypatch.setattr(report_module, "read_checkpoint", lambda path: found.append(real(path)) or found[-1])
    return found


def _reporter(logdir) -> Reporter:
    layered_run(str(logdir / "run" / "events.out.tfevents.1.a"), "kernel", [12, 12], steps=2)
    index = LogdirIndex(str(logdir))
    index.reload()
    return Reporter(index)


def test_a_checkpoint_saved_again_replaces_the_old_one_which_is_closed(tmp_path, read):
    reporter = _reporter(tmp_path)
    weights = str(tmp_path / "run" / "model.weights.h5")
    for epoch in range(3):
        _save_weights(weights, epoch)
        os.utime(weights, (1000.0 + epoch, 1000.0 + epoch))  # each save a new modification time
        reporter.index.reload()  # discovery sees the logdir as the index's last walk did
        assert reporter.report()["runs"][0]["checkpoint"]["path"] == weights
    reporter.index.reload()
    reporter.report()  # nothing changed: nothing read again

    assert len(read) == 3
    kernel = next(v for v in read[-1].variables if v.shape == (3, 4))
    assert kernel.load().shape == (3, 4)  # the current checkpoint still loads
    for old in read[:-1]:
        old_kernel = next(v for v in old.variables if v.shape == (3, 4))
        with pytest.raises(CheckpointError):
            old_kernel.load()  # its h5 file was closed when it was replaced


def test_a_checkpoint_no_run_uses_any_more_is_closed(tmp_path, read):
    reporter = _reporter(tmp_path)
    weights = str(tmp_path / "run" / "model.weights.h5")
    _save_weights(weights, 0)
    reporter.index.reload()
    assert reporter.report()["runs"][0]["checkpoint"] is not None

    os.rename(weights, str(tmp_path / "run" / "model.weights.h5.bak"))
    reporter.index.reload()
    assert reporter.report()["runs"][0]["checkpoint"] is None
    (only,) = read
    with pytest.raises(CheckpointError):
        next(iter(only.variables)).load()
