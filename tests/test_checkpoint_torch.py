"""PyTorch `torch.save` files, read without torch and without running pickled code, match
`torch.load(weights_only=True)`; hostile and damaged ones are refused."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_varscope_plugin import scan
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import CheckpointError

REPO = Path(__file__).resolve().parents[1]
# Every test here writes its files with torch, so all are slow, and torch is imported by the fixture below, not at
# collection: `-m "not slow"` must not load it (conftest fails such a run).
pytestmark = pytest.mark.slow
torch = None


@pytest.fixture(scope="session", autouse=True)
def _torch():
    global torch
    torch = pytest.importorskip("torch")


def _model() -> torch.nn.Module:
    class Block(torch.nn.Module):
        def __init__(self, fan_in: int, fan_out: int) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(fan_in, fan_out)
            self.norm = torch.nn.BatchNorm1d(fan_out)

        def forward(self, x):
            return self.norm(self.linear(x))

    torch.manual_seed(0)
    return torch.nn.Sequential(Block(5, 4), torch.nn.ReLU(), Block(4, 3), torch.nn.Linear(3, 2))


def _numpy(tensor) -> np.ndarray:
    """What the reader gives for a tensor: bfloat16 widened to float32, every other dtype as numpy has it."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy()
    if tensor.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return tensor.to(torch.int64).numpy().astype(str(tensor.dtype).replace("torch.", ""))
    return tensor.numpy()


def _assert_matches_torch(path: Path, state_key: str | None = None) -> dict:
    reference = torch.load(path, weights_only=True)
    if state_key is not None:
        reference = reference[state_key]
    checkpoint = read_checkpoint(str(path))
    assert (checkpoint.path, checkpoint.format) == (str(path), "pytorch")
    records = {v.key: v for v in checkpoint.variables}
    assert list(records) == [k for k, v in reference.items() if isinstance(v, torch.Tensor)]
    for key, record in records.items():
        want = _numpy(reference[key])
        got = record.load()
        assert (record.path, record.name, record.shape, record.slot) == (key, key, tuple(reference[key].shape), False)
        assert record.dtype == got.dtype.name == want.dtype.name
        np.testing.assert_array_equal(got, want)
    return records


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_sequential_state_dict_matches_torch_load(tmp_path, zipped):
    model = _model()
    model(torch.randn(8, 5))  # BatchNorm running statistics and an int64 counter, as in any trained model
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=zipped)
    records = _assert_matches_torch(path)
    assert records["0.linear.weight"].layer == "0.linear"
    assert records["2.norm.num_batches_tracked"].dtype == "int64"
    assert records["3.bias"].shape == (2,)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_dtypes_views_and_shared_storages_match_torch_load(tmp_path, zipped):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "bf16.weight": torch.tensor([[1.5, -2.0], [3.25, 1e-3]], dtype=torch.bfloat16),
        "half.weight": torch.linspace(-1, 1, 7, dtype=torch.float16),
        "double.weight": torch.randn(3, dtype=torch.float64),
        "int.index": torch.tensor([-3, 7, 2**30], dtype=torch.int32),
        "long.index": torch.tensor([2**40, -1], dtype=torch.int64),
        "byte.mask": torch.tensor([0, 255], dtype=torch.uint8),
        "bool.mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        # Views: transposed, strided, offset into a storage shared with the others, and expanded (stride 0).
        "base": base,
        "transposed": base.t(),
        "strided": base[::2, 1::3],
        "offset": base[2:],
        "expanded": torch.tensor([1.0, 2.0, 3.0]).expand(4, 3),
        "tied.a": base[1],
        "tied.b": base[1],
    }
    # A tensor and a Parameter carrying Python attributes: _rebuild_from_type_v2, _rebuild_parameter_with_state.
    state["tagged"] = torch.randn(2)
    state["tagged"].note = "kept by torch, dropped here"
    state["tagged.param"] = torch.nn.Parameter(torch.randn(3))
    state["tagged.param"].note = "kept by torch, dropped here"
    path = tmp_path / "mixed.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    records = _assert_matches_torch(path)
    assert records["bf16.weight"].dtype == "float32"
    assert records["strided"].shape == (2, 2)


def test_dtypes_saved_as_untyped_storages_match_torch_load(tmp_path):
    # uint16/32/64 have no legacy storage class: torch saves their bytes with the dtype (_rebuild_tensor_v3).
    state = {
        f"u{bits}": torch.tensor([1, 2, 60000], dtype=torch.int64).to(getattr(torch, f"uint{bits}"))
        for bits in (16, 32, 64)
    }
    path = tmp_path / "unsigned.pt"
    torch.save(state, path)
    _assert_matches_torch(path)


