"""Times and weighs reading hostile checkpoints: a Keras 3 `.weights.h5` of 20k layers, a `.keras` zip bomb, a
1 GiB `config.json`, and `checkpoint` state files of 20 MB and 512 MiB.

Run: `python benchmarks/bench_checkpoints.py [--reps 3] [--layers 20000]`. Builds its files once under
`benchmarks/data/checkpoints/` (the big ones sparse). For each: process CPU seconds (min of the reps, so a shared
machine's load counts less) and wall seconds, and the peak of Python-level allocations (tracemalloc: numpy and bytes
included, HDF5's own C allocations not).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' zip writer and deflate bomb, used as they are there

from damaged_checkpoints import REAL, deflate_bomb, write_zip, zip_members  # noqa: E402

from tb_varscope_plugin.checkpoints import keras_h5  # noqa: E402
from tb_varscope_plugin.checkpoints.discovery import find_checkpoint  # noqa: E402
from tb_varscope_plugin.checkpoints.formats import read_checkpoint  # noqa: E402
from tb_varscope_plugin.checkpoints.variables import CheckpointError  # noqa: E402


def build(data: Path, layers: int) -> dict[str, tuple[str, str]]:
    """The files, each with what to call on it (`read` or `find`)."""
    data.mkdir(parents=True, exist_ok=True)
    many = data / f"layers{layers}.weights.h5"
    if not many.exists():
        with h5py.File(many, "w") as h5:
            h5.create_group("vars")
            for i in range(layers):
                own = h5.create_group(f"layers/dense_{i}/vars")
                own.attrs["name"] = f"dense_{i}"
                own.create_dataset("0", data=np.full((2, 2), i, "f4"))
    members = zip_members(REAL / "model.keras")
    stored = {"method": zipfile.ZIP_STORED}
    bomb = data / "bomb.keras"
    if not bomb.exists():
        raw = deflate_bomb(2 << 30)
        write_zip(
            bomb,
            [
                ("config.json", b"", {"method": 8, "raw": raw, "file_size": 100, "crc": 0}),
                ("model.weights.h5", members["model.weights.h5"], stored),
            ],
        )
    big_config = data / "big-config.keras"
    if not big_config.exists():
        write_zip(
            big_config,
            [
                ("config.json", b"{", {**stored, "file_size": 1 << 30, "sparse": (1 << 30) - 1}),
                ("model.weights.h5", members["model.weights.h5"], stored),
            ],
        )
    quoted = data / "quoted" / "run"
    if not quoted.exists():
        quoted.mkdir(parents=True)
        (quoted / "events.out.tfevents.1.host").write_bytes(b"")
        (quoted / "ckpt-1.index").write_bytes(b"")
        (quoted / "checkpoint").write_text('model_checkpoint_path: "' + "a" * 20_000_000 + '"\n')
    binary = data / "binary" / "run"
    if not binary.exists():
        binary.mkdir(parents=True)
        (binary / "events.out.tfevents.1.host").write_bytes(b"")
        (binary / "ckpt-1.index").write_bytes(b"")
        with open(binary / "checkpoint", "wb") as f:
            f.write(os.urandom(1 << 20))
            f.truncate(512 << 20)
    return {
        f"Keras reader: .weights.h5 of {layers} layers ({many.stat().st_size >> 20} MB)": ("h5", str(many)),
        f".keras zip bomb ({bomb.stat().st_size >> 20} MB inflating to 2 GiB, declaring 100 bytes)": ("h5", str(bomb)),
        ".keras declaring a 1 GiB config.json": ("h5", str(big_config)),
        "find_checkpoint: state file with a 20 MB quoted path": ("find", str(quoted)),
        "find_checkpoint: 512 MiB binary named `checkpoint`": ("find", str(binary)),
    }


def run(kind: str, path: str) -> str:
    if kind == "find":
        return f"found {Path(find_checkpoint(path, str(Path(path).parent)) or '-').name}"
    try:
        # An h5 file through the reader the HDF5 worker runs, here, so that its CPU and allocations are counted.
        checkpoint = keras_h5.read_keras_file(path) if kind == "h5" else read_checkpoint(path)
        checkpoint.close()
        return f"{len(checkpoint.variables)} variables"
    except CheckpointError as error:
        return f"CheckpointError: {str(error)[len(path) + 2 :][:60]}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=20_000)
    args = parser.parse_args()
    cases = build(HERE / "data" / "checkpoints", args.layers)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, (kind, path) in cases.items():
        cpu, wall = [], []
        for _ in range(args.reps):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            outcome = run(kind, path)
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start_wall)
        tracemalloc.start()
        run(kind, path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{label}: {outcome}; CPU {min(cpu):.2f} s, wall {min(wall):.2f} s, peak {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
