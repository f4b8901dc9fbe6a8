from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.chunk import Chunk
from kubetrail.formats.klog import KlogParser, parse_klog_messages
from kubetrail.schema import from_pylist
from tests.formats._node_helpers import NOW, check_fuzz, comparable, file_origin, mutations, parse_in_chunks


def parse(data: bytes, now: datetime = NOW, path: str = "/var/log/kubelet.log") -> list[dict]:
    return KlogParser().parse(Chunk(file_origin("klog", 0, path), data), now).to_pylist()


def test_plain_line() -> None:
    (row,) = parse(b"I0505 17:59:40.692994   28133 file.go:70] Starting kubelet\n")
    assert row["@timestamp"] == datetime(2026, 5, 5, 17, 59, 40, 692994, tzinfo=UTC)
    assert row["log.level"] == "info"
    assert row["message"] == "Starting kubelet"
    assert row["process.pid"] == 28133
    assert row["log.origin.file.name"] == "file.go"
    assert row["log.origin.file.line"] == 70
    assert row["event.parse_error"] is None
    assert row["attributes"] is None


def test_severities() -> None:
    data = b"".join(f"{s}0505 17:59:40.000001 1 a.go:1] m\n".encode() for s in "IWEF")
    assert [r["log.level"] for r in parse(data)] == ["info", "warning", "error", "critical"]


def test_structured_line() -> None:
    line = (
        b'E0505 17:59:40.692994 1 kubelet.go:2100] "Error syncing pod, \\"skipping\\"" '
        b'pod="kube-system/coredns-5d78c9869d-abcde" podUID="1f2e" err="failed to \\"StartContainer\\"" '
        b'attempt=3 ratio=0.5 ready=false obj={"kind":"Pod"} weird=<nil>\n'
    )
    (row,) = parse(line)
    assert row["message"] == 'Error syncing pod, "skipping"'
    assert row["log.level"] == "error"
    assert orjson.loads(row["attributes"]) == {
        "pod": "kube-system/coredns-5d78c9869d-abcde",
        "podUID": "1f2e",
        "err": 'failed to "StartContainer"',
        "attempt": 3,
        "ratio": 0.5,
        "ready": False,
        "obj": {"kind": "Pod"},
        "weird": "<nil>",
    }


def test_structured_message_without_pairs() -> None:
    (row,) = parse(b'I0505 17:59:40.692994 1 a.go:1] "Just a message"\n')
    assert row["message"] == "Just a message"
    assert row["attributes"] is None


def test_year_inferred_across_new_year() -> None:
    # a December line received on 1 January belongs to the previous year
    (dec,) = parse(b"I1231 23:59:59.900000 1 a.go:1] m\n", datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert dec["@timestamp"] == datetime(2026, 12, 31, 23, 59, 59, 900000, tzinfo=UTC)
    # a 1 January line received on 31 December (node clock ahead) belongs to the next year
    (jan,) = parse(b"I0101 00:00:03.000000 1 a.go:1] m\n", datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC))
    assert jan["@timestamp"] == datetime(2027, 1, 1, 0, 0, 3, tzinfo=UTC)
    # 29 February exists only in a leap year: the nearest valid year wins
    (leap,) = parse(b"I0229 10:00:00.000000 1 a.go:1] m\n", datetime(2025, 3, 1, tzinfo=UTC))
    assert leap["@timestamp"] == datetime(2024, 2, 29, 10, tzinfo=UTC)


def test_bad_input_flagged() -> None:
    data = b"W1332 00:00:00.000000 1 a.go:2] impossible date\nnot klog at all\n\n\xff\xfeI0505\n"
    rows = parse(data)
    assert [r["event.parse_error"] for r in rows] == [
        "bad_timestamp",
        "bad_format",
        "empty_line",
        "bad_format,invalid_utf8",
    ]
    assert rows[0]["message"] == "impossible date" and rows[0]["log.level"] == "warning"
    assert rows[0]["@timestamp"] == NOW
    assert rows[1]["message"] == "not klog at all"
    assert "invalid_utf8" in rows[3]["error.message"]


