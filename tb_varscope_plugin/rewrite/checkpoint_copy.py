"""The files that make up a checkpoint, and copying them to OUTDIR, so the repaired logdir still names its variables."""

from __future__ import annotations

import os
import posixpath

from tensorboard.compat.tensorflow_stub.io import gfile

from tb_varscope_plugin.checkpoints.discovery import STATE_FILE
from tb_varscope_plugin.filesystem import is_local, read_at

CHUNK = 4 << 20


def checkpoint_files(path: str) -> list[str]:
    """Every file of the checkpoint at `path`, as discovery and `--checkpoint` name it.

    A SavedModel directory: everything below it. A TF checkpoint prefix: `<prefix>.index`, its `<prefix>.data-*`
    shards (and a TF1 `<prefix>.meta`), plus the directory's `checkpoint` state file, which discovery reads first.
    Anything else (`.keras`, `.weights.h5`, `.safetensors`, a `torch.save` file) is one file.
    """
    if gfile.isdir(path):
        return sorted(posixpath.join(directory, name) for directory, _, names in gfile.walk(path) for name in names)
    if gfile.exists(path + ".index"):
        directory, prefix = posixpath.split(path)
        names = gfile.listdir(directory or ".")
        found = [posixpath.join(directory, n) for n in names if n.startswith(prefix + ".")]
        if STATE_FILE in names:
            found.append(posixpath.join(directory, STATE_FILE))
        return sorted(found)
    return [path]


def copy_file(source: str, target: str) -> int:
    """Copies one file through the filesystem layer, a chunk at a time; a local copy keeps its modification time,
    which discovery ("the newest wins") and attribution (the value logged nearest the save) go by."""
    parent = posixpath.dirname(target)
    if parent:
        gfile.makedirs(parent)
    size = 0
    with gfile.GFile(target, "wb") as out:
        while True:
            data = read_at(source, size, CHUNK)
            if not data:
                break
            out.write(data)
            size += len(data)
    if is_local(source) and is_local(target):
        stat = os.stat(source)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return size
