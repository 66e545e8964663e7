"""A walk keeps a local directory's listing while its times stand (`KeptListings`): an idle reload reads no
directory's names again, and whatever changes a directory's entries is seen as a walk from nothing sees it."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections import Counter

import numpy as np
import pytest
from eventlogs import histogram_event, write_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_varscope_plugin import filesystem
from tb_varscope_plugin.reading.logdir import LogdirIndex

EVENTS = "events.out.tfevents.1.x"


def _listed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the directories whose names are read (`filesystem.listing`, which `KeptListings` calls)."""
    listed: Counter[str] = Counter()
    real = filesystem.listing
    monkeypatch.setattr(filesystem, "listing", lambda path: listed.update([path]) or real(path))
    return listed


def _on_disk(index: LogdirIndex, kind: str = "ext4") -> None:
    """Takes the logdir's filesystem for one of `kind`, whatever holds the test's temporary files."""
    device = os.stat(index.logdir).st_dev
    index.listings.filesystems = lambda: {device: kind}


def _at(index: LogdirIndex, offset_ns: int) -> None:
    """Lists as if each listing were taken `offset_ns` after now, on a local disk's filesystem."""
    _on_disk(index)
    index.listings.clock = lambda: time.time_ns() + offset_ns


def _state(index: LogdirIndex) -> tuple:
    """What a reload leaves that a user sees: runs, their files and tags, values read, the tree, what the walk
    could not list or passed over (runs and files gone are said only by an index that saw them before)."""
    runs = {
        name: (run.path, [f.name for f in run.files], run.histogram_tags(), [f.reader.offset for f in run.files])
        for name, run in index.runs.items()
    }
    return runs, index.tree, index.unlisted, index.passed_over


def test_a_listing_is_kept_only_when_taken_long_enough_after_the_directory_last_changed(tmp_path, monkeypatch):
    write_events(str(tmp_path / "run" / EVENTS), [histogram_event(0, "t", np.arange(3.0))])
    changed = max(os.stat(tmp_path / "run").st_mtime_ns, os.stat(tmp_path / "run").st_ctime_ns)
    index = LogdirIndex(str(tmp_path))
    _on_disk(index)
    # Listed a moment too soon: an entry made in the same tick of the filesystem's clock would leave the times as
    # they are, so the next walk lists the directory again.
    index.listings.clock = lambda: changed + filesystem.SETTLED_NS - 1
    index.reload()
    listed = _listed(monkeypatch)
    index.reload()
    assert listed[str(tmp_path / "run")] == 1
    index.listings.clock = lambda: time.time_ns() + filesystem.SETTLED_NS
    index.reload()  # now listed late enough: kept
    listed.clear()
    index.reload()
    assert not listed


def test_an_idle_walk_lists_nothing_and_sees_a_file_grow(tmp_path, monkeypatch):
    path = tmp_path / "run" / EVENTS
    write_events(str(path), [histogram_event(0, "t", np.arange(3.0))])
    index = LogdirIndex(str(tmp_path))
    _at(index, 10 * filesystem.SETTLED_NS)
    index.reload()
    listed = _listed(monkeypatch)
    write_events(str(path), [histogram_event(1, "t", np.arange(3.0))], append=True)
    index.reload()
    assert not listed  # the file grew: its directory's entries did not change
    assert index.runs["run"].files[0].reader.offset == path.stat().st_size


def test_on_the_real_clock_a_settled_logdir_is_listed_once_and_still_shows_new_runs_and_files(tmp_path, monkeypatch):
    if filesystem.mounted_filesystems().get(os.stat(tmp_path).st_dev) not in filesystem.TIMED_FILESYSTEMS:
        pytest.skip("the test's temporary files are on a filesystem whose listings are not kept")
    write_events(str(tmp_path / "a" / EVENTS), [histogram_event(0, "t", np.arange(3.0))])
    time.sleep(filesystem.SETTLED_NS / 1e9 + 0.1)  # the logdir left alone, as between two steps of a slow job
    index = LogdirIndex(str(tmp_path))
    index.reload()
    listed = _listed(monkeypatch)
    index.reload()
    assert not listed
    write_events(str(tmp_path / "a" / "events.out.tfevents.2.x"), [histogram_event(1, "t", np.arange(3.0))])
    write_events(str(tmp_path / "b" / EVENTS), [histogram_event(0, "t", np.arange(3.0))])
    index.reload()
    assert {name: [f.name for f in run.files] for name, run in index.runs.items()} == {
        "a": [EVENTS, "events.out.tfevents.2.x"],
        "b": [EVENTS],
    }
    assert set(listed) == {str(tmp_path), str(tmp_path / "a"), str(tmp_path / "b")}


