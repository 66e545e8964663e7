"""scan() on logs from real writers: every collision they produce is found, and clean logging reports none."""

import pytest

from tb_varscope_plugin import scan

# scenario -> {(run, tag, kind, writers, steps affected)}; the scenarios' docstrings say what each writer logs.
EXPECTED = {
    "tfkeras_seed": {("train", "my_variable1_0/histogram", "same-step", 3, 3)},
    "tfkeras_fixed": set(),
    "keras3_vname": {(".", "kernel", "same-step", 3, 3), (".", "bias", "same-step", 3, 3)},
    "keras3_vpath": set(),
    "keras3_callback": set(),
    "keras313_kernel": {
        ("train", "kernel/histogram", "same-step", 3, 3),
        ("train", "bias/histogram", "same-step", 3, 3),
    },
    "torch_leaf": {(".", "weight", "same-step", 3, 3), (".", "bias", "same-step", 3, 3)},
    "torch_full": set(),
    "tbx_leaf": {(".", "kernel", "same-step", 3, 3), (".", "bias", "same-step", 3, 3)},
    "resumed": {(".", "dense/kernel", "cross-file", 2, 2), (".", "dense/bias", "cross-file", 2, 2)},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_scan_finds_exactly_the_collisions_the_writer_made(scenario, name):
    report = scan(str(scenario(name)))

    found = {
        (run["run"], c["tag"], c["kind"], c["writers"], c["steps"]) for run in report["runs"] for c in run["collisions"]
    }
    assert found == EXPECTED[name]
    assert report["summary"]["collisions"] == len(EXPECTED[name])
    assert all(not run["warnings"] for run in report["runs"])


@pytest.mark.slow
def test_a_tag_each_run_writes_once_per_step_is_clean(scenario):
    report = scan(str(scenario("multi_run")))

    assert [run["run"] for run in report["runs"]] == ["run_a", "run_b", "run_c"]
    assert report["summary"]["collisions"] == 0
    assert all(run["histogram_tags"] == 2 for run in report["runs"])


@pytest.mark.slow
def test_resumed_run_shows_both_files_at_the_shared_steps(scenario):
    (run,) = scan(str(scenario("resumed")))["runs"]
    kernel = next(c for c in run["collisions"] if c["tag"] == "dense/kernel")

    assert (kernel["first_step"], kernel["last_step"]) == (4, 5)
    assert len(kernel["files"]) == 2 and run["event_files"] == 2
    assert "resumed" in kernel["explanation"]
