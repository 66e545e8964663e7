"""Writes the small real checkpoints the damage and fuzz tests start from (needs TensorFlow, Keras 3 and tf-keras).

    python tests/data/checkpoints/make.py tests/data/checkpoints

One model, two Dense layers of the same shape (so attribution must load both kernels to tell them apart), trained a
step with Adam and saved by each writer: Keras 3 `.keras` and `.weights.h5`, `tf.train.Checkpoint`, tf-keras
`save_weights('.h5')`, and safetensors from numpy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(out: Path) -> None:
    import keras
    import tensorflow as tf
    import tf_keras
    from safetensors.numpy import save_file

    x, y = np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3), np.zeros((4, 3), "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(str(out / "model.keras"))
    model.save_weights(str(out / "model.weights.h5"))
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(out / "tf" / "ckpt"))

    legacy = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(3), tf_keras.layers.Dense(3)])
    legacy.set_weights(model.get_weights())
    legacy.save_weights(str(out / "legacy.h5"))

    tensors = {f"{i // 2}.{'weight' if i % 2 == 0 else 'bias'}": w for i, w in enumerate(model.get_weights())}
    save_file(tensors, str(out / "model.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
