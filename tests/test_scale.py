"""Report building grows linearly with runs, tags and groups: the work is counted (calls, comparisons), never timed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tb_varscope_plugin.analysis import groups


def _merged_into_all_pairs(path: str, paths: set[str]) -> str:
    """The definition merge_targets implements, compared pair by pair."""
    longer = [p for p in paths if p != path and (p.endswith("/" + path) or p.endswith("." + path))]
    return longer[0] if path and len(longer) == 1 else path


_SEGMENT = st.sampled_from(["a", "b", "dense", "my_layer", "sequential", "fc"])


@given(
    st.sets(
        st.lists(_SEGMENT, max_size=4).flatmap(
            lambda parts: st.sampled_from(["/", "."]).map(lambda sep: sep.join(parts))
        ),
        max_size=12,
    )
)
def test_merge_targets_agrees_with_comparing_every_pair(paths):
    assert groups.merge_targets(paths) == {p: _merged_into_all_pairs(p, paths) for p in paths}


def test_merge_targets_looks_at_each_path_once_among_ten_thousand(monkeypatch):
    paths = {f"sequential/block_{i // 10}/dense_{i}" for i in range(10_000)} | {"dense_7", "block_3/dense_31"}
    seen = []
    tails = groups.path_tails
    monkeypatch.setattr(groups, "path_tails", lambda path: seen.append(path) or tails(path))
    into = groups.merge_targets(paths)
    assert len(seen) == len(paths)  # each path's tails listed once: no pass over all pairs
    assert into["dense_7"] == "sequential/block_0/dense_7"
    assert into["block_3/dense_31"] == "sequential/block_3/dense_31"
    assert into["sequential/block_0/dense_7"] == "sequential/block_0/dense_7"
