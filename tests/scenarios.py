"""Write one logging scenario per call: real writers, tiny models, a checkpoint beside the logs where noted.

Run as `python tests/scenarios.py NAME OUTDIR [NAME OUTDIR ...]`; tests reach it through the `scenario` fixture.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

# The four demo runs live in demo/train.py so their code exists once; it also sets the TF/Keras env vars.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from demo.train import (  # noqa: E402
    EPOCHS,
    SEED,
    fresh_keras,
    keras3_vname,
    keras3_vpath,
    tfkeras_fixed,
    tfkeras_seed,
    training_data,
)


class MyLayer(keras.layers.Layer):
    """The seed article's layer ported to Keras 3: `my_variable1` in __init__, `my_variable2` in build()."""

    def __init__(self, output_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.v1 = self.add_weight(name="my_variable1", shape=[output_dim])

    def build(self, input_shape) -> None:
        self.v2 = self.add_weight(name="my_variable2", shape=[input_shape[1], self.output_dim])

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.v2) + self.v1

    def get_config(self) -> dict:
        return {**super().get_config(), "output_dim": self.output_dim}


class Keras313TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback as it was before 3.14: weight histograms tagged `weight.name`, not `weight.path`."""

    def _log_weights(self, epoch: int) -> None:
        with self._train_writer.as_default():
            for layer in self.model.layers:
                for weight in layer.weights:
                    self.summary.histogram(f"{weight.name.replace(':', '_')}/histogram", weight, step=epoch)


def _dense3() -> keras.Model:
    return keras.Sequential(
        [keras.Input(shape=(5,)), keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(3)]
    )


def keras3_callback(run_dir: Path) -> None:
    """Keras 3 `keras.callbacks.TensorBoard(histogram_freq=1)` on the seed layer x3: clean (3.14+ logs `weight.path`).

    Events in `train/` (TensorBoard run `<run>/train`), steps 0, 1, 2, each tag once per step:
    `my_layer/my_variable1/histogram`, `sequential/my_layer/my_variable2/histogram`,
    `my_layer_1/my_variable1/histogram`, `sequential/my_layer_1/my_variable2/histogram`,
    `my_layer_2/my_variable1/histogram`, `sequential/my_layer_2/my_variable2/histogram`;
    also `epoch_loss`, `epoch_learning_rate` (scalars) and `keras` (graph).
    The __init__ weight's path lacks the `sequential/` prefix its build() sibling has: a user sees one layer's
    weights under two different scopes. `weight.name` is the bare `my_variable1` / `my_variable2` for all three.
    Checkpoint: `model.keras` (Keras v3 zip: `config.json`, `metadata.json`, `model.weights.h5` with
    `layers/my_layer/vars/0` = my_variable1 [3], `vars/1` = my_variable2 [5, 3], same for `my_layer_1`, `my_layer_2`,
    plus `optimizer/vars/*`).
    """
    fresh_keras()
    model = keras.Sequential([MyLayer(3), MyLayer(3), MyLayer(3)])
    model.compile(optimizer="adam", loss="mse")
    x, y = training_data()
    callback = keras.callbacks.TensorBoard(log_dir=str(run_dir), histogram_freq=1)
    model.fit(x, y, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[callback])
    model.save(str(run_dir / "model.keras"))


def keras313_kernel(run_dir: Path) -> None:
    """Keras 3 Dense x3 fit with the pre-3.14 callback behaviour (tag `weight.name + "/histogram"`): collisions.

    Events in `train/` (TensorBoard run `<run>/train`), steps 0, 1, 2:
    - `kernel/histogram`: 3 values per step (shapes [5, 4], [4, 4], [4, 3], in layer order).
    - `bias/histogram`: 3 values per step (shapes [4], [4], [3]).
    - also `epoch_loss`, `epoch_learning_rate` (scalars) and `keras` (graph).
    Variable paths: `sequential/dense/kernel`, `sequential/dense/bias`, ..., `sequential/dense_2/bias`.
    Checkpoint: `model.weights.h5` (Keras weights HDF5, `layers/dense/vars/0` = kernel, `vars/1` = bias, ...).
    """
    fresh_keras()
    model = _dense3()
    model.compile(optimizer="adam", loss="mse")
    x, y = training_data()
    callback = Keras313TensorBoard(log_dir=str(run_dir), histogram_freq=1)
    model.fit(x, y, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[callback])
    model.save_weights(str(run_dir / "model.weights.h5"))


def _train_torch(run_dir: Path, tag_of: Callable[[str], str]) -> None:
    import torch
    from safetensors.torch import save_file
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = (torch.from_numpy(a) for a in training_data())
    writer = SummaryWriter(log_dir=str(run_dir))
    for step in range(EPOCHS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        writer.add_scalar("loss", loss.item(), step)
        for name, p in model.named_parameters():
            writer.add_histogram(tag_of(name), p.detach(), step)
    writer.close()
    save_file(model.state_dict(), str(run_dir / "model.safetensors"))


def torch_leaf(run_dir: Path) -> None:
    """PyTorch Linear-ReLU-Linear-ReLU-Linear, `SummaryWriter.add_histogram(name.split('.')[-1], p)`: collisions.

    One event file in the run directory, steps 0, 1, 2:
    - `weight`: 3 values per step (parameters `0.weight` [4, 5], `2.weight` [4, 4], `4.weight` [3, 4], in that order).
    - `bias`: 3 values per step (`0.bias` [4], `2.bias` [4], `4.bias` [3]).
    - `loss` (scalar) once per step. Histograms are legacy `HistogramProto` values, not TF2 tensors.
    Checkpoint: `model.safetensors`, keys `0.weight`, `0.bias`, `2.weight`, `2.bias`, `4.weight`, `4.bias`.
    """
    _train_torch(run_dir, lambda name: name.split(".")[-1])


def torch_full(run_dir: Path) -> None:
    """Same PyTorch model and loop as `torch_leaf`, logging full parameter names: clean.

    Tags `0.weight`, `0.bias`, `2.weight`, `2.bias`, `4.weight`, `4.bias`, each once per step at steps 0, 1, 2,
    plus `loss`. Checkpoint: `model.safetensors` with the same keys.
    """
    _train_torch(run_dir, lambda name: name)


def _torch_blocks(run_dir: Path, save: Callable[[dict], None]) -> None:
    import torch
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU()),
        torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()),
        torch.nn.Linear(4, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = (torch.from_numpy(a) for a in training_data())
    writer = SummaryWriter(log_dir=str(run_dir))
    for step in range(EPOCHS):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        for name, p in model.named_parameters():
            writer.add_histogram(name.split(".")[-1], p.detach(), step)
            writer.add_histogram("grad/" + name.split(".")[-1], p.grad, step)
    writer.close()
    save(model.state_dict())


def torch_blocks_pt(run_dir: Path) -> None:
    """PyTorch `nn.Sequential` of two Linear-ReLU blocks and a Linear head, logging leaf names and gradients.

    Steps 0, 1, 2: `weight` 3 values per step (`0.0.weight` [4, 5], `1.0.weight` [4, 4], `2.weight` [3, 4]) and
    `bias` 3 values per step (`0.0.bias` [4], `1.0.bias` [4], `2.bias` [3]), each value followed by its gradient
    under `grad/weight` and `grad/bias` (3 values per step, same order). Checkpoint: `model.pt`, written by
    `torch.save(model.state_dict(), "model.pt")` (the zip format), with those keys.
    """
    import torch

    _torch_blocks(run_dir, lambda state: torch.save(state, run_dir / "model.pt"))


def torch_blocks_legacy(run_dir: Path) -> None:
    """`torch_blocks_pt`'s model and loop; checkpoint `model.pth`, the legacy (pre-1.6, non-zip) format, holding
    `{"epoch": 3, "model_state_dict": ..., "optimizer_state_dict": ...}`.
    """
    import torch

    def save(state: dict) -> None:
        wrapped = {"epoch": EPOCHS, "model_state_dict": state, "optimizer_state_dict": {"state": {}}}
        torch.save(wrapped, run_dir / "model.pth", _use_new_zipfile_serialization=False)

    _torch_blocks(run_dir, save)


def tbx_leaf(run_dir: Path) -> None:
    """tensorboardX `SummaryWriter.add_histogram` of numpy arrays under leaf names: collisions.

    Three "layers" of numpy weights (kernels [5, 4], [4, 4], [4, 3]; biases [4], [4], [3]) drift over 3 steps.
    One event file in the run directory, steps 0, 1, 2:
    - `kernel`: 3 values per step; `bias`: 3 values per step (layer order 0, 1, 2). Legacy `HistogramProto` values.
    Checkpoint: `model.safetensors` (written with `safetensors.numpy`), keys `0.kernel`, `0.bias`, ..., `2.bias`.
    """
    from safetensors.numpy import save_file
    from tensorboardX import SummaryWriter

    rng = np.random.default_rng(SEED)
    sizes = [(5, 4), (4, 4), (4, 3)]
    weights = {}
    for i, (fan_in, fan_out) in enumerate(sizes):
        weights[f"{i}.kernel"] = rng.normal(size=(fan_in, fan_out)).astype("float32")
        weights[f"{i}.bias"] = np.zeros(fan_out, dtype="float32")
    writer = SummaryWriter(logdir=str(run_dir))
    for step in range(EPOCHS):
        for key, value in weights.items():
            value += rng.normal(scale=0.1, size=value.shape).astype("float32")
            writer.add_histogram(key.split(".")[-1], value, step)
    writer.close()
    save_file(weights, str(run_dir / "model.safetensors"))


def torch_blocks(run_dir: Path) -> None:
    """PyTorch `nn.Sequential` of three `Block`s (`fc`, `out`: two `nn.Linear` each), logging by leaf name: each
    parameter and its gradient, and every Linear's output from a forward hook. Collisions in every family.

    One event file in the run directory, steps 0, 1, 2; per step, in this order:
    - `act/Linear`: 6 values, written by a forward hook during the forward pass (`0.fc`, `0.out`, ..., `2.out`
      outputs: [32, 4], [32, 4], [32, 4], [32, 4], [32, 3], [32, 3]).
    - then for each parameter in `named_parameters()` order, its value and right after it its gradient:
      `weight` then `grad/weight` (6 each: `0.fc.weight` [4, 5], `0.out.weight` [4, 4], `1.fc.weight` [4, 4],
      `1.out.weight` [4, 4], `2.fc.weight` [3, 4], `2.out.weight` [3, 3]), `bias` then `bias_grad` (6 each,
      `0.fc.bias` [4] ... `2.out.bias` [3]). Legacy `HistogramProto` values; weights logged after the update.
    Checkpoint: `torch.save(model.state_dict(), "model.pt")`, keys `0.fc.weight`, `0.fc.bias`, ..., `2.out.bias`.
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter

    class Block(torch.nn.Module):
        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(n_in, n_out)
            self.out = torch.nn.Linear(n_out, n_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.fc(x)))

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(Block(5, 4), Block(4, 4), Block(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = (torch.from_numpy(a) for a in training_data())
    writer = SummaryWriter(log_dir=str(run_dir))
    step = 0

    def log_output(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        writer.add_histogram(f"act/{type(module).__name__}", output.detach(), step)

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(log_output)
    for step in range(EPOCHS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            writer.add_histogram(leaf, p.detach(), step)
            writer.add_histogram(f"grad/{leaf}" if leaf == "weight" else f"{leaf}_grad", p.grad, step)
    writer.close()
    torch.save(model.state_dict(), run_dir / "model.pt")


def torch_restart(run_dir: Path) -> None:
    """A PyTorch loop that logs full parameter names, saves a snapshot at step 20 (`ckpt/step-20.pt`), and after
    step 25 loads it and goes on from step 20 with the same `SummaryWriter`: steps 20-25 are written twice into one
    event file.

    One event file, tags `0.weight` [4, 5], `0.bias` [4], `2.weight` [3, 4], `2.bias` [3] (Linear-ReLU-Linear),
    written at steps 0..25 and then 20..29, one value per step each time; each step trains on its own random batch,
    so the values after the reload differ from those before. Checkpoint: `model.pt` (`torch.save` of the
    `state_dict`) at the end, in the run directory, so it is the run's own and wins over `ckpt/`.
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(log_dir=str(run_dir))
    snapshot = run_dir / "ckpt" / "step-20.pt"
    snapshot.parent.mkdir()
    restarted = False
    step = 0
    while step < 30:
        if step == 20 and not restarted:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, snapshot)
        x, y = torch.randn(16, 5), torch.randn(16, 3)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        for name, p in model.named_parameters():
            writer.add_histogram(name, p.detach(), step)
        if step == 25 and not restarted:
            # As a job does after a failure: back to the step-20 snapshot, logging on with the same writer.
            saved = torch.load(snapshot, weights_only=True)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            restarted, step = True, 20
            continue
        step += 1
    writer.close()
    torch.save(model.state_dict(), run_dir / "model.pt")


class _Linear(tf.Module):
    """A plain `tf.Module` dense layer; every instance is named `linear`, as sonnet 2 names `snt.Linear`."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(name="linear")
        with self.name_scope:
            self.w = tf.Variable(tf.random.normal([n_in, n_out], seed=SEED), name="w")
            self.b = tf.Variable(tf.random.normal([n_out], seed=SEED + 1), name="b")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(x @ self.w + self.b)


class _TwoTower(tf.Module):
    def __init__(self) -> None:
        super().__init__(name="two_tower")
        with self.name_scope:
            self.trunk = [_Linear(5, 4), _Linear(4, 4), _Linear(4, 3)]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for layer in self.trunk:
            x = layer(x)
        return x


def tfmodule_shared(run_dir: Path) -> None:
    """`tf.Module`s sharing a name (three `linear` modules in `two_tower`, as sonnet 2 eager names them), trained in a
    `tf.summary` custom loop logging `tf.summary.histogram(v.name, v)` and the gradient as `<name>/gradient`.

    One event file, steps 0, 1, 2, per step: `two_tower/linear/b:0` and `two_tower/linear/w:0` (3 values each,
    trunk order: b [4], [4], [3]; w [5, 4], [4, 4], [4, 3]), each value followed by its gradient
    `two_tower/linear/b/gradient`, `two_tower/linear/w/gradient`. Every variable's `v.name` is the same for all three
    modules. Checkpoint: `tf.train.Checkpoint(model=net).save(run_dir / "ckpt")`, object paths
    `model/trunk/0/w` ... `model/trunk/2/b`.
    """
    tf.random.set_seed(SEED)
    net = _TwoTower()
    optimizer = tf.keras.optimizers.SGD(0.1)
    x, y = training_data()
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in range(EPOCHS):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((net(x) - y) ** 2)
            grads = tape.gradient(loss, net.trainable_variables)
            optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
            for v, g in zip(net.trainable_variables, grads, strict=True):
                tf.summary.histogram(v.name, v, step=step)
                tf.summary.histogram(f"{v.name.split(':')[0]}/gradient", g, step=step)
    writer.close()
    tf.train.Checkpoint(model=net).save(str(run_dir / "ckpt"))


class EncoderBlock(keras.layers.Layer):
    """A Keras 3 block with a default name: every instance is `encoder_block`, its Dense `proj`."""

    def __init__(self, units: int, name: str = "encoder_block", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.units = units
        self.proj = keras.layers.Dense(units, name="proj")

    def call(self, inputs):
        return self.proj(inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


class Encoder(keras.Model):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = [EncoderBlock(4), EncoderBlock(4), EncoderBlock(3)]

    def call(self, inputs):
        for block in self.blocks:
            inputs = block(inputs)
        return inputs


def keras3_shared_name(run_dir: Path) -> None:
    """Keras 3 (3.14+ callback, which logs `weight.path`) with three blocks that share their default name: collisions.

    A `keras.Sequential` refuses layers sharing a name, a subclassed model holding a list of them does not.
    Events in `train/` (TensorBoard run `<run>/train`), steps 0, 1, 2:
    `encoder/encoder_block/proj/kernel/histogram` (3 values per step: [5, 4], [4, 4], [4, 3]) and
    `encoder/encoder_block/proj/bias/histogram` ([4], [4], [3]). Every block's `weight.path` is the same.
    Checkpoint: `model.weights.h5`, groups `blocks/encoder_block/proj/vars/0`, `blocks/encoder_block_1/...`,
    `blocks/encoder_block_2/...`, each `vars` group named `proj`.
    """
    fresh_keras()
    model = Encoder()
    model.compile(optimizer="sgd", loss="mse")
    x, y = training_data()
    callback = keras.callbacks.TensorBoard(log_dir=str(run_dir), histogram_freq=1)
    model.fit(x, y, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[callback])
    model.save_weights(str(run_dir / "model.weights.h5"))


def _write_histograms(run_dir: Path, steps: range, rng: np.random.Generator) -> None:
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in steps:
            tf.summary.histogram("dense/kernel", rng.normal(loc=step, size=(5, 4)), step=step)
            tf.summary.histogram("dense/bias", rng.normal(loc=step, size=(4,)), step=step)
    writer.close()


def resumed(run_dir: Path) -> None:
    """A resumed job: one `tf.summary` writer logs steps 0..5 and closes, a second logs steps 4..9 in the same run.

    Two event files in the run directory (`...0.v2` then `...1.v2`, same host and pid, different counter suffix),
    tags `dense/kernel` and `dense/bias`, each once per step per file: file 1 holds steps 0-5, file 2 steps 4-9.
    Cross-file collision for both tags at steps 4 and 5 (2 files each); no same-step collision. No checkpoint.
    """
    rng = np.random.default_rng(SEED)
    _write_histograms(run_dir, range(0, 6), rng)
    _write_histograms(run_dir, range(4, 10), rng)


def multi_run(logdir: Path) -> None:
    """Three sibling runs `run_a`, `run_b`, `run_c` under the given directory, the same tags in each: clean.

    Each run has one event file with `dense/kernel` and `dense/bias` once per step at steps 0..4.
    A tag shared by several runs is not a collision. No checkpoint.
    """
    rng = np.random.default_rng(SEED)
    for run in ("run_a", "run_b", "run_c"):
        _write_histograms(logdir / run, range(5), rng)


SCENARIOS: dict[str, Callable[[Path], object]] = {
    "tfkeras_seed": tfkeras_seed,
    "tfkeras_fixed": tfkeras_fixed,
    "keras3_vname": keras3_vname,
    "keras3_vpath": keras3_vpath,
    "keras3_callback": keras3_callback,
    "keras313_kernel": keras313_kernel,
    "torch_leaf": torch_leaf,
    "torch_full": torch_full,
    "torch_blocks_pt": torch_blocks_pt,
    "torch_blocks_legacy": torch_blocks_legacy,
    "tbx_leaf": tbx_leaf,
    "torch_blocks": torch_blocks,
    "torch_restart": torch_restart,
    "tfmodule_shared": tfmodule_shared,
    "keras3_shared_name": keras3_shared_name,
    "resumed": resumed,
    "multi_run": multi_run,
}


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print(f"usage: scenarios.py NAME OUTDIR [NAME OUTDIR ...]; names: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    pairs = list(zip(argv[::2], argv[1::2], strict=True))
    unknown = [name for name, _ in pairs if name not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; names: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    for name, outdir in pairs:
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        SCENARIOS[name](out)
        print(f"{name}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
