"""Checkpoints written by TensorFlow, tf-keras and Keras 3, read without them, match what those frameworks see."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import CheckpointError

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tfkeras_run(tf, tmp_path_factory):
    """The seed article's model in tf-keras: three layers that each make `my_variable1` in __init__,
    trained one step with Adam, saved by a CheckpointManager and by `save_weights('.h5')`."""
    tf_keras = pytest.importorskip("tf_keras")
    from demo.train import MyLayer  # the seed article's layer, as the demo trains it

    model = tf_keras.Sequential([tf_keras.Input((5,)), MyLayer(3), MyLayer(3), MyLayer(3)])
    model.compile(optimizer=tf_keras.optimizers.Adam(), loss="mse")
    model.fit(np.ones((4, 5), "float32"), np.zeros((4, 3), "float32"), epochs=1, verbose=0)
    out = tmp_path_factory.mktemp("tfkeras")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=model.optimizer), out / "ckpt", 3)
    prefix = manager.save()
    model.save_weights(str(out / "legacy.h5"))
    return model, prefix, out


@pytest.fixture(scope="module")
def keras3_run(tf, tmp_path_factory):
    """The same model in Keras 3, saved by tf.train.Checkpoint, `save_weights` and `save`."""
    keras = pytest.importorskip("keras")
    from scenarios import MyLayer  # the seed article's layer ported to Keras 3

    model = keras.Sequential([keras.Input((5,)), MyLayer(3), MyLayer(3, name="encoder"), MyLayer(3)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 5), "float32"), np.zeros((4, 3), "float32"), epochs=1, verbose=0)
    out = tmp_path_factory.mktemp("keras3")
    prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(out / "tf" / "ckpt"))
    model.save_weights(str(out / "model.weights.h5"))
    model.save(str(out / "model.keras"))
    return model, prefix, out


def _by_key(checkpoint):
    return {v.key: v for v in checkpoint.variables}


def test_tfkeras_checkpoint_matches_tensorflow(tf, tfkeras_run):
    model, prefix, out = tfkeras_run
    checkpoint = read_checkpoint(str(out / "ckpt"))  # the directory: its `checkpoint` state file names ckpt-1
    assert checkpoint.path == prefix
    assert checkpoint.format == "tf-checkpoint"
    assert checkpoint.mtime == pytest.approx(os.path.getmtime(prefix + ".index"))
    reference = tf.train.load_checkpoint(prefix)
    expected_keys = set(reference.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert set(_by_key(checkpoint)) == expected_keys
    for variable in checkpoint.variables:
        want = reference.get_tensor(variable.key)
        got = variable.load()
        assert variable.shape == want.shape == got.shape
        assert got.dtype.name == variable.dtype == want.dtype.name
        np.testing.assert_array_equal(got, want)


def test_tfkeras_init_weights_get_one_layer_path_each(tfkeras_run):
    model, prefix, _ = tfkeras_run
    weights = [v for v in read_checkpoint(prefix).variables if not v.slot]
    assert len(weights) == 6
    firsts = [v for v in weights if v.name == "my_variable1"]
    assert len(firsts) == 3
    # Every my_variable2 is named inside its layer's scope, which the __init__ sibling inherits.
    scoped = sorted(w.name[: -len(":0")] for w in model.weights if "my_variable2" in w.name)
    assert sorted(v.name for v in weights if v.name.endswith("my_variable2")) == scoped
    assert sorted(v.layer for v in firsts) == sorted(posixpath.dirname(n) for n in scoped)
    assert all(v.path == f"{v.layer}/my_variable1" for v in firsts)
    assert {v.key for v in firsts} == {
        f"model/layer_with_weights-{i}/my_variable1/.ATTRIBUTES/VARIABLE_VALUE" for i in range(3)
    }


def test_optimizer_state_and_bookkeeping_are_slots(tfkeras_run):
    _, prefix, _ = tfkeras_run
    slots = [v for v in read_checkpoint(prefix).variables if v.slot]
    assert {v.key for v in slots} >= {
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE",
        "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
    }
    moments = [v for v in slots if v.key.startswith("optimizer/_variables/")]
    assert len(moments) == 12  # Adam's m and v for each of the six weights
    assert all(v.layer is None for v in slots)


def test_keras3_checkpoint_names_layers_from_variable_paths(tf, keras3_run):
    model, prefix, _ = keras3_run
    checkpoint = read_checkpoint(prefix + ".index")
    weights = {v.path: v for v in checkpoint.variables if not v.slot}
    # Keras 3 names the __init__ weight `encoder/my_variable1` but the build one `sequential/encoder/my_variable2`.
    assert {w.path for w in model.weights if w.name == "my_variable1"} == {
        f"{layer.name}/my_variable1" for layer in model.layers
    }
    assert set(weights) == {f"{model.name}/{layer.name}/{w.name}" for layer in model.layers for w in layer.weights}
    for layer in model.layers:
        for weight in layer.weights:
            record = weights[f"{model.name}/{layer.name}/{weight.name}"]
            assert record.layer == f"{model.name}/{layer.name}"
            np.testing.assert_array_equal(record.load(), weight.numpy())
    # Keras 3 models are first reached through the optimizer, so that is where TensorFlow keys them.
    assert all(v.key.startswith("optimizer/_trainable_variables/") for v in weights.values())
    assert weights[f"{model.name}/encoder/my_variable1"].name == "encoder/my_variable1"


def test_tf1_name_based_checkpoint(tf, tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        with tf.compat.v1.variable_scope("dense"):
            kernel = tf.compat.v1.get_variable("kernel", [5, 3])
            bias = tf.compat.v1.get_variable("bias", [3], dtype=tf.float64)
        loss = tf.reduce_sum(tf.matmul(tf.ones([2, 5]), kernel)) + tf.cast(tf.reduce_sum(bias), tf.float32)
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.AdamOptimizer().minimize(loss, global_step=step)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(train)
            prefix = saver.save(session, str(tmp_path / "model.ckpt"), global_step=step)
    checkpoint = read_checkpoint(prefix)
    reference = tf.train.load_checkpoint(prefix)
    records = _by_key(checkpoint)
    assert set(records) == set(reference.get_variable_to_shape_map())
    for key, variable in records.items():
        np.testing.assert_array_equal(variable.load(), reference.get_tensor(key))
    weights = {k for k, v in records.items() if not v.slot}
    assert weights == {"dense/kernel", "dense/bias"}
    assert records["dense/kernel"].layer == "dense"
    assert records["dense/bias"].dtype == "float64"
    assert records["dense/kernel/Adam_1"].slot and records["global_step"].slot


def test_every_dtype_round_trips(tf, tmp_path):
    values = {
        "f16": tf.constant([1.5, -2.0], tf.float16),
        "bf16": tf.constant([[1.5, -2.0], [3.25, 0.0]], tf.bfloat16),
        "f64": tf.constant([1e300], tf.float64),
        "i8": tf.constant([-3, 4], tf.int8),
        "u8": tf.constant([250], tf.uint8),
        "i32": tf.constant(7, tf.int32),
        "flag": tf.constant([True, False]),
        "text": tf.constant([b"a", b"bc", b""]),
    }
    saved = tf.train.Checkpoint(**{k: tf.Variable(v) for k, v in values.items()})
    prefix = saved.write(str(tmp_path / "dtypes"))
    records = {v.path: v for v in read_checkpoint(prefix).variables}
    assert set(records) == set(values)
    # Values are loaded to be compared with histograms: strings are listed, but loading them is refused.
    text = records.pop("text")
    assert text.dtype == "object"
    with pytest.raises(CheckpointError, match="text/.ATTRIBUTES/VARIABLE_VALUE holds strings, not numbers"):
        text.load()
    del values["text"]
    for name, value in values.items():
        got = records[name].load()
        want = value.numpy().astype(np.float32) if name == "bf16" else value.numpy()
        assert got.dtype.name == records[name].dtype
        assert records[name].layer is None
        np.testing.assert_array_equal(got, want)


def test_optimizers_under_any_name_hold_slots(tf, tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    w, u = tf.Variable([1.0, 2.0], name="w"), tf.Variable([3.0], name="u")
    tf1_adam, legacy_adam = tf.compat.v1.train.AdamOptimizer(), tf_keras.optimizers.legacy.Adam()
    tf1_adam.minimize(lambda: tf.reduce_sum(w * w), var_list=[w])
    legacy_adam.minimize(lambda: tf.reduce_sum(u * u), var_list=[u])
    prefix = tf.train.Checkpoint(w=w, u=u, opt=tf1_adam, opt2=legacy_adam).save(str(tmp_path / "c"))
    records = read_checkpoint(prefix).variables
    assert {v.path for v in records if not v.slot} == {"w", "u"}
    slots = {v.key: v for v in records if v.slot}
    assert "w/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE" in slots
    assert "opt/beta1_power/.ATTRIBUTES/VARIABLE_VALUE" in slots
    assert "opt2/iter/.ATTRIBUTES/VARIABLE_VALUE" in slots


def _copy(prefix: str, dest: Path) -> str:
    for path in Path(prefix).parent.glob(Path(prefix).name + ".*"):
        shutil.copy(path, dest / path.name)
    return str(dest / Path(prefix).name)


def test_flipped_value_byte_fails_its_checksum(tfkeras_run, tmp_path):
    prefix = _copy(tfkeras_run[1], tmp_path)
    checkpoint = read_checkpoint(prefix)
    target = next(v for v in checkpoint.variables if v.name == "my_variable1")
    data = Path(prefix + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[raw.index(target.load().tobytes())] ^= 0x40
    data.write_bytes(bytes(raw))
    damaged = next(v for v in read_checkpoint(prefix).variables if v.key == target.key)
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001: checksum mismatch in the values of model/"):
        damaged.load()


def test_damaged_index_or_data_is_a_checkpoint_error(tfkeras_run, tmp_path):
    prefix = _copy(tfkeras_run[1], tmp_path)
    index = Path(prefix + ".index")
    data = Path(prefix + ".data-00000-of-00001")
    original_index, original_data = index.read_bytes(), data.read_bytes()

    data.write_bytes(original_data[: len(original_data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(prefix)
    data.write_bytes(original_data)

    index.write_bytes(original_index[:-10])
    with pytest.raises(CheckpointError, match=r"\.index: not a checkpoint index"):
        read_checkpoint(prefix)

    damaged = bytearray(original_index)
    damaged[20] ^= 0xFF  # inside the first data block
    index.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="checksum mismatch in table block"):
        read_checkpoint(prefix)

    index.write_bytes(b"")
    with pytest.raises(CheckpointError, match="too short"):
        read_checkpoint(prefix)

    data.unlink()
    index.write_bytes(original_index)
    with pytest.raises(CheckpointError, match="data-00000-of-00001"):
        read_checkpoint(prefix)


_NO_FRAMEWORKS = """
import json, sys
for name in ("tensorflow", "tf_keras", "keras", "torch"):
    sys.modules[name] = None
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
out = {}
for path in sys.argv[1:]:
    checkpoint = read_checkpoint(path)
    out[path] = {v.key: [v.path, v.layer, v.slot, v.load().tolist()] for v in checkpoint.variables}
