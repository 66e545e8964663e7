"""Which checkpoint belongs to a run: in the run, beside it in a `ckpt/` directory, or up to the logdir."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from tb_varscope_plugin import scan
from tb_varscope_plugin.checkpoints.discovery import find_checkpoint
from tb_varscope_plugin.checkpoints.formats import read_checkpoint
from tb_varscope_plugin.checkpoints.variables import CheckpointError


def _touch(path, mtime: float = 1_000_000.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def _run(logdir, name):
    return _touch(logdir / name / "events.out.tfevents.1.host").parent


def test_checkpoint_in_the_run_directory(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "model.weights.h5")
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "model.weights.h5")


def test_tf_checkpoint_named_by_the_state_file(tmp_path):
    run = _run(tmp_path, "run1")
    ckpt = run / "ckpt"
    for step in (1, 2, 3):
        _touch(ckpt / f"ckpt-{step}.index", mtime=1_000_000.0 + step)
        _touch(ckpt / f"ckpt-{step}.data-00000-of-00001")
    # The state file says ckpt-2 even though ckpt-3 is newer: TensorFlow's own choice wins.
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-3"\n')
    assert find_checkpoint(str(run), str(tmp_path)) == str(ckpt / "ckpt-2")


def test_state_file_with_absolute_path_from_another_machine(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt-7.index")
    (run / "checkpoint").write_text('model_checkpoint_path: "/home/someone/old/ckpt-7"\n')
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "ckpt-7")


def test_index_without_state_file_newest_wins(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt-9.index", mtime=2_000_000.0)
    _touch(run / "ckpt-10.index", mtime=1_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "ckpt-9")


def test_ckpt_directory_beside_the_runs(tmp_path):
    run = _run(tmp_path, "train")
    _run(tmp_path, "validation")
    _touch(tmp_path / "checkpoints" / "model.safetensors")
    assert find_checkpoint(str(run), str(tmp_path)) == str(tmp_path / "checkpoints" / "model.safetensors")


def _saved_model(directory, mtime: float = 1_000_000.0):
    _touch(directory / "saved_model.pb", mtime)
    _touch(directory / "variables" / "variables.data-00000-of-00001", mtime)
    _touch(directory / "variables" / "variables.index", mtime)
    return directory


def test_saved_model_two_levels_below_the_run(tmp_path):
    run = _run(tmp_path, "run1")
    export = _saved_model(run / "export")
    assert find_checkpoint(str(run), str(tmp_path)) == str(export)


def test_saved_model_beside_the_runs_and_as_the_logdir_itself(tmp_path):
    run = _run(tmp_path, "exp/train")
    export = _saved_model(tmp_path / "exp" / "exported_model")
    assert find_checkpoint(str(run), str(tmp_path)) == str(export)
    # A `variables/` directory without `saved_model.pb` beside it is no SavedModel.
    (export / "saved_model.pb").unlink()
    assert find_checkpoint(str(run), str(tmp_path)) is None
    logdir = _saved_model(tmp_path / "in_place")
    assert find_checkpoint(str(_run(logdir, "train")), str(logdir)) == str(logdir)


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "pytorch_model.bin"])
def test_pytorch_files_are_checkpoints(tmp_path, name):
    run = _run(tmp_path, "run1")
    _touch(run / "model.safetensors", mtime=1_000_000.0)
    _touch(run / name, mtime=2_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / name)


def test_training_state_beside_a_model_is_not_its_checkpoint(tmp_path):
    # A Hugging Face Trainer checkpoint directory: the model first, then optimizer, scheduler and RNG state.
    run = _run(tmp_path, "run1")
    _touch(run / "checkpoint-500" / "model.safetensors", mtime=1_000_000.0)
    for name in ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth", "rng_state_3.pth", "training_args.bin"):
        _touch(run / "checkpoint-500" / name, mtime=2_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "checkpoint-500" / "model.safetensors")


def test_a_run_with_only_unread_model_files_says_so(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "model.onnx")
    _touch(run / "export" / "model.tflite")
    _touch(run / "notes.txt")
    report = scan(str(tmp_path))
    (found,) = report["runs"]
    assert found["checkpoint"] is None
    warnings = {w["file"]: w["message"] for w in found["warnings"]}
    assert set(warnings) == {str(run / "model.onnx"), str(run / "export" / "model.tflite")}
    assert warnings[str(run / "model.onnx")].startswith("ONNX model file: a format tb-varscope does not read")
    # Once a checkpoint that is read sits beside them, the run is named from it and nothing is said.
    _touch(run / "model.weights.h5")
    assert [w["message"][:19] for w in scan(str(tmp_path))["runs"][0]["warnings"]] == ["checkpoint not read"]


def test_nearest_ancestor_wins_over_logdir(tmp_path):
    run = _run(tmp_path, "exp1/seed0/train")
    _touch(tmp_path / "exp1" / "model.keras", mtime=1_000_000.0)
    _touch(tmp_path / "old.keras", mtime=9_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(tmp_path / "exp1" / "model.keras")


def test_a_checkpoint_in_the_run_itself_beats_a_newer_one_in_its_ckpt_directory(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "model.weights.h5", mtime=1_000_000.0)
    _touch(run / "ckpt" / "ckpt-1.index", mtime=3_000_000.0)
    _touch(run / "ckpt" / "ckpt-1.data-00000-of-00001", mtime=3_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "model.weights.h5")


def test_newest_wins_among_the_checkpoint_directories_of_a_run(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt" / "early.weights.h5", mtime=1_000_000.0)
    _touch(run / "checkpoints" / "late.safetensors", mtime=3_000_000.0)
    _touch(tmp_path / "newest.keras", mtime=9_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "checkpoints" / "late.safetensors")


def test_newest_wins_within_one_ancestor_level(tmp_path):
    run = _run(tmp_path, "exp/train")
    _touch(tmp_path / "exp" / "early.keras", mtime=1_000_000.0)
    _touch(tmp_path / "exp" / "ckpt" / "late.weights.h5", mtime=3_000_000.0)
    assert find_checkpoint(str(run), str(tmp_path)) == str(tmp_path / "exp" / "ckpt" / "late.weights.h5")


def test_another_experiments_checkpoint_is_not_borrowed(tmp_path):
    run = _run(tmp_path, "exp_a/train")
    _run(tmp_path, "exp_b/train")
    _touch(tmp_path / "exp_b" / "model.keras")
    _touch(tmp_path / "exp_b" / "ckpt" / "model.weights.h5")
    assert find_checkpoint(str(run), str(tmp_path)) is None
    # exp_b's own run still finds it.
    assert find_checkpoint(str(tmp_path / "exp_b" / "train"), str(tmp_path)) == str(tmp_path / "exp_b" / "model.keras")


def test_a_directory_with_runs_deep_below_is_not_a_checkpoint_directory(tmp_path):
    run = _run(tmp_path, "exp_a/train")
    _run(tmp_path, "exp_b/seeds/0/train")
    _touch(tmp_path / "exp_b" / "model.keras")
    _touch(tmp_path / "shared" / "model.safetensors")
    assert find_checkpoint(str(run), str(tmp_path)) == str(tmp_path / "shared" / "model.safetensors")


def test_a_symlink_loop_below_a_checkpoint_directory_ends(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(tmp_path / "ckpt" / "model.keras")
    (tmp_path / "ckpt" / "again").symlink_to(tmp_path / "ckpt")
    assert find_checkpoint(str(run), str(tmp_path)) == str(tmp_path / "ckpt" / "model.keras")


@pytest.mark.slow
def test_scenario_logdir_runs_take_only_their_own_experiments_checkpoint(logdir_of):
    logdir = logdir_of("multi_run", "keras3_callback")
    report = scan(str(logdir))
    found = {run["run"]: run["checkpoint"] and run["checkpoint"]["path"] for run in report["runs"]}
    assert found == {
        "keras3_callback/train": str(logdir / "keras3_callback" / "model.keras"),
        "multi_run/run_a": None,
        "multi_run/run_b": None,
        "multi_run/run_c": None,
    }


def test_sibling_run_checkpoints_are_not_borrowed(tmp_path):
    run = _run(tmp_path, "run1")
    other = _run(tmp_path, "run2")
    _touch(other / "model.weights.h5")
    assert find_checkpoint(str(run), str(tmp_path)) is None


def test_walk_stops_at_the_logdir(tmp_path):
    logdir = tmp_path / "logs"
    run = _run(logdir, "run1")
    _touch(tmp_path / "model.keras")
    assert find_checkpoint(str(run), str(logdir)) is None


def test_trailing_slashes_and_run_equal_to_logdir(tmp_path):
    _touch(tmp_path / "events.out.tfevents.1.host")
    _touch(tmp_path / "ckpt" / "model.weights.h5")
    assert find_checkpoint(str(tmp_path) + "/", str(tmp_path) + "/") == str(tmp_path / "ckpt" / "model.weights.h5")


def test_read_checkpoint_names_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in this directory"):
        read_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"nothing/ckpt-1: not a checkpoint"):
        read_checkpoint(str(tmp_path / "nothing" / "ckpt-1"))
    with pytest.raises(CheckpointError, match="gone.weights.h5: cannot read"):
        read_checkpoint(str(tmp_path / "gone.weights.h5"))


def test_state_file_path_with_escapes_and_unicode(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / 'modèle "a"-3.index')
    (run / "checkpoint").write_text('model_checkpoint_path: "modèle \\"a\\"-3"\n', encoding="utf-8")
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / 'modèle "a"-3')


def _peak_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_state_file_with_an_invalid_escape_falls_back_to_the_index_files(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt-2.index")
    (run / "checkpoint").write_text('model_checkpoint_path: "ckpt\\x"\n')
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "ckpt-2")


def test_a_huge_quoted_path_in_the_state_file_is_not_read_whole(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt-2.index")
    with open(run / "checkpoint", "w") as f:
        f.write('model_checkpoint_path: "')
        f.write("a" * 20_000_000)
        f.write('"\n')
    found, peak = _peak_bytes(lambda: find_checkpoint(str(run), str(tmp_path)))
    assert found == str(run / "ckpt-2")
    assert peak < 2_000_000


def test_a_large_binary_named_checkpoint_is_not_read_whole(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt-2.index")
    with open(run / "checkpoint", "wb") as f:
        f.write(bytes(range(256)) * 1024)
        f.truncate(512 * 1024 * 1024)  # sparse: 512 MiB on paper, little on disk
    found, peak = _peak_bytes(lambda: find_checkpoint(str(run), str(tmp_path)))
    assert found == str(run / "ckpt-2")
    assert peak < 2_000_000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_checkpoint_is_not_opened(tmp_path):
    run = _run(tmp_path, "run1")
    _touch(run / "ckpt-2.index")
    os.mkfifo(run / "checkpoint")  # opening it for reading would block until a writer came
    assert find_checkpoint(str(run), str(tmp_path)) == str(run / "ckpt-2")


def test_a_run_with_a_broken_state_file_is_still_reported(tmp_path):
    run = _run(tmp_path, "run1")
    (run / "checkpoint").write_text('model_checkpoint_path: "ckpt\\x"\n')
    report = scan(str(tmp_path))
    assert [r["run"] for r in report["runs"]] == ["run1"]
    assert report["runs"][0]["checkpoint"] is None
