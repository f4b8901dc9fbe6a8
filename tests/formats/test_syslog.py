from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.chunk import Chunk, Origin
from kubetrail.formats.syslog import SyslogParser, parse_syslog_messages
from tests.formats._node_helpers import NOW, check_fuzz, comparable, file_origin, mutations, parse_in_chunks


def parse(data: bytes, now: datetime = NOW) -> list[dict]:
    return SyslogParser().parse(Chunk(file_origin("syslog", 0, "/var/log/syslog"), data), now).to_pylist()


def test_rfc5424_examples() -> None:
    data = (
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "\ufeff'su root' failed on /dev/pts/8\n"
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        "%% It's time to make the do-nuts.\n"
    ).encode()
    first, second = parse(data)
    assert first["@timestamp"] == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert first["host.name"] == "mymachine.example.com"
    assert first["log.syslog.appname"] == "su"
    assert first["log.syslog.facility.code"] == 4 and first["log.syslog.severity.code"] == 2
    assert first["log.level"] == "critical"
    assert first["message"] == "'su root' failed on /dev/pts/8"  # BOM dropped
    assert orjson.loads(first["attributes"]) == {"log.syslog.msgid": "ID47"}
    assert first["process.pid"] is None and first["event.parse_error"] is None
    assert second["@timestamp"] == datetime(2003, 8, 24, 12, 14, 15, 3, tzinfo=UTC)
    assert second["process.pid"] == 8710
    assert second["log.level"] == "info" and second["log.syslog.facility.code"] == 20
    assert second["attributes"] is None


def test_rfc5424_structured_data() -> None:
    line = (
        b'<165>1 2003-10-11T22:14:15.003Z host evntslog worker-7 ID47 [exampleSDID@32473 iut="3" '
        b'eventSource="Application" eventID="1011"][examplePriority@32473 class="high" q="a\\"b\\]c\\\\"]'
        b" An application event\n"
    )
    (row,) = parse(line)
    assert row["message"] == "An application event"
    assert orjson.loads(row["attributes"]) == {
        "log.syslog.msgid": "ID47",
        "log.syslog.procid": "worker-7",
        "log.syslog.structured_data": {
            "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
            "examplePriority@32473": {"class": "high", "q": 'a"b]c\\'},
        },
    }


def test_rfc5424_without_message_and_nil_values() -> None:
    (row,) = parse(b"<14>1 - - - - - -\n")
    assert row["event.parse_error"] is None
    assert row["message"] == "" and row["host.name"] == "node-1"  # nil HOSTNAME -> the origin's node
    assert row["@timestamp"] == NOW


def test_rfc3164_variants() -> None:
    data = (
        b"<13>Feb  5 17:32:18 10.0.0.99 myapp[123]: Use the BFG!\n"
        b"Nov 27 05:33:19 node-1 kubelet[2211]: I1127 05:33:19.1 2211 x.go:1] hi\n"
        b"Dec 31 23:59:59 node-2 systemd: Started x\n"
        b"2024-03-01T10:00:00.123456+01:00 node-3 sshd[99]: Accepted publickey\n"
        b"Mar  1 10:00:00 node-4 no tag here\n"
    )
    rows = parse(data, datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert [r["event.parse_error"] for r in rows] == [None] * 5
    assert rows[0]["@timestamp"] == datetime(2027, 2, 5, 17, 32, 18, tzinfo=UTC)
    assert (rows[0]["log.syslog.facility.code"], rows[0]["log.syslog.severity.code"]) == (1, 5)
    assert (rows[0]["log.syslog.appname"], rows[0]["process.pid"], rows[0]["host.name"]) == (
        "myapp",
        123,
        "10.0.0.99",
    )
    assert rows[1]["message"] == "I1127 05:33:19.1 2211 x.go:1] hi"
    assert rows[1]["@timestamp"] == datetime(2026, 11, 27, 5, 33, 19, tzinfo=UTC)
    assert rows[1]["log.level"] is None and rows[1]["log.syslog.facility.code"] is None
    assert rows[2]["@timestamp"] == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)  # across New Year
    assert rows[2]["log.syslog.appname"] == "systemd" and rows[2]["message"] == "Started x"
    assert rows[3]["@timestamp"] == datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    assert rows[4]["log.syslog.appname"] is None and rows[4]["message"] == "no tag here"


def test_bad_input_flagged() -> None:
    data = b"<999>Feb  5 17:32:18 h app: big pri\n<13>Feb 30 17:32:18 h app: no such day\njunk\n\n"
    rows = parse(data)
    assert [r["event.parse_error"] for r in rows] == ["bad_pri", "bad_timestamp", "bad_format", "empty_line"]
    assert rows[0]["message"] == "big pri" and rows[0]["log.syslog.facility.code"] is None
    assert rows[1]["@timestamp"] == NOW and rows[1]["message"] == "no such day"
    assert rows[2]["message"] == "junk"


