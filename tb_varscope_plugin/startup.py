"""What a process of ours does before it imports TensorBoard's filesystem layer: defer its optional back ends.

`tensorboard.compat.tensorflow_stub.io.gfile` imports boto3 (for `s3://`) and fsspec (for other URL schemes)
as it is imported, whether any path will need them or not. Where they are installed, that costs a local scan
about 0.15 s of imports and as much again tearing them down at exit: more than reading 150 MB of logs. Deferred,
the filesystem layer still finds them installed and registers S3 as it always does; each is imported for real the
first time one of its attributes is used, that is when a path first needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from tensorboard import lazy

# The modules TensorBoard's filesystem layer imports only to support remote paths.
REMOTE_BACK_ENDS = ("boto3", "fsspec")


def defer_remote_back_ends() -> list[str]:
    """Puts in place of each of REMOTE_BACK_ENDS that is installed and not imported yet a module that imports it
    on first use (TensorBoard's own `tensorboard.lazy`); returns those deferred. Absent ones stay absent, so the
    filesystem layer's `ImportError` fallback is unchanged."""
    deferred = []
    for name in REMOTE_BACK_ENDS:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            sys.modules[name] = _on_first_use(name)
            deferred.append(name)
    return deferred


def _on_first_use(name: str) -> types.ModuleType:
    @lazy.lazy_load(name)
    def stand_in() -> types.ModuleType:
        # The stand-in steps aside so that the import is a real one; it then forwards to what that gave.
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)

    return stand_in
