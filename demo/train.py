"""Train four tiny models on CPU and log their weight histograms, two with colliding tags and two clean.

Run `python demo/train.py [--logdir demo-logs]`, then `tb-varscope scan demo-logs` or `tensorboard --logdir demo-logs`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Set before TensorFlow is imported: it reads these once, at import time.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# What TensorFlow's native libraries print while they load, before any log level applies, once per library.
_NATIVE_BANNER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform)\.cc:\d+\] )"
)


@contextlib.contextmanager
def _without_native_banners() -> Iterator[None]:
    """Holds back what is written to stderr's file descriptor meanwhile, then writes it all but those banners."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not _NATIVE_BANNER.match(line):
                    sys.stderr.write(line)


with _without_native_banners():
    import keras
    import numpy as np
    import tensorflow as tf
    import tf_keras

EPOCHS = 3
SEED = 0


def training_data(n: int = 32, features: int = 5, outputs: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return (
        rng.normal(size=(n, features)).astype("float32"),
        rng.normal(size=(n, outputs)).astype("float32"),
    )


def fresh_tf_keras() -> None:
    # Layer names (my_layer, my_layer_1, ...) come from a process-wide counter; reset it so a run's
    # tags do not depend on what was built before it in the same process.
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(SEED)


def fresh_keras() -> None:
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)


