"""`tb-varscope split` on logs of real writers, read back by scan and by a real TensorBoard with its default loader."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest

from tb_varscope_plugin import scan
from tb_varscope_plugin.reading.events import histogram_values, parse_event
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.records import RecordReader
from tb_varscope_plugin.rewrite.plan import LANE
from tb_varscope_plugin.rewrite.split import SplitResult, split_logdir

pytestmark = pytest.mark.slow

# run -> {(old tag, lane): new tag}: each lane named after the variable behind it, in its writer's style.
EXPECTED_LANES = {
    "tfkeras_seed/train": {
        ("my_variable1_0/histogram", k): f"{layer}/my_variable1_0/histogram"
        for k, layer in enumerate(["my_layer", "my_layer_1", "my_layer_2"])
    },
    "keras3_vname": {
        (leaf, k): f"sequential/{dense}/{leaf}"
        for leaf in ("kernel", "bias")
        for k, dense in enumerate(["dense", "dense_1", "dense_2"])
    },
    "torch_leaf": {(leaf, k): f"{module}.{leaf}" for leaf in ("weight", "bias") for k, module in enumerate("024")},
}


@pytest.fixture(scope="module")
def split(scenario, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SplitResult]:
    """A logdir of the seed layer (tf-keras callback), a Keras 3 `v.name` loop, PyTorch leaf names (when torch is
    installed) and a resumed run, split into OUTDIR."""
    root = tmp_path_factory.mktemp("split-real")
    logdir = root / "logs"
    names = ["tfkeras_seed", "keras3_vname", "resumed"]
    if importlib.util.find_spec("torch") is not None:
        names.append("torch_leaf")
    for name in names:
        shutil.copytree(scenario(name), logdir / name)
    result = split_logdir(str(logdir), str(root / "out"))
    return logdir, root / "out", result


def _histogram_count(logdir: Path) -> int:
    index = LogdirIndex(str(logdir))
    index.reload()
    return sum(len(s.steps) for run in index.runs.values() for f in run.files for s in f.series.values())


def _other_records(path: Path) -> list[bytes]:
    reader = RecordReader(str(path))
    plugins: dict[str, str] = {}
    records = [p for block in reader.blocks() for p in block.payloads]
    found = [p for p in records if histogram_values(parse_event(p), plugins) is None]
    assert reader.damage is None and reader.pending == 0
    return found


def test_every_lane_gets_its_variables_name(split):
    _, _, result = split
    for run in result.runs:
        lanes = {(m.tag, m.lane): m.new_tag for m in run.moves if m.kind == LANE}
        assert lanes == EXPECTED_LANES.get(run.run, {}), run.run


def test_the_repaired_logdir_has_no_collision_and_every_value_and_record(split):
    logdir, out, _ = split
    report = scan(str(out))

    assert report["summary"]["collisions"] == 0
    assert all(not run["warnings"] for run in report["runs"])
    assert _histogram_count(out) == _histogram_count(logdir)
    files = sorted(p.relative_to(logdir) for p in logdir.rglob("*tfevents*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*tfevents*")) == files
    for name in files:
        assert _other_records(out / name) == _other_records(logdir / name), name


def test_the_checkpoints_come_along_and_still_name_the_lanes(split):
    logdir, out, _ = split
    before = {r["run"]: r["checkpoint"] for r in scan(str(logdir))["runs"]}
    after = {r["run"]: r["checkpoint"] for r in scan(str(out))["runs"]}
    for run, checkpoint in before.items():
        if checkpoint is None:
            assert after[run] is None
            continue
        assert after[run] is not None, run
        assert Path(after[run]["path"]).relative_to(out) == Path(checkpoint["path"]).relative_to(logdir)
        assert (after[run]["format"], after[run]["variables"]) == (checkpoint["format"], checkpoint["variables"])


def test_tensorboard_serves_each_former_lane_as_its_own_tag(split):
    from tensorboard_process import get_json, tensorboard

    logdir, out, result = split
    index = LogdirIndex(str(logdir))
    index.reload()
    # What each new tag must hold: the lane's values in LOGDIR, as TensorBoard's default loader decodes them.
    wanted: dict[tuple[str, str], list] = {}
    for run in result.runs:
        for move in run.moves:
            if move.kind == LANE:
                r = index.runs[run.run]
                refs = r.lane_refs(move.tag, move.lane)
                wanted[(run.run, move.new_tag)] = [[ref.wall_time, ref.step, r.decode(ref).tolist()] for ref in refs]
    assert len(wanted) == sum(len(lanes) for run, lanes in EXPECTED_LANES.items() if run in index.runs)
    with tensorboard(out, "--reload_interval", "1") as url:
        deadline = time.monotonic() + 120
        while True:
            tags = get_json(url, "data/plugin/histograms/tags")
            if all(tag in tags.get(run, {}) for run, tag in wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for (run, tag), values in wanted.items():
            served = get_json(url, "data/plugin/histograms/histograms", run=run, tag=tag)
            assert served == values, (run, tag)
        resumed = {t: get_json(url, "data/plugin/histograms/histograms", run="resumed", tag=t) for t in tags["resumed"]}
    # The resumed run: one continuous history under the tag, the older writer's overlapped steps beside it.
    assert [step for _, step, _ in resumed["dense/kernel"]] == list(range(10))
    assert [step for _, step, _ in resumed["dense/kernel/superseded"]] == [4, 5]
