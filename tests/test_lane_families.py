"""What the index alone says about lanes: sibling families written in the same place, restarts inside one file,
the writer of a file, and the names that tell layers sharing one name apart (fast: TensorBoard's own writers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from eventlogs import histogram_event, write_events
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_varscope_plugin.analysis.collisions import TENSORBOARDX, TORCH, find_collisions, writer_of
from tb_varscope_plugin.analysis.variable_names import ShownNames
from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.report import build_run_report

RNG = np.random.default_rng(7)
SIZES = [(4, 5), (4, 4), (3, 4)]
WEIGHTS = {f"{k}.weight": RNG.normal(loc=3 * k, size=size) for k, size in enumerate(SIZES)}
GRADS = {name: RNG.normal(scale=1e-3, size=w.shape) for name, w in WEIGHTS.items()}


def _checkpoint(weights: dict[str, np.ndarray]) -> Checkpoint:
    variables = tuple(
        Variable(name, name, name, w.shape, "float64", name.rsplit(".", 1)[0], False, lambda w=w: w)
        for name, w in weights.items()
    )
    return Checkpoint("model.safetensors", "safetensors", variables, mtime=None)


def _report(tmp_path: Path, writes_per_step: list[list[tuple[str, np.ndarray]]], checkpoint: Checkpoint | None):
    """One run; step s holds the (tag, values) writes of `writes_per_step[s]`, in order, as legacy histograms."""
    events = [histogram_event(step, tag, v, legacy=True) for step, w in enumerate(writes_per_step) for tag, v in w]
    write_events(str(tmp_path / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    report = build_run_report(index.runs["."], checkpoint)
    return {c["tag"]: c for c in report["collisions"]}, report


def _interleaved(grad_tag: str = "grad/weight") -> list[tuple[str, np.ndarray]]:
    return [w for name in WEIGHTS for w in (("weight", WEIGHTS[name]), (grad_tag, GRADS[name]))]


def _variables(collision: dict) -> list[str | None]:
    return [lane["variable"] for lane in collision["lanes"]]


# --- sibling families -----------------------------------------------------------------------------------------


def test_gradient_lanes_take_the_variable_of_the_weight_written_beside_them(tmp_path):
    collisions, _ = _report(tmp_path, [_interleaved()] * 3, _checkpoint(WEIGHTS))
    assert _variables(collisions["grad/weight"]) == list(WEIGHTS)
    assert collisions["grad/weight"]["lanes"][2]["evidence"].startswith(
        "lane 2 of `grad/weight` is written in the same place as lane 2 of `weight` (at each of the 3 steps every "
        "`grad/weight` value is written right after a `weight` value; both have 3 lanes of the same element counts), "
        "named from the checkpoint: values equal checkpoint `2.weight`"
    )


def test_two_loops_in_the_same_order_also_place_gradients(tmp_path):
    step = [("weight", w) for w in WEIGHTS.values()] + [("kernel_grad", g) for g in GRADS.values()]
    collisions, _ = _report(tmp_path, [step] * 2, _checkpoint(WEIGHTS))
    assert _variables(collisions["kernel_grad"]) == list(WEIGHTS)
    assert (
        "the 3 `kernel_grad` values are written after the 3 `weight` values"
        in (collisions["kernel_grad"]["lanes"][0]["evidence"])
    )


def test_gradients_are_never_matched_to_weights_by_their_values(tmp_path):
    # Gradients alone: values that fit no weight must not be paired with one, however the distances fall.
    step = [("grad/weight", g) for g in GRADS.values()]
    collisions, _ = _report(tmp_path, [step] * 2, _checkpoint(WEIGHTS))
    lanes = collisions["grad/weight"]["lanes"]
    assert _variables(collisions["grad/weight"]) == [None] * 3
    assert all(lane["confidence"] == 0.0 for lane in lanes)
    assert "gradients are not stored in checkpoints" in lanes[0]["evidence"]


def test_an_order_that_changes_between_steps_names_no_gradient(tmp_path):
    # Step 1 writes every weight, then every gradient: lane k of each is no longer known to be one place.
    blocked = [("weight", w) for w in WEIGHTS.values()] + [("grad/weight", g) for g in GRADS.values()]
    collisions, _ = _report(tmp_path, [_interleaved(), blocked, _interleaved()], _checkpoint(WEIGHTS))
    assert _variables(collisions["grad/weight"]) == [None] * 3


def test_other_element_counts_or_a_missing_step_name_no_gradient(tmp_path):
    other_sizes = [("weight", w) for w in WEIGHTS.values()] + [("grad/weight", g.ravel()[:5]) for g in GRADS.values()]
    collisions, _ = _report(tmp_path / "sizes", [other_sizes] * 2, _checkpoint(WEIGHTS))
    assert _variables(collisions["grad/weight"]) == [None] * 3
    weights_only = [("weight", w) for w in WEIGHTS.values()]
    collisions, _ = _report(tmp_path / "missing", [_interleaved(), weights_only, _interleaved()], _checkpoint(WEIGHTS))
    assert _variables(collisions["grad/weight"]) == [None] * 3


def test_two_families_written_alike_that_name_different_variables_leave_the_gradient_unnamed(tmp_path):
    # `ema` and `weight` are written in the same places as the gradients, with the same sizes, but name different
    # variables; `grad/weight` holds the word `weight`, so `weight` decides, while `grad/update` (whose words hold
    # neither) has no way to choose and stays unnamed.
    emas = {f"{k}.ema": w + 100 for k, w in enumerate(WEIGHTS.values())}
    step = [
        w
        for k, name in enumerate(WEIGHTS)
        for w in (
            ("weight", WEIGHTS[name]),
            ("ema", emas[f"{k}.ema"]),
            ("grad/weight", GRADS[name]),
            ("grad/update", GRADS[name] * 2),
        )
    ]
    collisions, _ = _report(tmp_path, [step] * 2, _checkpoint({**WEIGHTS, **emas}))
    assert _variables(collisions["ema"]) == list(emas)
    assert _variables(collisions["grad/weight"]) == list(WEIGHTS)
    update = collisions["grad/update"]["lanes"]
    assert [lane["variable"] for lane in update] == [None] * 3
    assert "which name different variables" in update[0]["evidence"]


# --- restarts -------------------------------------------------------------------------------------------------


def _steps_run(tmp_path: Path, steps: list[int], sizes: list[int]) -> list:
    events = [histogram_event(step, "0.weight", RNG.normal(size=size), legacy=True) for step in steps for size in sizes]
    write_events(str(tmp_path / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    return find_collisions(index.runs["."])


def test_steps_that_go_back_and_are_written_again_are_a_restart(tmp_path):
    (found,) = _steps_run(tmp_path, [*range(0, 8), *range(5, 10)], [20])
    assert found.restarts == ((7, 5),)
    assert (found.first_step, found.last_step, found.writers) == (5, 7, 2)


def test_layers_written_at_each_step_are_no_restart(tmp_path):
    (found,) = _steps_run(tmp_path / "layers", list(range(4)), [20, 20])
    assert found.restarts == ()
    # A loop that writes each layer's whole history in turn also goes back, but lanes of other sizes are other
    # variables, not one written twice.
    events = [histogram_event(s, "w", RNG.normal(size=n), legacy=True) for n in (20, 12) for s in range(4)]
    write_events(str(tmp_path / "history" / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path / "history"))
    index.reload()
    (found,) = find_collisions(index.runs["."])
    assert found.restarts == ()


def test_a_restart_names_both_lanes_after_the_one_variable(tmp_path):
    weight = RNG.normal(size=(4, 5))
    events = [histogram_event(s, "0.weight", weight + 0.01 * s, legacy=True) for s in [*range(0, 6), *range(3, 8)]]
    events.append(histogram_event(8, "0.weight", weight, legacy=True))
    write_events(str(tmp_path / "events.out.tfevents.1.host"), events)
    index = LogdirIndex(str(tmp_path))
    index.reload()
    report = build_run_report(index.runs["."], _checkpoint({"0.weight": weight}))
    (collision,) = report["collisions"]
    assert collision["kind"] == "same-step" and collision["cause"] == "restart"
    assert _variables(collision) == ["0.weight", "0.weight"]
    assert "restart at step 5 (the run went back to step 3)" in collision["lanes"][1]["evidence"]
    assert "purge_step=3" in collision["fix"]


# --- writers --------------------------------------------------------------------------------------------------


def test_the_writer_mark_of_the_first_event_tells_torch_from_tensorboardx(tmp_path):
    # torch.utils.tensorboard writes through TensorBoard's EventFileWriter, whose first event carries this mark
    # (tensorboard/summary/writer/event_file_writer.py); tensorboardX's own writer leaves `source_metadata` empty.
    mark = event_pb2.SourceMetadata(writer="tensorboard.summary.writer.event_file_writer")
    first = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2", source_metadata=mark)
    weight = histogram_event(0, "weight", np.ones(3), legacy=True)
    with open(tmp_path / "torch.tfevents", "wb") as f:
        writer = RecordWriter(f)
        for event in (first, weight):
            writer.write(event.SerializeToString())
    write_events(str(tmp_path / "tbx" / "events.out.tfevents.1.host"), [weight])
    index = LogdirIndex(str(tmp_path))
    index.reload()
    (torch_file,) = index.runs["."].files
    (tbx_file,) = index.runs["tbx"].files
    assert torch_file.origin is not None and torch_file.origin.writer == mark.writer
    assert torch_file.origin.file_version == "brain.Event:2"
    assert writer_of(torch_file, "histo") == TORCH
    assert writer_of(tbx_file, "histo") == TENSORBOARDX


def test_the_origin_is_read_once_from_the_first_record_only(tmp_path):
    path = tmp_path / "events.out.tfevents.1.host"
    write_events(str(path), [histogram_event(0, "w", np.ones(3))])
    index = LogdirIndex(str(tmp_path))
    index.reload()
    (f,) = index.runs["."].files
    first = f.origin
    later = event_pb2.Event(file_version="brain.Event:9", source_metadata=event_pb2.SourceMetadata(writer="other"))
    write_events(str(path), [later, histogram_event(1, "w", np.ones(3))], append=True)
    index.reload()
    assert f.origin == first and first is not None and first.file_version == "brain.Event:2"


# --- names that tell layers apart -----------------------------------------------------------------------------


def _shared(path: str, key: str) -> Variable:
    return Variable(path, key, path, (3,), "float32", path.rsplit("/", 1)[0], False, lambda: np.zeros(3))


def test_layers_sharing_a_name_are_shown_by_the_shortest_stored_path_that_tells_them_apart():
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    shared = [_shared("two_tower/linear/w", f"model/trunk/{k}/w{suffix}") for k in range(3)]
    alone = _shared("head/w", f"model/head/w{suffix}")
    shown = ShownNames(Checkpoint("ckpt-1", "tf-checkpoint", (*shared, alone), None))
    assert [shown.path(v) for v in shared] == ["trunk/0/w", "trunk/1/w", "trunk/2/w"]
    assert [shown.layer(v) for v in shared] == ["trunk/0", "trunk/1", "trunk/2"]
    assert (shown.path(alone), shown.layer(alone)) == ("head/w", "head")


def test_keras3_blocks_sharing_a_name_are_shown_by_their_weights_file_groups():
    blocks = [
        Variable(
            "encoder/encoder_block/proj/vars/0",
            f"blocks/{b}/proj/vars/0",
            None,
            (4, 4),
            "float32",
            "encoder/encoder_block/proj",
            False,
            lambda: np.zeros((4, 4)),
        )
        for b in ("encoder_block", "encoder_block_1")
    ]
    shown = ShownNames(Checkpoint("model.weights.h5", "keras-weights-h5", tuple(blocks), None))
    assert [shown.path(v, "kernel") for v in blocks] == ["encoder_block/proj/kernel", "encoder_block_1/proj/kernel"]
