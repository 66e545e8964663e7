"""Every way TensorBoard is pointed at logs: `--logdir_spec`, an `s3://` logdir on a real S3-compatible server
(moto in server mode, on 127.0.0.1), and an fsspec URL. CLI and plugin give the report of a local copy."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eventlogs import layered_run
from tensorboard.compat.tensorflow_stub.io import gfile
from tensorboard.plugins import base_plugin

from tb_varscope_plugin import scan
from tb_varscope_plugin.server.plugin import VarScopeLoader

REPO = Path(__file__).resolve().parents[1]


def _logdir(root: Path) -> Path:
    """Two experiments: a colliding run with its checkpoint beside it, and a clean run one level down."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    layered_run(str(root / "exp" / "train" / "events.out.tfevents.1.a"), "kernel", [3, 12], steps=3)
    layered_run(str(root / "exp" / "eval" / "sub" / "events.out.tfevents.1.b"), "bias", [4], steps=2)
    layered_run(str(root / "events.out.tfevents.2.c"), "top", [2, 2], steps=2)
    rng = np.random.default_rng(0)
    save_file({"a.kernel": rng.normal(size=3), "b.kernel": rng.normal(size=12)}, str(root / "exp" / "m.safetensors"))
    return root


def _as_local(report: dict, remote: str, local: str) -> dict:
    return json.loads(json.dumps(report).replace(remote, local))


def _scan_cli(logdir: str, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "tb_varscope_plugin", "scan", logdir, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr  # collisions found
    return json.loads(result.stdout)


def _plugin_report(**context: object) -> dict:
    flags = argparse.Namespace(reload_interval=0, varscope_checkpoint=None, logdir_spec=context.pop("spec", ""))
    plugin = VarScopeLoader().load(base_plugin.TBContext(flags=flags, **context))  # type: ignore[arg-type]
    assert plugin is not None
    plugin.reload_impl()
    report = plugin.report_impl()
    return {key: value for key, value in report.items() if key != "complete"}


# --logdir_spec


def _spec(logdir: Path) -> str:
    return f"first:{logdir / 'exp'},second:{logdir / 'exp' / 'eval'},{logdir / 'exp' / 'train'}"


def test_logdir_spec_runs_are_put_under_their_names(tmp_path):
    logdir = _logdir(tmp_path)
    report = _plugin_report(logdir="", spec=_spec(logdir))
    by_name = {r["run"]: r for r in report["runs"]}
    # As TensorBoard's multiplexer joins them: `name/` and the path below; a directory given alone is `.`.
    assert sorted(by_name) == [".", "first/eval/sub", "first/train", "second/sub"]
    assert report["logdir"] == _spec(logdir)
    assert by_name["first/train"]["collisions"][0]["tag"] == "kernel"
    # Each run finds its checkpoint within its own spec directory: `.` (exp/train given alone) stops there.
    assert by_name["first/train"]["checkpoint"]["path"] == str(logdir / "exp" / "m.safetensors")
    assert by_name["."]["checkpoint"] is None
    # And otherwise reads as the same directories under --logdir.
    local = {r["run"]: r for r in scan(str(logdir / "exp"))["runs"]}
    assert by_name["first/train"]["collisions"] == local["train"]["collisions"]


@pytest.mark.slow  # TensorBoard's multiplexer imports TensorFlow
def test_logdir_spec_run_names_are_tensorboards(tmp_path):
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    logdir = _logdir(tmp_path)
    report = _plugin_report(logdir="", spec=_spec(logdir))
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    for path, name in {str(logdir / "exp"): "first", str(logdir / "exp" / "eval"): "second"}.items():
        multiplexer.AddRunsFromDirectory(path, name)
    multiplexer.AddRunsFromDirectory(str(logdir / "exp" / "train"))
    assert sorted(r["run"] for r in report["runs"]) == sorted(multiplexer.Runs())


# S3


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1, and the environment TensorBoard's S3 filesystem needs to reach it."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Moto accepts any key: these name no account.
    env = {
        "S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], **_keys(env))
        for _ in range(200):
            try:
                client.list_buckets()
                break
            except Exception:
                if server.poll() is not None:
                    pytest.fail("moto's S3 server did not start", pytrace=False)
                time.sleep(0.1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=20)


def _keys(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def _upload(env: dict[str, str], local: Path, bucket: str) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], **_keys(env))
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, "logs/" + path.relative_to(local).as_posix())
    return f"s3://{bucket}/logs"


@pytest.mark.slow  # starts an S3 server and CLI processes
def test_s3_logdir_gives_the_report_of_a_local_copy(s3_server, tmp_path, monkeypatch):
    local = _logdir(tmp_path / "local")
    remote = _upload(s3_server, local, "cli")
    expected = _scan_cli(str(local))
    assert _as_local(_scan_cli(remote, s3_server), remote, str(local)) == expected
    # The tab: TensorBoard's S3 filesystem in this process, pointed at the server as S3_ENDPOINT points it.
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(gfile.get_filesystem("s3://x"), "_s3_endpoint", s3_server["S3_ENDPOINT"])
    assert _as_local(_plugin_report(logdir=remote), remote, str(local)) == expected


# fsspec


@pytest.mark.slow  # starts CLI processes
def test_fsspec_logdir_gives_the_report_of_a_local_copy(tmp_path):
    pytest.importorskip("fsspec")
    local = _logdir(tmp_path / "local")
    remote = "file://" + str(local)
    assert type(gfile.get_filesystem(remote)).__name__ == "FSSpecFileSystem"
    expected = _scan_cli(str(local))
    assert _as_local(_scan_cli(remote), remote, str(local)) == expected
    assert _as_local(_plugin_report(logdir=remote), remote, str(local)) == expected
