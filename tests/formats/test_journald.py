from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.chunk import Chunk
from kubetrail.formats.journald import JournaldParser, _entries_fast
from tests.formats._node_helpers import NOW, check_fuzz, comparable, file_origin, mutations, parse_in_chunks

ENTRY = {
    "__CURSOR": "s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c;m=299a1f1c4;t=5ad8f3c4c0f2b;x=8c3e",
    "__REALTIME_TIMESTAMP": "1699999999123456",
    "__MONOTONIC_TIMESTAMP": "11169568196",
    "_BOOT_ID": "6c7c6013a8b34d5a8d6c7a0f8e1f2a3b",
    "PRIORITY": "6",
    "SYSLOG_FACILITY": "3",
    "_HOSTNAME": "ip-10-0-1-23",
    "SYSLOG_IDENTIFIER": "containerd",
    "_PID": "811",
    "_COMM": "containerd",
    "_SYSTEMD_UNIT": "containerd.service",
    "MESSAGE": 'time="2023-11-14T22:13:19Z" level=info msg="StartContainer"',
}


def line(**changes: object) -> bytes:
    entry = {**ENTRY, **changes}
    return orjson.dumps({k: v for k, v in entry.items() if v is not ...}) + b"\n"


def parse(data: bytes) -> list[dict]:
    return JournaldParser().parse(Chunk(file_origin("journald", 0, "journal"), data), NOW).to_pylist()


def test_string_message() -> None:
    (row,) = parse(line())
    assert row["message"] == ENTRY["MESSAGE"]
    assert row["@timestamp"] == datetime(2023, 11, 14, 22, 13, 19, 123456, tzinfo=UTC)
    assert row["log.level"] == "info" and row["log.syslog.severity.code"] == 6
    assert row["log.syslog.facility.code"] == 3
    assert row["log.syslog.appname"] == "containerd.service"
    assert row["host.name"] == "ip-10-0-1-23"
    assert row["process.pid"] == 811
    assert row["event.dataset"] == "node" and row["event.module"] == "journald"
    assert orjson.loads(row["attributes"])["__CURSOR"] == ENTRY["__CURSOR"]
    assert row["event.parse_error"] is None


def test_priorities() -> None:
    data = b"".join(line(PRIORITY=str(p)) for p in range(8))
    levels = [r["log.level"] for r in parse(data)]
    assert levels == ["critical", "critical", "critical", "error", "warning", "info", "info", "debug"]


def test_byte_array_messages() -> None:
    data = (
        line(MESSAGE=list(b"\x1b[1mbold\x1b[0m")) + line(MESSAGE=list(b"bad \xff")) + line(MESSAGE=[1, 300])
    )
    ok, bad_utf8, not_bytes = parse(data)
    assert ok["message"] == "\x1b[1mbold\x1b[0m" and ok["event.parse_error"] is None
    assert bad_utf8["message"] == "bad \ufffd" and bad_utf8["event.parse_error"] == "invalid_utf8"
    assert not_bytes["event.parse_error"] == "bad_field" and not_bytes["message"] == "[1,300]"


def test_missing_and_bad_fields() -> None:
    data = (
        line(_HOSTNAME=..., _SYSTEMD_UNIT=..., SYSLOG_IDENTIFIER="kernel", _PID=...)
        + line(PRIORITY="9", __REALTIME_TIMESTAMP="yesterday")
        + line(MESSAGE=None)
    )
    kernel, bad, no_message = parse(data)
    assert kernel["host.name"] == "node-1"  # the origin's node when _HOSTNAME is missing
    assert kernel["log.syslog.appname"] == "kernel"
    assert kernel["process.pid"] is None
    assert bad["event.parse_error"] == "bad_timestamp,bad_field" and bad["@timestamp"] == NOW
    assert "PRIORITY is not 0-7" in bad["error.message"] and bad["log.level"] is None
    assert no_message["message"] is None and no_message["event.parse_error"] is None


def test_out_of_range_timestamp_flagged() -> None:
    (row,) = parse(line(__REALTIME_TIMESTAMP=str(2**62)))
    assert row["event.parse_error"] == "bad_timestamp" and row["@timestamp"] == NOW


