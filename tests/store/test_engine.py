"""How the engine turns the token index's block ranges into scans (``merge_ranged_files``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubetrail.store.engine import merge_ranged_files, union_ranges

BLOCK = 100


def blocks(*starts: int) -> list[tuple[int, int]]:
    return [(s * BLOCK, s * BLOCK + BLOCK - 1) for s in starts]


def rows(ranges: list[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def test_union_ranges_merges_overlapping_and_adjacent() -> None:
    assert union_ranges([(10, 19), (0, 9), (30, 40), (35, 50), (52, 60)]) == [(0, 19), (30, 50), (52, 60)]
    assert union_ranges([]) == []


def test_files_needing_the_same_blocks_share_one_scan() -> None:
    ranged = {f"hour{h}.parquet": blocks(4, 13) for h in range(24)}
    [(files, ranges)] = merge_ranged_files(ranged, scan_cost_rows=3 * BLOCK)
    assert sorted(files) == sorted(ranged) and ranges == blocks(4, 13)


def test_files_far_apart_get_their_own_scans_when_a_scan_is_cheaper() -> None:
    ranged = {"a": blocks(0), "b": blocks(50), "c": blocks(0, 1)}
    scans = merge_ranged_files(ranged, scan_cost_rows=3 * BLOCK)
    # a and c overlap (1 extra block for a < one more scan); b would add a block to each of them
    assert sorted(sorted(files) for files, _ in scans) == [["a", "c"], ["b"]]
    # when scans cost nothing, every file reads only its own blocks
    alone = merge_ranged_files(ranged, scan_cost_rows=0)
    expected = sorted(([f], union_ranges(r)) for f, r in ranged.items())
    assert sorted(alone) == expected


ranged_files = st.dictionaries(
    st.from_regex(r"f[0-9]{1,3}", fullmatch=True),
    st.lists(st.integers(0, 40), min_size=1, max_size=6).map(lambda s: blocks(*sorted(set(s)))),
    min_size=1,
    max_size=20,
)


@given(ranged_files, st.integers(0, 10 * BLOCK))
def test_every_file_is_read_once_with_all_its_rows_and_no_dearer_than_alone(
    ranged: dict[str, list[tuple[int, int]]], scan_cost: int
) -> None:
    scans = merge_ranged_files(ranged, scan_cost_rows=scan_cost)
    listed = [f for files, _ in scans for f in files]
    assert sorted(listed) == sorted(ranged)  # each file in exactly one scan
    for files, union in scans:
        assert union == union_ranges(union)
        for f in files:  # the scan's ranges cover every row the file's blocks hold
            assert union_ranges([*union, *ranged[f]]) == union
    cost = sum(scan_cost + len(files) * rows(union) for files, union in scans)
    alone = sum(scan_cost + rows(r) for r in ranged.values())
    assert cost <= alone
