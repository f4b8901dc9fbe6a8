"""The stored form: every rewrite gives the rows back exactly, through Arrow and through SQL."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.chunk import FileIdentity, Origin, file_chunks
from kubetrail.formats.dispatch import Parsing
from kubetrail.schema import SCHEMA, conform
from kubetrail.simulate import SimulationOptions, simulate_batch
from kubetrail.simulate.timefmt import NS, parse_start
from kubetrail.store import Store, StoreConfig
from kubetrail.store.codec import CODEC_COLUMN, MARK, REWRITES, decode, decode_sql, encode
from kubetrail.store.engine import segment_scan_sql
from kubetrail.store.segments import read_segment, write_parquet

SIM = SimulationOptions(nodes=2, hours=0.05, seed=11, start="2026-03-01T10:00:00Z")
SOURCES = {
    "/var/log/pods/": "container",
    "/var/log/kubernetes/audit/": "audit",
    "/var/log/kubelet.log": "klog",
}


@pytest.fixture(scope="module")
def cluster_rows(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """A simulated cluster's log files parsed by the server's Parsing stage."""
    root = tmp_path_factory.mktemp("codec") / "sim"
    simulate_batch(root, SIM)
    now = datetime.fromtimestamp((parse_start(SIM.start) + int(SIM.hours * 3600 * NS)) / NS, UTC)
    parsing, batches = Parsing(), []
    for inode, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())):
        node, _, inner = str(path.relative_to(root)).partition("/")
        source = next((s for prefix, s in SOURCES.items() if ("/" + inner).startswith(prefix)), "syslog")
        origin = Origin(node=node, source=source, path="/" + inner, file=FileIdentity(1, inode + 1, "f"))
        batches += [b for chunk in file_chunks(path, origin) if (b := parsing.parse(chunk, now)).num_rows]
    return pa.Table.from_batches(batches).combine_chunks()


def _codes(table: pa.Table, column: str) -> Counter[int]:
    shift = {"message": 0, "attributes": 4, "kubernetes.audit.stageTimestamp": 8}[column]
    return Counter(((v >> shift) & 15) for v in table.column(CODEC_COLUMN).to_pylist())


def test_parsed_cluster_rows_round_trip_and_shrink(cluster_rows: pa.Table, tmp_path: Path) -> None:
    stored = encode(cluster_rows)
    assert decode(stored).equals(cluster_rows)
    # every rewrite applies to the lines it is made for: access / audit / time references in
    # message, times in attributes, the audit stage timestamp
    assert {1, 2, 3} <= set(_codes(stored, "message"))
    assert _codes(stored, "attributes")[1] > 0
    assert _codes(stored, "kubernetes.audit.stageTimestamp")[1] > 0
    plain = write_parquet(cluster_rows, tmp_path / "plain.parquet", 9, 16384)
    small = write_parquet(stored, tmp_path / "stored.parquet", 9, 16384)
    assert small < 0.9 * plain
    # the query engine's scan gives the same rows back, in any session time zone
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    got = con.sql(segment_scan_sql([str(tmp_path / "stored.parquet")])).to_arrow_table()
    assert got.column_names == cluster_rows.column_names
    assert got.cast(cluster_rows.schema).equals(cluster_rows)
    assert (
        read_segment(tmp_path / "stored.parquet", ["message"])
        .column(0)
        .equals(cluster_rows.column("message"))
    )


def test_store_searches_decoded_text(cluster_rows: pa.Table, tmp_path: Path) -> None:
    store = Store(tmp_path / "s", StoreConfig(flush_max_age_secs=3600))
    store.append(cluster_rows)
    store.flush()
    files = list((tmp_path / "s" / "segments").rglob("*.parquet"))
    assert all(CODEC_COLUMN in pq.read_schema(f).names for f in files)
    access = cluster_rows.filter(pc.is_valid(cluster_rows.column("url.original")))
    url = access.column("url.original")[0].as_py()
    want = pc.sum(pc.match_substring(cluster_rows.column("message"), url).cast(pa.int64())).as_py()
    hit = store.search(f'"{url}"', limit=10**6).table
    assert hit.num_rows == want and all(url in m for m in hit.column("message").to_pylist())
    assert CODEC_COLUMN not in hit.column_names and not any(
        MARK in m for m in hit.column("message").to_pylist()
    )
    streamed = pa.Table.from_batches(list(store.search_batches(f'"{url}"', limit=10**6)))
    assert streamed.column_names == hit.column_names
    assert sorted(streamed.column("message").to_pylist()) == sorted(hit.column("message").to_pylist())
    # an aggregation reads stored columns only; whole events come back decoded
    assert store.search("* | stats count() by http.request.method", limit=10**6).table.num_rows > 0
    store.close()


def test_codec_off_writes_columns_as_they_are(cluster_rows: pa.Table, tmp_path: Path) -> None:
    store = Store(tmp_path / "s", StoreConfig(flush_max_age_secs=3600, codec=False))
    store.append(cluster_rows.slice(0, 500))
    store.flush()
    (file,) = (tmp_path / "s" / "segments").rglob("*.parquet")
    assert CODEC_COLUMN not in pq.read_schema(file).names
    assert store.sql("SELECT count(*) AS n FROM logs").column("n")[0].as_py() == 500
    store.close()


_FIELDS = {f.name: f for f in SCHEMA}
_TEXT_COLUMNS = (
    "url.original",
    "user_agent.original",
    "source.ip",
    "http.request.method",
    "kubernetes.audit.verb",
)
_noise = st.text(
    alphabet=st.sampled_from(["a", "b", "1", "/", " ", '"', "=", MARK, "A", "B", "{", "}"]), max_size=8
)


def _array(name: str, values: list[Any]) -> pa.Array:
    return pa.array(values, pa.int64() if name.endswith(("Timestamp", "@timestamp")) else None).cast(
        _FIELDS[name].type
    )


@st.composite
def _rows(draw: st.DrawFn) -> pa.RecordBatch:
    """Rows whose message / attributes are made of other columns' values, markers and noise."""
    n = draw(st.integers(1, 12))
    cols: dict[str, list[Any]] = {
        c: draw(st.lists(st.none() | _noise, min_size=n, max_size=n)) for c in _TEXT_COLUMNS
    }
    cols["http.response.status_code"] = draw(
        st.lists(st.none() | st.integers(0, 999), min_size=n, max_size=n)
    )
    ts = [1_772_359_200 * NS + t for t in draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n))]
    cols["@timestamp"] = ts
    cols["kubernetes.audit.stageTimestamp"] = [draw(st.sampled_from([None, t, t + 1])) for t in ts]
    clf = [datetime.fromtimestamp(t // NS, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000") for t in ts]
    iso = [datetime.fromtimestamp(t / NS, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z" for t in ts]

    def text(i: int) -> str | None:
        values = [str(cols[c][i]) for c in cols if cols[c][i] is not None and c != "@timestamp"]
        pieces = st.sampled_from([*values, clf[i], iso[i]]) | _noise
        return draw(st.none() | st.lists(pieces, max_size=6).map("".join))

    def attributes(i: int) -> str | None:
        url = cols["url.original"][i] or ""
        line = f'ts={iso[i]} msg="{url}" k=v'
        logfmt = f'{{"ts":"{iso[i]}","msg":"{url}","k":"v","event.original":{json.dumps(line)}}}'
        return draw(st.sampled_from([text(i), f'{{"ts":"{iso[i]}"}}', logfmt, None]))

    cols["message"] = [text(i) for i in range(n)]
    cols["attributes"] = [attributes(i) for i in range(n)]
    return conform({name: _array(name, values) for name, values in cols.items()}, n)


@settings(max_examples=150, deadline=None)
@given(_rows())
def test_any_rows_round_trip(batch: pa.RecordBatch) -> None:
    table = pa.Table.from_batches([batch])
    stored = encode(table)
    assert decode(stored).equals(table)
    con = duckdb.connect()
    got = con.sql(f"SELECT {decode_sql(stored.column_names)} FROM stored").to_arrow_table()
    assert got.cast(table.schema).equals(table)


def test_rewrites_read_only_columns_no_rewrite_changes() -> None:
    rewritten = {r.column for r in REWRITES}
    assert not rewritten & {c for r in REWRITES for c in r.reads}
    assert all(1 <= r.code <= 15 for r in REWRITES)


def test_stored_form_is_stable() -> None:
    """The stored form is a file format: these bytes must decode the same way forever."""
    ts = 1_767_270_425_183_975_000  # 2026-01-01T12:27:05.183975Z
    line = "ts=2026-01-01T12:27:05.183Z level=info msg=done"
    access = '10.2.0.7 - - [01/Jan/2026:12:27:05 +0000] "GET /cart?id=42 HTTP/1.1" 200 5120 "-" "curl/8.5"'
    columns = {
        "@timestamp": [ts] * 3,
        "message": [access, "alice get pods shop/web -> 200", "done"],
        "http.request.method": ["GET", None, None],
        "url.original": ["/cart?id=42", None, None],
        "source.ip": ["10.2.0.7", None, None],
        "http.response.status_code": [200, None, None],
        "http.response.body.bytes": [5120, None, None],
        "user_agent.original": ["curl/8.5", None, None],
        "kubernetes.audit.verb": [None, "get", None],
        "kubernetes.audit.user.username": [None, "alice", None],
        "kubernetes.audit.objectRef.resource": [None, "pods", None],
        "kubernetes.audit.objectRef.namespace": [None, "shop", None],
        "kubernetes.audit.objectRef.name": [None, "web", None],
        "kubernetes.audit.responseStatus.code": [None, 200, None],
        "kubernetes.audit.stageTimestamp": [None, ts, None],
        "attributes": [
            None,
            None,
            '{"ts":"2026-01-01T12:27:05.183Z","level":"info","msg":"done","event.original":'
            + json.dumps(line)
            + "}",
        ],
    }
    table = pa.Table.from_batches([conform({k: _array(k, v) for k, v in columns.items()}, 3)])
    stored = encode(table)
    assert stored.column("message").to_pylist() == [
        '\x01D - - [\x01C] "\x01G \x01B HTTP/1.1" \x01F \x01E "-" "\x01A"',
        "\x01A \x01F \x01E \x01C/\x01B -> \x01G",
        "done",
    ]
    assert stored.column("attributes").to_pylist() == [
        None,
        None,
        '{"ts":"\x01M","level":"info","msg":"done","event.original":"ts=\x01M level=info msg=done"}',
    ]
    assert stored.column("kubernetes.audit.stageTimestamp").to_pylist() == [None, None, None]
    assert stored.column(CODEC_COLUMN).to_pylist() == [1, 2 | 1 << 8, 1 << 4]
    assert decode(stored).equals(table)