def test_invalid_json_lines_kept() -> None:
    rows = parse(line() + b'{"MESSAGE": "cut\n[1, 2]\n\n')
    assert [r["event.parse_error"] for r in rows] == [None, "bad_json", "bad_json", "empty_line"]
    assert rows[1]["message"] == '{"MESSAGE": "cut' and rows[2]["message"] == "[1, 2]"


def test_klog_messages_from_the_kubelet_unit() -> None:
    msg = 'E1114 22:13:19.500000    2211 pod_workers.go:1298] "Error syncing pod" pod="default/web"'
    (row,) = parse(line(MESSAGE=msg, _SYSTEMD_UNIT="kubelet.service", SYSLOG_IDENTIFIER="kubelet"))
    assert row["message"] == "Error syncing pod"
    assert row["log.level"] == "error"
    assert row["log.origin.file.name"] == "pod_workers.go"
    assert row["@timestamp"] == datetime(2023, 11, 14, 22, 13, 19, 500000, tzinfo=UTC)
    attributes = orjson.loads(row["attributes"])
    assert attributes["klog"] == {"pod": "default/web"}
    assert attributes["_BOOT_ID"] == ENTRY["_BOOT_ID"]


def test_controlplane_units() -> None:
    (row,) = parse(line(_SYSTEMD_UNIT="kube-apiserver.service"))
    assert row["event.dataset"] == "controlplane"


_entries = st.builds(
    lambda msg, prio, ts: line(MESSAGE=msg, PRIORITY=prio, __REALTIME_TIMESTAMP=ts)[:-1],
    st.text(max_size=40) | st.lists(st.integers(0, 255), max_size=20),
    st.sampled_from(["0", "3", "6", "7", "x", ""]),
    st.integers(0, 2**62).map(str),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_entries | st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.data()
)
def test_lossless_under_any_chunk_split(lines: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(entry + b"\n" for entry in lines)
    cuts = data.draw(st.lists(st.integers(0, max(len(blob), 1)), max_size=6))
    whole = parse_in_chunks(JournaldParser, blob, [], "journald")
    assert comparable(parse_in_chunks(JournaldParser, blob, cuts, "journald")) == comparable(whole)
    assert len(whole) == len(lines)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300) | st.lists(_entries | mutations(_entries), max_size=5).map(b"\n".join))
def test_fuzz_never_raises(data: bytes) -> None:
    check_fuzz(JournaldParser, data, "journald")


def test_fast_and_general_paths_agree() -> None:
    """A chunk of plain string entries takes the Arrow reader; one byte-array MESSAGE sends the same
    entries through DuckDB: the shared rows must come out the same."""
    entries = [
        {
            "MESSAGE": 'caf\u00e9 \\ "q"\n',
            "PRIORITY": "3",
            "__REALTIME_TIMESTAMP": "1778065200000000",
            "_SYSTEMD_UNIT": "kubelet.service",
            "_HOSTNAME": "n1",
            "_PID": "7",
            "OTHER": [1, 2],
        },
        {"MESSAGE": "plain", "SYSLOG_IDENTIFIER": "sshd"},
    ]
    lines = [orjson.dumps(e) for e in entries]
    assert _entries_fast(pa.array([x.decode() for x in lines])) is not None
    odd = orjson.dumps({"MESSAGE": [104, 105]})
    assert _entries_fast(pa.array([x.decode() for x in [*lines, odd]])) is None
    fast = JournaldParser().parse(Chunk(file_origin("journald"), b"\n".join(lines) + b"\n"), NOW).to_pylist()
    slow = (
        JournaldParser()
        .parse(Chunk(file_origin("journald"), b"\n".join([*lines, odd]) + b"\n"), NOW)
        .to_pylist()
    )
    keep = (
        "message",
        "@timestamp",
        "log.level",
        "log.syslog.appname",
        "host.name",
        "process.pid",
        "attributes",
    )
    assert [tuple(r[k] for k in keep) for r in fast] == [tuple(r[k] for k in keep) for r in slow[:2]]
    assert slow[2]["message"] == "hi"