@pytest.mark.parametrize("key", ["model_state_dict", "state_dict", "model"])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_state_dict_inside_a_training_checkpoint(tmp_path, key, zipped):
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(8, 5)).sum().backward()
    optimizer.step()
    saved = {
        "epoch": 3,
        key: model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "loss": 0.25,
        "input_shape": torch.Size([8, 5]),  # torch.Size
        "commit": b"\x00\xffbytes",  # bytes: `_codecs.encode` in pickle protocol 2
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(saved, path, _use_new_zipfile_serialization=zipped)
    records = _assert_matches_torch(path, key)
    # Optimizer moments are state, not the model's variables.
    assert set(records) == set(model.state_dict())


def test_parameters_saved_as_parameters(tmp_path):
    model = _model()
    path = tmp_path / "params.bin"
    torch.save(model.state_dict(keep_vars=True), path)  # nn.Parameter objects: _rebuild_parameter
    _assert_matches_torch(path)


def _rezip(source: Path, target: Path, compression: int, rewrite=None) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", compression) as copy:
        for info in original.infolist():
            data = original.read(info)
            copy.writestr(info.filename, rewrite(info.filename, data) if rewrite else data)


def test_big_endian_and_recompressed_archives_match_torch_load(tmp_path):
    state = {
        "w": torch.randn(3, 4),
        "h": torch.randn(5, dtype=torch.float16),
        "b": torch.tensor([1.5, -2], dtype=torch.bfloat16),
        "i": torch.tensor([1, -(2**40)]),
    }
    path = tmp_path / "little.pt"
    torch.save(state, path)
    sizes = {str(i): t.element_size() for i, t in enumerate(state.values())}

    def big_endian(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        key = name.rsplit("/", 1)[-1]
        if "/data/" in name and sizes[key] > 1:
            return np.frombuffer(data, f"<u{sizes[key]}").astype(f">u{sizes[key]}").tobytes()
        return data

    big = tmp_path / "big.pt"
    _rezip(path, big, zipfile.ZIP_STORED, big_endian)
    _assert_matches_torch(big)  # torch.load swaps the bytes back, as the `byteorder` record asks
    deflated = tmp_path / "deflated.pt"
    _rezip(path, deflated, zipfile.ZIP_DEFLATED)
    _assert_matches_torch(deflated)


def test_files_that_are_not_a_state_dict_say_what_they_are(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    with pytest.raises(CheckpointError, match=r"whole.pt: .*`torch.nn.modules.container.Sequential`.*state_dict\(\)"):
        read_checkpoint(str(whole))
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), scripted)
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_checkpoint(str(scripted))
    stats = tmp_path / "stats.pt"
    torch.save({"epoch": 3, "history": [0.5, 0.25]}, stats)
    with pytest.raises(CheckpointError, match=r"holds a dict \(`epoch`, `history`\) with no state_dict"):
        read_checkpoint(str(stats))
    tar = tmp_path / "ancient.pt"
    with tarfile.open(tar, "w") as archive:
        archive.addfile(tarfile.TarInfo("pickle"), io.BytesIO(b""))
    with pytest.raises(CheckpointError, match="tar archive"):
        read_checkpoint(str(tar))
    other = tmp_path / "vocab.bin"
    other.write_bytes(b"\x00\x01not a model")
    with pytest.raises(CheckpointError, match="not a torch.save file"):
        read_checkpoint(str(other))
    plain = tmp_path / "plain.pkl.bin"
    plain.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    with pytest.raises(CheckpointError, match="not a torch.save file"):
        read_checkpoint(str(plain))


def test_a_run_beside_a_pickled_model_is_told_to_save_its_state_dict(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.out.tfevents.1.host").write_bytes(b"")
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), run / "model.pt")
    (found,) = scan(str(tmp_path))["runs"]
    assert found["checkpoint"] is None
    (warning,) = found["warnings"]
    assert warning["file"] == str(run / "model.pt")
    assert warning["message"].startswith("checkpoint not read: ")
    assert "torch.save(model)" in warning["message"] and "model.state_dict()" in warning["message"]