def test_dataset_depends_on_the_source() -> None:
    assert parse(b"<13>Feb  5 17:32:18 h app: x\n")[0]["event.dataset"] == "node"
    origin = Origin(node="recv", source="syslog", receiver="syslog-udp", batch_id="b1")
    out = parse_syslog_messages(pa.array(["<13>Feb  5 17:32:18 h app: x"]), origin, NOW)
    assert out.column("event.dataset").to_pylist() == ["syslog"]


def test_parse_syslog_messages() -> None:
    origin = Origin(node="recv", source="syslog", receiver="syslog-tcp", batch_id="b7", offset=10)
    messages = pa.array(
        [
            b"<14>1 2024-01-01T00:00:00Z h a - - - line one\nline two\n",
            b"<13>Jan  1 00:00:00 h t: x\r\n",
            None,
            b"\xff",
        ]
    )
    out = parse_syslog_messages(messages, origin, NOW).to_pylist()
    prefix = origin.id_prefix()
    assert [r["event.id"] for r in out] == [f"{prefix}-{i}" for i in (10, 11, 12, 13)]
    assert out[0]["message"] == "line one\nline two"
    assert out[1]["message"] == "x"
    assert out[2]["event.parse_error"] == "empty_line"
    assert (
        out[3]["event.parse_error"] == "bad_format,invalid_utf8"
        and "1 invalid byte" in out[3]["error.message"]
    )
    with_offsets = parse_syslog_messages(messages[:2], origin, NOW, offsets=pa.array([0, 57]))
    assert with_offsets.column("event.id").to_pylist() == [f"{prefix}-0", f"{prefix}-57"]


_line5424 = st.builds(
    lambda pri, host, msg: f'<{pri}>1 2024-05-05T10:00:00.5Z {host} app 12 ID1 [a@1 k="v"] {msg}'.encode(),
    st.integers(0, 191),
    st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30),
)
_line3164 = st.builds(
    lambda mon, day, msg: f"{mon} {day:2d} 01:02:03 host tag[9]: {msg}".encode(),
    st.sampled_from(["Jan", "Feb", "Mar", "Dec"]),
    st.integers(1, 28),
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30),
)
_valid = _line5424 | _line3164


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_valid | st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=10), st.data())
def test_lossless_under_any_chunk_split(lines: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(line + b"\n" for line in lines)
    cuts = data.draw(st.lists(st.integers(0, max(len(blob), 1)), max_size=6))
    whole = parse_in_chunks(SyslogParser, blob, [], "syslog")
    assert comparable(parse_in_chunks(SyslogParser, blob, cuts, "syslog")) == comparable(whole)
    assert len(whole) == len(lines)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300) | st.lists(_valid | mutations(_valid), max_size=5).map(b"\n".join))
def test_fuzz_never_raises(data: bytes) -> None:
    check_fuzz(SyslogParser, data, "syslog")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=60) | mutations(_valid), max_size=8))
def test_fuzz_framed_messages(messages: list[bytes]) -> None:
    origin = Origin(node="recv", source="syslog", receiver="syslog-tcp", batch_id="b")
    out = parse_syslog_messages(pa.array(messages, pa.binary()), origin, NOW)
    assert out.num_rows == len(messages)
    assert "internal_error" not in out.column("event.parse_error").to_pylist()


_sd_name = st.text(alphabet="abcXYZ09@._-\\", min_size=1, max_size=6)
_sd_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=12
).map(lambda v: v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]"))
_sd_element = st.builds(
    lambda sid, params: "[" + sid + "".join(f' {k}="{v}"' for k, v in params) + "]",
    _sd_name,
    st.lists(st.tuples(_sd_name, _sd_value), max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_sd_element, min_size=1, max_size=3).map("".join), min_size=1, max_size=5))
def test_structured_data_kernels_match_the_sql(sds: list[str]) -> None:
    """The Arrow-kernel SD decoder gives the same JSON as the SQL it replaced (kept for odd rows)."""
    from kubetrail.formats import _duck
    from kubetrail.formats._sd import structured_data_json
    from kubetrail.formats.syslog import _SD_ELEMENT, _SD_ESCAPE, _SD_PARAM, _SD_SQL

    arr = pa.array(sds, pa.string())
    params = {"element": _SD_ELEMENT, "param": _SD_PARAM, "escape": _SD_ESCAPE}
    expected = _duck.run(_SD_SQL, params, t=pa.table({"sd": arr}))["sd"].to_pylist()
    got = structured_data_json(arr).to_pylist()
    for sd, want, have in zip(sds, expected, got, strict=True):
        if have is None:  # control bytes: the caller uses the SQL for these
            assert any(ord(c) < 0x20 for c in sd)
            continue
        assert orjson.loads(have) == orjson.loads(want), sd