def test_a_filesystem_whose_directory_times_may_stand_still_is_listed_at_every_walk(tmp_path, monkeypatch):
    # A bucket mounted through FUSE (gcsfuse, s3fs, goofys) shows a directory's time of mounting whatever it holds.
    write_events(str(tmp_path / "run" / EVENTS), [histogram_event(0, "t", np.arange(3.0))])
    index = LogdirIndex(str(tmp_path))
    _at(index, 10 * filesystem.SETTLED_NS)
    _on_disk(index, "fuse.gcsfuse")
    index.reload()
    listed = _listed(monkeypatch)
    index.reload()
    assert listed == Counter({str(tmp_path): 1, str(tmp_path / "run"): 1})
    times = os.stat(tmp_path).st_atime_ns, os.stat(tmp_path).st_mtime_ns
    write_events(str(tmp_path / "new" / EVENTS), [histogram_event(0, "t", np.arange(3.0))])
    os.utime(tmp_path, ns=times)  # the mount's directory times do not move
    index.reload()
    assert sorted(index.runs) == ["new", "run"]


def test_mounted_filesystems_are_read_as_linux_lays_them_out():
    mountinfo = "\n".join(
        [
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard",
            "36 35 0:45 /data /mnt/my\\040logs rw,noatime shared:1 master:2 - fuse.gcsfuse bucket rw,user_id=0",
            "garbage",
            "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd",
        ]
    )
    assert filesystem.filesystem_types(mountinfo) == {
        os.makedev(254, 0): "ext4",
        os.makedev(0, 45): "fuse.gcsfuse",
        os.makedev(0, 37): "cgroup",
    }


@pytest.mark.skipif(not os.path.exists("/proc/self/mountinfo"), reason="Linux's mount table")
def test_this_processs_mounts_are_found_by_the_device_stat_gives():
    assert filesystem.mounted_filesystems()[os.stat("/proc").st_dev] == "proc"


_DIRECTORIES = ["a", "b", "a/c"]


@st.composite
def _changes(draw) -> list[tuple[str, str]]:
    kinds = ["add file", "append", "remove file", "add other file", "remove directory", "rename directory"]
    return draw(st.lists(st.tuples(st.sampled_from(kinds), st.sampled_from(_DIRECTORIES)), min_size=1, max_size=8))


def _apply(root, kind: str, directory: str, step: int) -> set[str]:
    """Makes one change; returns the directories whose entries it changed (which must be listed again)."""
    where = root / directory
    path = where / EVENTS
    if kind in ("add file", "append") and (kind == "add file" or path.exists()):
        grows = path.exists()
        up = [where, *where.parents]
        made = [p for p in up if not p.exists()]  # the directories the file's making creates
        holder = next(p for p in up if p.exists())  # the one that gains an entry (the file or a new directory)
        write_events(str(path), [histogram_event(step, "t", np.arange(3.0))], append=grows)
        return set() if grows else {str(holder), *map(str, made)}
    if kind == "remove file" and path.exists():
        path.unlink()
        return {str(where)}
    if kind == "add other file" and where.is_dir():
        (where / f"notes-{step}.txt").write_text("")
        return {str(where)}
    if kind == "remove directory" and where.is_dir():
        shutil.rmtree(where)
        return {str(where.parent)}
    if kind == "rename directory" and where.is_dir() and not (where.parent / f"{where.name}-{step}").exists():
        renamed = where.parent / f"{where.name}-{step}"
        where.rename(renamed)
        return {str(where.parent), *(str(p) for p in [renamed, *renamed.rglob("*")] if p.is_dir())}
    return set()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_changes())
def test_kept_listings_see_every_change_a_walk_from_nothing_sees(tmp_path_factory, changes):
    root = tmp_path_factory.mktemp("logdir")
    write_events(str(root / "a" / EVENTS), [histogram_event(0, "t", np.arange(3.0))])
    kept = LogdirIndex(str(root))
    _at(kept, 10 * filesystem.SETTLED_NS)
    kept.reload()
    # Each change's directories get times of their own, so that changes within one tick of the filesystem's clock
    # still move them (what SETTLED_NS guards against in earnest), and nothing else is touched.
    stamps = itertools.count(1_000_000_000 * 10**9, 10**9)
    with pytest.MonkeyPatch.context() as monkeypatch:
        listed = _listed(monkeypatch)
        for step, (kind, directory) in enumerate(changes, start=1):
            touched = _apply(root, kind, directory, step)
            for changed in touched:
                if os.path.isdir(changed):
                    stamp = next(stamps)
                    os.utime(changed, ns=(stamp, stamp))
            listed.clear()
            kept.reload()
            # Only the directories the change touched are listed again; every other listing is kept.
            assert set(listed) == {d for d in touched if os.path.isdir(d)}
            fresh = LogdirIndex(str(root))
            fresh.reload()
            assert _state(kept) == _state(fresh)
