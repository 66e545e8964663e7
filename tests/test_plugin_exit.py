"""TensorBoard with the VarScope tab stops cleanly on Ctrl+C after the tab has read a Keras `.h5` checkpoint.

The reader thread is a daemon still holding the checkpoint's h5py file when the process exits; h5py files opened
over a Python file object crashed the interpreter's final teardown (exit status 139) until the plugin closed
them at exit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from eventlogs import layered_run
from tensorboard_process import get_json, tensorboard_process

pytestmark = pytest.mark.slow  # Keras writes the checkpoint; a real TensorBoard serves it

SAVE = """
import sys
import keras
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="dense")])
model.save_weights(sys.argv[1])
"""


def test_tensorboard_exits_cleanly_on_ctrl_c_after_reading_a_keras_checkpoint(tmp_path):
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1.a"), "kernel", [12, 12], steps=2)
    subprocess.run([sys.executable, "-c", SAVE, str(tmp_path / "run" / "model.weights.h5")], check=True)
    # Ctrl+C in a terminal reaches a TensorBoard whose SIGINT raises KeyboardInterrupt. A suite run in the
    # background (`... &` from a script) hands its children SIGINT ignored, and TensorBoard would never see it.
    interruptible = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"
    with tensorboard_process(tmp_path, "--reload_interval", "1", setup=interruptible) as (url, process):
        deadline = time.monotonic() + 120
        report = get_json(url, "data/plugin/varscope/report")
        while not (report["complete"] and report["runs"] and report["runs"][0]["checkpoint"]):
            assert time.monotonic() < deadline, report
            time.sleep(0.3)
            report = get_json(url, "data/plugin/varscope/report")
        assert report["runs"][0]["checkpoint"]["format"] == "keras-weights-h5"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
