"""SavedModel directories written by `tf.saved_model.save` read without TensorFlow, as TensorFlow reads them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tb_varscope_plugin import scan
from tb_varscope_plugin.checkpoints.formats import read_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def exported(tf, tmp_path_factory):
    """A run logging `w` and `b` of three `tf.Module` layers under leaf names, its model exported beside it."""

    class Dense(tf.Module):
        def __init__(self, fan_in: int, fan_out: int, name: str) -> None:
            super().__init__(name=name)
            with self.name_scope:
                self.w = tf.Variable(tf.random.normal((fan_in, fan_out), seed=len(name)), name="w")
                self.b = tf.Variable(tf.linspace(-1.0, 1.0, fan_out), name="b")

    class Net(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="net")
            with self.name_scope:
                self.layers = [Dense(5, 4, "dense0"), Dense(4, 3, "dense1"), Dense(3, 2, "dense2")]

        @tf.function(input_signature=[tf.TensorSpec((None, 5))])
        def __call__(self, x):
            for layer in self.layers:
                x = x @ layer.w + layer.b
            return x

    net = Net()
    logdir = tmp_path_factory.mktemp("saved_model")
    run = logdir / "train"
    with tf.summary.create_file_writer(str(run)).as_default():
        for step in range(3):
            for layer in net.layers:
                tf.summary.histogram("w", layer.w, step=step)
                tf.summary.histogram("b", layer.b, step=step)
    tf.saved_model.save(net, str(run / "export"))
    return logdir, run / "export"


def test_saved_model_matches_tensorflows_own_reader(tf, exported):
    _, export = exported
    checkpoint = read_checkpoint(str(export))
    assert (checkpoint.path, checkpoint.format) == (str(export), "saved-model")
    reference = tf.train.load_checkpoint(str(export / "variables" / "variables"))
    expected = set(reference.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    records = {v.key: v for v in checkpoint.variables}
    assert set(records) == expected
    for key, record in records.items():
        want = reference.get_tensor(key)
        assert record.shape == want.shape
        np.testing.assert_array_equal(record.load(), want)
    assert records["layers/1/w/.ATTRIBUTES/VARIABLE_VALUE"].path == "net/dense1/w"
    assert records["layers/1/w/.ATTRIBUTES/VARIABLE_VALUE"].layer == "net/dense1"
    # Its `saved_model.pb` and its variables prefix name the same SavedModel.
    for other in (export / "saved_model.pb", export / "variables" / "variables.index", export / "variables"):
        assert read_checkpoint(str(other)).path == str(export)


def test_scan_finds_the_export_and_names_every_lane(exported):
    logdir, export = exported
    (run,) = scan(str(logdir))["runs"]
    assert run["checkpoint"] == {"path": str(export), "format": "saved-model", "variables": 6}
    lanes = {c["tag"]: [lane["variable"] for lane in c["lanes"]] for c in run["collisions"]}
    assert lanes == {
        "w": ["net/dense0/w", "net/dense1/w", "net/dense2/w"],
        "b": ["net/dense0/b", "net/dense1/b", "net/dense2/b"],
    }
