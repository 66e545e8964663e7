"""The `tb-varscope` command as a new process starts it: remote back ends deferred, then the CLI."""

from __future__ import annotations

from tb_varscope_plugin.startup import defer_remote_back_ends


def main() -> int:
    defer_remote_back_ends()  # before anything imports TensorBoard's filesystem layer (see startup.py)
    from tb_varscope_plugin.cli import main as cli_main

    return cli_main()