def test_damaged_storages_are_checkpoint_errors(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.randn(4)}, path)
    short = tmp_path / "short.pt"
    _rezip(path, short, zipfile.ZIP_STORED, lambda name, data: data[:8] if "/data/" in name else data)
    with pytest.raises(CheckpointError, match="holds 8 bytes, not 4 float32 values"):
        read_checkpoint(str(short))
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.randn(4)}, legacy, _use_new_zipfile_serialization=False)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(legacy.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(str(truncated))


def _hash_bomb() -> bytes:
    """60 tuples, each holding the one before twice: 600 bytes, and 2**60 steps to hash as a dict key."""
    ops = b"\x80\x02}q\x00)q\x01"
    for level in range(1, 61):
        ops += b"h" + bytes([level]) + b"h" + bytes([level]) + b"\x86q" + bytes([level + 1])
    return ops + b"K\x00s."


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # A memo index of 2**30: C unpickle would size its memo (8 GB) to it.
        (b"\x80\x02}r\x00\x00\x00\x40.", "memo index 1073741824 out of order"),
        (_hash_bomb(), "far larger than the pickle"),
        # A bytes object claiming 2 GB that the file does not hold.
        (b"\x80\x04B\xff\xff\xff\x7f.", "truncated pickle"),
        # `get` shadowed on the dict by BUILD: the reader still finds no state_dict rather than calling it.
        (b"\x80\x02ccollections\nOrderedDict\n)R}X\x03\x00\x00\x00getccollections\nOrderedDict\nsb.", "no state_dict"),
    ],
    ids=["memo", "hash", "bytes", "shadowed-get"],
)
def test_hostile_pickles_are_refused_before_they_are_built(tmp_path, payload, message):
    path = tmp_path / "hostile.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(str(path))


# A pickle whose loading runs os.system. Every container torch.save uses carries it: the zip's data.pkl, the legacy
# pickle sequence, and a protocol-4 pickle naming it through STACK_GLOBAL (not visible as a GLOBAL opcode).
_EXPLOIT = """
import io, json, os, pickle, sys, zipfile
marker = sys.argv[1]

class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {marker}",))

def zipped(payload):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model/data.pkl", payload)
        archive.writestr("model/byteorder", "little")
    return out.getvalue()

protocol2 = pickle.dumps({"weight": Exploit()}, protocol=2)
legacy = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {})) + protocol2
stack_global = zipped(pickle.dumps(Exploit(), protocol=4))
files = {"zip.pt": zipped(protocol2), "legacy.pt": legacy, "stack_global.pt": stack_global}
for name in ("tensorflow", "tf_keras", "keras", "torch"):
    sys.modules[name] = None
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import CheckpointError
errors = {}
for name, data in files.items():
    path = os.path.join(os.path.dirname(marker), name)
    with open(path, "wb") as f:
        f.write(data)
    try:
        read_checkpoint(path)
        errors[name] = None
    except CheckpointError as e:
        errors[name] = str(e)
loaded = [m for m in ("tensorflow", "tf_keras", "keras", "torch") if sys.modules.get(m) is not None]
print(json.dumps({"errors": errors, "loaded": loaded}))
"""


def test_a_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    result = subprocess.run(
        [sys.executable, "-c", _EXPLOIT, str(marker)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert not marker.exists()
    assert report["loaded"] == []
    system = "posix.system" if os.name == "posix" else "nt.system"
    for name, error in report["errors"].items():
        assert error is not None and f"`{system}`" in error and "does not rebuild" in error, name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "checkpoint"), [("torch_blocks_pt", "model.pt"), ("torch_blocks_legacy", "model.pth")]
)
def test_scan_names_every_leaf_named_lane_and_gradient_by_its_state_dict_key(logdir_of, name, checkpoint):
    logdir = logdir_of(name)
    (run,) = scan(str(logdir))["runs"]
    assert run["checkpoint"] == {"path": str(logdir / name / checkpoint), "format": "pytorch", "variables": 6}
    assert run["warnings"] == []
    lanes = {c["tag"]: [(lane["variable"], lane["checkpoint_key"]) for lane in c["lanes"]] for c in run["collisions"]}
    weights = [("0.0.weight", "0.0.weight"), ("1.0.weight", "1.0.weight"), ("2.weight", "2.weight")]
    biases = [("0.0.bias", "0.0.bias"), ("1.0.bias", "1.0.bias"), ("2.bias", "2.bias")]
    # Gradients match no checkpoint tensor: each takes the variable of the weight lane it is written beside.
    assert lanes == {"weight": weights, "bias": biases, "grad/weight": weights, "grad/bias": biases}