class MyLayer(tf_keras.layers.Layer):
    """The seed article's layer: `my_variable1` is made in __init__, before the layer has a name scope."""

    def __init__(self, output_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.v1 = self.add_weight(name="my_variable1", shape=[output_dim])

    def build(self, input_shape) -> None:
        self.v2 = self.add_weight(name="my_variable2", shape=[input_shape[1], self.output_dim])
        self.built = True

    def call(self, inputs):
        return tf.matmul(inputs, self.v2) + self.v1


class MyLayerFixed(tf_keras.layers.Layer):
    """The seed article's fix: every weight is made in build(), inside the layer's name scope."""

    def __init__(self, output_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim

    def build(self, input_shape) -> None:
        self.v1 = self.add_weight(name="my_variable1", shape=[self.output_dim])
        self.v2 = self.add_weight(name="my_variable2", shape=[input_shape[1], self.output_dim])
        self.built = True

    def call(self, inputs):
        return tf.matmul(inputs, self.v2) + self.v1


def _fit_tf_keras(run_dir: Path, layer_cls: type[tf_keras.layers.Layer]) -> tf_keras.Model:
    fresh_tf_keras()
    model = tf_keras.Sequential([layer_cls(3), layer_cls(3), layer_cls(3)])
    model.compile(optimizer="adam", loss="mse")
    x, y = training_data()
    callback = tf_keras.callbacks.TensorBoard(log_dir=str(run_dir), histogram_freq=1)
    model.fit(x, y, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[callback])
    tf.train.Checkpoint(model=model).save(str(run_dir / "ckpt" / "ckpt"))
    return model


def tfkeras_seed(run_dir: Path) -> tf_keras.Model:
    """tf-keras Sequential of the seed's layer x3 (`my_variable1` made in __init__), TensorBoard(histogram_freq=1).

    Events in `train/` (TensorBoard run `<run>/train`), 3 epochs = steps 0, 1, 2:
    - `my_variable1_0/histogram`: 3 values at each step, one per layer, in layer order — the collision.
      All three variables are named `my_variable1:0` (made before the layer had a name scope); the build()
      weights are `my_layer/my_variable2:0`, `my_layer_1/...`, `my_layer_2/...` (no `sequential/` prefix).
    - `my_layer/my_variable2_0/histogram`, `my_layer_1/my_variable2_0/histogram`,
      `my_layer_2/my_variable2_0/histogram`: 1 value per step each (shapes [5, 3], [3, 3], [3, 3]).
    - also `epoch_loss` (scalar, each step) and `keras` (the graph, step 0).
    Checkpoint: TF object-based, `ckpt/checkpoint` + `ckpt/ckpt-1.index` + `ckpt/ckpt-1.data-00000-of-00001`,
    keys `model/layer_with_weights-K/my_variable1/.ATTRIBUTES/VARIABLE_VALUE` ([3]) and `.../my_variable2/...`
    ([5, 3], [3, 3], [3, 3]) for K = 0, 1, 2.
    """
    return _fit_tf_keras(run_dir, MyLayer)


def tfkeras_fixed(run_dir: Path) -> tf_keras.Model:
    """Same model and training as `tfkeras_seed`, with every weight made in build(): no collision.

    Events in `train/`, steps 0, 1, 2, each tag once per step: `my_layer/my_variable1_0/histogram`,
    `my_layer/my_variable2_0/histogram`, and the same for `my_layer_1` and `my_layer_2` (6 histogram tags).
    Checkpoint: TF object-based in `ckpt/` (`ckpt-1`), same keys as `tfkeras_seed`.
    """
    return _fit_tf_keras(run_dir, MyLayerFixed)


def _train_keras3_loop(run_dir: Path, tag_of) -> keras.Model:
    fresh_keras()
    model = keras.Sequential(
        [keras.Input(shape=(5,)), keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(3)]
    )
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    x, y = training_data()
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in range(EPOCHS):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            tf.summary.scalar("loss", loss, step=step)
            for v in model.trainable_variables:
                tf.summary.histogram(tag_of(v), v, step=step)
    writer.close()
    model.save_weights(str(run_dir / "model.weights.h5"))
    tf.train.Checkpoint(model=model).save(str(run_dir / "ckpt" / "ckpt"))
    return model


def keras3_vname(run_dir: Path) -> keras.Model:
    """Keras 3 Dense x3, GradientTape loop logging `tf.summary.histogram(v.name, v)`: `kernel` and `bias` collide.

    Events in the run directory itself, steps 0, 1, 2:
    - `kernel`: 3 values per step (shapes [5, 4], [4, 4], [4, 3], in layer order).
    - `bias`: 3 values per step (shapes [4], [4], [3]).
    - `loss` (scalar) once per step.
    Keras 3 `v.name` is the bare leaf; `v.path` is `sequential/dense/kernel`, `sequential/dense_1/kernel`, ...
    Checkpoints: `model.weights.h5` (Keras weights HDF5) and TF object-based `ckpt/ckpt-1`. Discovery takes
    `model.weights.h5`, the one in the run directory itself; `ckpt/` serves when named with `--checkpoint`.
    """
    return _train_keras3_loop(run_dir, lambda v: v.name)


def keras3_vpath(run_dir: Path) -> keras.Model:
    """Same loop as `keras3_vname`, logging `tf.summary.histogram(v.path, v)`: clean.

    Tags `sequential/dense/kernel`, `sequential/dense/bias`, `sequential/dense_1/kernel`, ...,
    `sequential/dense_2/bias` (6 histogram tags), each once per step at steps 0, 1, 2.
    Checkpoints: `model.weights.h5` and `ckpt/ckpt-1`, as in `keras3_vname`.
    """
    return _train_keras3_loop(run_dir, lambda v: v.path)


# Run folder -> (writer, the line printed beside it; runs refer to each other by their folder numbers).
DEMO_RUNS = {
    "1-tfkeras-init-weight": (
        tfkeras_seed,
        "tf-keras, the same layer x3 making `my_variable1` in __init__: its 3 copies share one tag (collision)",
    ),
    "2-tfkeras-build-weight": (
        tfkeras_fixed,
        "the model of run 1 with every weight made in build(): one tag per weight (clean)",
    ),
    "3-keras3-v-name": (
        keras3_vname,
        "Keras 3 Dense x3 logging `tf.summary.histogram(v.name, v)`: `kernel` and `bias` collide",
    ),
    "4-keras3-v-path": (
        keras3_vpath,
        "the training of run 3 logging `v.path` instead of `v.name`: one tag per weight (clean)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="demo-logs", help="where to write the runs (default: demo-logs)")
    parser.add_argument("--no-next", action="store_true", help="leave out the closing commands to run next")
    args = parser.parse_args(argv)
    logdir = Path(args.logdir)
    start = time.monotonic()
    for name, (write, shows) in DEMO_RUNS.items():
        run_dir = logdir / name
        write(run_dir)
        print(f"wrote {run_dir}: {shows}")
    print(f"done in {time.monotonic() - start:.1f}s.{'' if args.no_next else ' Next:'}")
    if not args.no_next:
        print(f"  tb-varscope scan {logdir}")
        print(f"  tensorboard --logdir {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
