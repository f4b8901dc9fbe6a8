from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.store import Store
from kubetrail.store.tokens import _with_column as with_column
from kubetrail.store.tokens import (
    build_token_index,
    distinct,
    hash_strings,
    needle_hashes,
    needle_tokens,
    token_hashes,
    tokens_of,
)
from tests.store.conftest import make_batch

TEXT = st.text(alphabet=st.sampled_from(list('ab1 .:-/=_é"Z')), max_size=30)


def test_tokens_of_ip_port_and_uuid() -> None:
    assert tokens_of("x=10.1.2.3:8080") == sorted(
        {"x", "10", "1", "2", "3", "8080", "10.1", "1.2", "2.3", "3:8080", "10.1.2", "1.2.3", "2.3:8080"}
    )
    assert "3f2a-99bc" in tokens_of("uid=3F2A-99bc")  # lower-cased


def test_substring_needle_drops_partial_edges() -> None:
    assert needle_tokens("10.1.2.3", substring=True) == ["1", "1.2", "2"]
    assert needle_tokens(".2.", substring=True) == ["2"]


def test_hash_is_stable_across_slices_and_types() -> None:
    a = pa.array(["zz", "hello", None])
    assert hash_strings(a.slice(1, 1))[0] == hash_strings(pa.array(["hello"], pa.large_string()))[0]
    # a fixed value: stored filters depend on it never changing
    assert int(hash_strings(pa.array(["kubetrail"]))[0]) == int(hash_strings(pa.array(["kubetrail"]))[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), max_size=12))
def test_vectorized_tokens_equal_reference(values: list[str | None]) -> None:
    expected: set[str] = set()
    for v in values:
        if v:
            expected.update(tokens_of(v))
    want = distinct(with_column(hash_strings(pa.array(sorted(expected), pa.string())), "message"))
    got = token_hashes(pa.array(values, pa.string()), "message")
    assert np.array_equal(np.sort(want), got)


@settings(max_examples=80, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=10), st.data())
def test_bloom_has_no_false_negatives(values: list[str], data: st.DataObject) -> None:
    value = data.draw(st.sampled_from(values))
    start = data.draw(st.integers(0, len(value)))
    end = data.draw(st.integers(start, len(value)))
    needle = value[start:end]
    bloom = build_token_index([token_hashes(pa.array(values), "message")], 0)
    # substring semantics: any substring of a stored value passes
    assert bloom.contains_all(needle_hashes([("message", needle)], substring=True))
    # token semantics: a whole value passes
    assert bloom.contains_all(needle_hashes([("message", value)]))


def test_bloom_rejects_absent_tokens() -> None:
    values = pa.array([f"request {i} from 10.0.{i % 250}.{i % 7}" for i in range(5000)])
    bloom = build_token_index([token_hashes(values, "message")], 0, bits_per_key=10)
    misses = sum(bloom.contains_all(needle_hashes([("message", f"zz{i}q")])) for i in range(2000))
    assert misses < 60  # about 1 % false positives
    assert bloom.contains_all(needle_hashes([("message", "10.0.3.3")]))
    assert not bloom.contains_all(needle_hashes([("source.ip", "10.0.3.3")]))  # per column


def test_a_whole_segment_filter_from_an_older_catalog_still_prunes(tmp_path: Path) -> None:
    """Catalog rows written before block filters (``block_rows`` NULL) read as one-block indexes."""
    store = Store(tmp_path / "s")
    store.append(make_batch(300, span_ns=10**9))  # one hour: one segment
    [seg] = store.flush()
    hashes = token_hashes(pa.array(["zebra-unicorn 42"]), "message")
    whole = build_token_index([hashes], 0)
    with store.catalog.transaction() as db:
        db.execute(
            "UPDATE blooms SET num_bits = ?, k = ?, bits = ?, block_rows = NULL, sizes = NULL "
            "WHERE segment_id = ?",
            (int(whole.sizes[0]), whole.k, whole.bits, seg.id),
        )
    index = store.catalog.bloom(seg.id)
    assert index is not None and index.block_rows == 0 and index.num_blocks == 1
    assert index.contains_all(needle_hashes([("message", "zebra-unicorn")]))
    assert not index.contains_all(needle_hashes([("message", "absent-token-xyz")]))
    store.close()