# Property tests: damaged and hostile files give CheckpointError (never another exception) in bounded memory.
# VARSCOPE_FUZZ_EXAMPLES selects a longer run (e.g. 2000); the default keeps the fast suite fast.
_FUZZ = settings(
    max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Every file fuzzed here is a few KB: reading one may hold it a few times over, never megabytes.
_MEMORY_BOUND = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("torch_fuzz")
    model = _model()
    model(torch.randn(8, 5))
    state = {**model.state_dict(), "bf16": torch.ones(3, dtype=torch.bfloat16), "view": torch.randn(4, 4).t()}
    torch.save(state, directory / "zip.pt")
    torch.save({"model_state_dict": state}, directory / "legacy.pt", _use_new_zipfile_serialization=False)
    return directory


def _read_everything(path: Path) -> int:
    """Reads the file and every variable in it; returns the peak memory traced while doing so."""
    tracemalloc.start()
    try:
        try:
            checkpoint = read_checkpoint(str(path))
        except CheckpointError:
            return tracemalloc.get_traced_memory()[1]
        for variable in checkpoint.variables:
            with contextlib.suppress(CheckpointError):
                variable.load()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    damaged = bytearray(data)
    for position, bit in flips:
        damaged[position % len(damaged)] ^= 1 << bit
    return bytes(damaged[:cut] if cut is not None else damaged)


_FLIPS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=8)


@_FUZZ
@given(name=st.sampled_from(["zip.pt", "legacy.pt"]), flips=_FLIPS, cut=st.none() | st.integers(0, 1 << 16))
def test_fuzz_bit_flips_and_truncation(fuzz_dir, name, flips, cut):
    path = fuzz_dir / f"damaged-{name}"
    path.write_bytes(_mutate((fuzz_dir / name).read_bytes(), flips, cut))
    assert _read_everything(path) < _MEMORY_BOUND


@_FUZZ
@given(flips=_FLIPS.filter(bool), cut=st.none() | st.integers(0, 1 << 12))
def test_fuzz_damaged_pickle_inside_an_intact_zip(fuzz_dir, flips, cut):
    # zipfile's CRC check would catch most flips: damage data.pkl and re-zip it, so the unpickler meets them.
    path = fuzz_dir / "repacked.pt"
    damage = lambda name, data: _mutate(data, flips, cut) if name.endswith("data.pkl") else data  # noqa: E731
    _rezip(fuzz_dir / "zip.pt", path, zipfile.ZIP_STORED, damage)
    assert _read_everything(path) < _MEMORY_BOUND


# Pieces of the pickles torch writes (and some it never would), strung together at random.
_PICKLE_PIECES = [
    b"(", b")", b"}", b"]", b"t", b"\x85", b"\x86", b"\x87", b"R", b"b", b"Q", b"s", b"u", b"a", b"e", b"N",
    b"\x88", b"\x89", b"0", b"2", b"K\x00", b"K\x04", b"M\x00\x01", b"J\xff\xff\xff\x7f", b"\x8a\x01\xff",
    b"X\x07\x00\x00\x00storage", b"X\x01\x00\x00\x000", b"X\x03\x00\x00\x00cpu", b"X\x01\x00\x00\x00w",
    b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch._utils\n_rebuild_tensor_v3\n",
    b"ctorch._utils\n_rebuild_parameter\n",
    b"ctorch\nFloatStorage\n", b"ctorch\nBFloat16Storage\n", b"ctorch\nUntypedStorage\n", b"ctorch\nfloat16\n",
    b"ccollections\nOrderedDict\n", b"ctorch._tensor\n_rebuild_from_type_v2\n", b"ctorch\nTensor\n", b"ctorch\nSize\n",
    b"c_codecs\nencode\n", b"\x8c\x02os\x94\x8c\x06system\x94\x93", b"q\x00", b"q\x01", b"h\x00", b"h\x01",
    b"r\xff\xff\xff\x0f", b"\x94", b"\x81", b"\x82\x01", b"B\xff\xff\xff\x7f", b"\x8e\xff\xff\xff\xff\xff\xff\x00\x00",
]  # fmt: skip


@_FUZZ
@given(pieces=st.lists(st.sampled_from(_PICKLE_PIECES) | st.binary(max_size=3), max_size=60))
def test_fuzz_random_pickles(fuzz_dir, pieces):
    payload = b"\x80\x02" + b"".join(pieces) + b"."
    path = fuzz_dir / "random.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/data/0", b"\x00" * 16)
    assert _read_everything(path) < _MEMORY_BOUND
    legacy = fuzz_dir / "random_legacy.pt"
    prelude = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {}))
    legacy.write_bytes(prelude + payload + pickle.dumps(["0"], protocol=2) + b"\x04" + b"\x00" * 23)
    assert _read_everything(legacy) < _MEMORY_BOUND