def test_controlplane_dataset_from_the_path() -> None:
    (row,) = parse(b"I0505 17:59:40.692994 1 a.go:1] m\n", path="/var/log/kube-apiserver.log")
    assert row["event.dataset"] == "controlplane"


def test_parse_klog_messages_upgrades_container_rows() -> None:
    cri_time = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    batch = from_pylist(
        [
            {
                "message": 'E1231 23:59:59.500000       1 server.go:10] "Failed" err="x" n=2',
                "@timestamp": cri_time,
                "attributes": '{"stream_hint":"y","n":1}',
                "kubernetes.container.name": "kube-apiserver",
            },
            {"message": "plain text", "@timestamp": cri_time, "log.level": "info"},
            {"message": None, "@timestamp": cri_time},
        ]
    )
    out = parse_klog_messages(batch).to_pylist()
    assert out[0]["message"] == "Failed"
    assert out[0]["log.level"] == "error"
    assert out[0]["@timestamp"] == datetime(
        2026, 12, 31, 23, 59, 59, 500000, tzinfo=UTC
    )  # year from CRI time
    assert out[0]["log.origin.file.name"] == "server.go" and out[0]["process.pid"] == 1
    assert orjson.loads(out[0]["attributes"]) == {"stream_hint": "y", "n": 2, "err": "x"}
    assert out[1] == batch.to_pylist()[1]
    assert out[2] == batch.to_pylist()[2]


def test_parse_klog_messages_leaves_non_klog_batches_alone() -> None:
    batch = from_pylist([{"message": "hello"}])
    assert parse_klog_messages(batch) is batch


_klog_line = st.builds(
    lambda sev, mo, d, pid, msg, structured: (
        f"{sev}{mo:02d}{d:02d} 12:34:56.{pid:06d} {pid} f.go:{mo}] "
        + (f'"{msg}" k="v {msg}" n={pid}' if structured else msg)
    ).encode(),
    st.sampled_from("IWEF"),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(1, 999999),
    st.text(
        alphabet=st.characters(blacklist_characters='\n\r"\\', blacklist_categories=("Cs",)), max_size=30
    ),
    st.booleans(),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_klog_line | st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12), st.data()
)
def test_lossless_under_any_chunk_split(lines: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(line + b"\n" for line in lines)
    cuts = data.draw(st.lists(st.integers(0, max(len(blob), 1)), max_size=6))
    whole = parse_in_chunks(KlogParser, blob, [], "klog")
    split = parse_in_chunks(KlogParser, blob, cuts, "klog")
    assert comparable(split) == comparable(whole)
    assert len(whole) == len(lines)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300) | st.lists(_klog_line | mutations(_klog_line), max_size=5).map(b"\n".join))
def test_fuzz_never_raises(data: bytes) -> None:
    check_fuzz(KlogParser, data, "klog")


def test_structured_values_of_every_kind() -> None:
    line = (
        b'I0505 17:59:40.692994 1 a.go:1] "line\\nbreak \\u00e9" pods=["kube-system/a","b"] '
        b'go={Name:app Attempt:0} hex="\\x41" lead=01 neg=-2.5 t=true bare=a\\b  k2="x=1 y=2"\n'
        b'I0505 17:59:40.692994 1 a.go:1] "unterminated message k=v\n'
    )
    first, second = parse(line)
    assert first["message"] == "line\nbreak \u00e9"
    assert orjson.loads(first["attributes"]) == {
        "pods": ["kube-system/a", "b"],
        "go": "{Name:app Attempt:0}",  # not JSON: kept as a string
        "hex": '"\\x41"',  # a Go escape JSON lacks: the quoted token as a string
        "lead": "01",
        "neg": -2.5,
        "t": True,
        "bare": "a\\b",
        "k2": "x=1 y=2",
    }
    assert second["message"] == '"unterminated message k=v' and second["attributes"] is None
