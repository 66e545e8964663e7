"""`last_ref`, which the report decodes for each lane, is the last of `lane_refs` in every lane layout."""

import numpy as np
from eventlogs import histogram_event, layered_run, write_events

from tb_varscope_plugin.reading.logdir import LogdirIndex


def test_last_ref_is_the_last_of_lane_refs(tmp_path):
    layered_run(str(tmp_path / "same_step" / "events.out.tfevents.1.a"), "kernel", [3, 5, 7], steps=4)
    layered_run(str(tmp_path / "same_step" / "events.out.tfevents.2.a"), "kernel", [3, 5], steps=6)
    values = np.linspace(0, 1, 10)
    resumed = tmp_path / "resumed"
    write_events(str(resumed / "events.out.tfevents.1.a"), [histogram_event(s, "w", values) for s in range(6)])
    write_events(str(resumed / "events.out.tfevents.2.a"), [histogram_event(s, "w", values) for s in range(3, 5)])
    index = LogdirIndex(str(tmp_path))
    index.reload()
    checked = 0
    for run in index.runs.values():
        for tag in run.histogram_tags():
            for lane in range(run.lane_count(tag)):
                assert run.last_ref(tag, lane) == run.lane_refs(tag, lane)[-1]
                checked += 1
    assert checked == 3 + 2
    assert index.runs["same_step"].last_ref("kernel", 5) is None