loaded = [m for m in ("tensorflow", "tf_keras", "keras", "torch") if sys.modules.get(m) is not None]
print(json.dumps({"loaded": loaded, "checkpoints": out}))
"""


def test_reading_needs_no_tensorflow(tfkeras_run, keras3_run, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = tmp_path / "model.safetensors"
    safetensors_numpy.save_file({"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(tensors))
    paths = [tfkeras_run[1], str(tfkeras_run[2] / "legacy.h5"), str(keras3_run[2] / "model.keras"), str(tensors)]
    result = subprocess.run(
        [sys.executable, "-c", _NO_FRAMEWORKS, *paths],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    for path in paths:
        expected = {v.key: [v.path, v.layer, v.slot, v.load().tolist()] for v in read_checkpoint(path).variables}
        assert report["checkpoints"][path] == expected
    assert report["checkpoints"][str(tensors)]["0.weight"] == ["0.weight", "0", False, [[0, 1, 2], [3, 4, 5]]]


def test_keras3_weights_h5_layer_paths_use_layer_names(keras3_run):
    model, _, out = keras3_run
    checkpoint = read_checkpoint(str(out / "model.weights.h5"))
    assert checkpoint.format == "keras-weights-h5"
    weights = {v.path: v for v in checkpoint.variables if not v.slot}
    expected = {}
    for layer in model.layers:
        for i, weight in enumerate(layer.weights):
            expected[f"{model.name}/{layer.name}/vars/{i}"] = weight.numpy()
    assert set(weights) == set(expected)
    for path, values in expected.items():
        np.testing.assert_array_equal(weights[path].load(), values)
        assert weights[path].name is None  # Keras 3 h5 keeps no variable names
        assert weights[path].layer == posixpath.dirname(posixpath.dirname(path))
    # The h5 group is named after the class (`my_layer_1`); the layer path after the layer (`encoder`).
    assert weights[f"{model.name}/encoder/vars/0"].key == "layers/my_layer_1/vars/0"
    slots = [v for v in checkpoint.variables if v.slot]
    assert {v.key.split("/")[0] for v in slots} == {"optimizer"}
    assert len(slots) == 2 + 2 * len(model.weights)  # iterations, learning rate, Adam's m and v


def test_keras_archive_matches_get_weights(keras3_run):
    model, _, out = keras3_run
    checkpoint = read_checkpoint(str(out / "model.keras"))
    assert checkpoint.format == "keras-v3"
    assert checkpoint.mtime == pytest.approx(os.path.getmtime(out / "model.keras"))
    weights = [v for v in checkpoint.variables if not v.slot]
    by_layer = {layer.name: layer.get_weights() for layer in model.layers}
    for variable in weights:
        layer = variable.layer.split("/")[-1]
        index = int(variable.path.rsplit("/", 1)[1])
        np.testing.assert_array_equal(variable.load(), by_layer[layer][index])
    assert len(weights) == len(model.get_weights())


def test_keras_archive_without_name_attributes_falls_back_to_config(keras3_run, tmp_path):
    """Keras 3 releases before the `vars` name attribute: the layer names come from config.json."""
    model, _, out = keras3_run
    with zipfile.ZipFile(out / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as h5:
        groups = []
        h5.visit(lambda name: groups.append(name) if name.endswith("vars") else None)
        for name in groups:
            del h5[name].attrs["name"]
    members["model.weights.h5"] = weights.read_bytes()
    rebuilt = tmp_path / "old.keras"
    with zipfile.ZipFile(rebuilt, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    records = {v.key: v for v in read_checkpoint(str(rebuilt)).variables}
    assert {v.layer for v in records.values() if not v.slot} == {f"{model.name}/{layer.name}" for layer in model.layers}
    assert records["layers/my_layer_1/vars/0"].layer == f"{model.name}/encoder"


def test_tfkeras_legacy_h5_keeps_weight_names(tfkeras_run):
    model, _, out = tfkeras_run
    checkpoint = read_checkpoint(str(out / "legacy.h5"))
    assert checkpoint.format == "keras-weights-h5"
    records = _by_key(checkpoint)
    expected = {f"{layer.name}/{w.name}": w for layer in model.layers for w in layer.weights}
    assert set(records) == set(expected)
    for key, weight in expected.items():
        assert records[key].name == weight.name[: -len(":0")]
        np.testing.assert_array_equal(records[key].load(), weight.numpy())
    firsts = [v for v in checkpoint.variables if v.name == "my_variable1"]
    assert len({v.layer for v in firsts}) == 3
    assert all(v.path == f"{v.layer}/my_variable1" for v in firsts)


def test_damaged_keras_files_are_checkpoint_errors(keras3_run, tmp_path):
    _, _, out = keras3_run
    truncated = tmp_path / "cut.weights.h5"
    truncated.write_bytes((out / "model.weights.h5").read_bytes()[:300])
    with pytest.raises(CheckpointError, match="cut.weights.h5"):
        read_checkpoint(str(truncated))
    archive = tmp_path / "cut.keras"
    archive.write_bytes((out / "model.keras").read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cut.keras"):
        read_checkpoint(str(archive))
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("hello")
    with pytest.raises(CheckpointError, match="text.h5"):
        read_checkpoint(str(not_h5))
