from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.chunk import Chunk
from kubetrail.formats.dispatch import Parsing
from kubetrail.formats.nodelog import NodeLogParser
from kubetrail.formats.paths import node_file_format
from tests.formats._node_helpers import NOW, check_fuzz, comparable, file_origin, mutations, parse_in_chunks

KUBELET = (
    b'I0505 17:59:40.692994    2842 scope.go:117] "RemoveContainer" containerID="b27e"\n'
    b'E0505 17:59:41.000001    2842 pod_workers.go:1301] "Error syncing pod" err="boom" pod="shop/a"\n'
    b"Flag --pod-infra-container-image has been deprecated, will be removed in 1.27\n"
)
CONTAINERD = (
    b'time="2026-05-06T11:59:00.525256Z" level=info msg="StartContainer for \\"b8f\\" returns successfully"\n'
    b'time="2026-05-06T11:59:01Z" level=error msg="failed to pull" error="not found"\n'
    b"2026-05-06 11:59:02,123 WARNING plain line with a leading time\n"
    b"no time, no level here\n"
)


def parse_file(path: str, data: bytes) -> list[dict]:
    parsing = Parsing()
    batch = parsing.parse(Chunk(file_origin("file", 0, path), data), NOW)
    return batch.to_pylist()


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("/var/log/syslog", "syslog"),
        ("/var/log/syslog.1", "syslog"),
        ("/host/var/log/messages", "syslog"),
        ("/var/log/messages-20260101", "syslog"),
        ("/var/log/auth.log", "syslog"),
        ("/var/log/kubelet.log", "nodelog"),
        ("/var/log/containerd.log", "nodelog"),
        ("/var/log/kube-proxy.log", "nodelog"),
        ("/var/log/mysyslog-exporter.log", "nodelog"),
        (None, "nodelog"),
    ],
)
def test_node_file_format_by_path(path: str | None, fmt: str) -> None:
    assert node_file_format(path) == fmt


def test_file_source_is_dispatched_not_unknown() -> None:
    parsing = Parsing()
    assert parsing.choose(Chunk(file_origin("file", 0, "/var/log/syslog"), b"x\n"))[0] == "syslog"
    assert parsing.choose(Chunk(file_origin("file", 0, "/var/log/kubelet.log"), b"x\n"))[0] == "nodelog"
    rows = parse_file("/var/log/syslog", b"Jan  5 10:00:00 node-1 CRON[12]: (root) CMD (x)\n")
    assert rows[0]["event.module"] == "syslog" and rows[0]["event.parse_error"] is None
    assert rows[0]["log.syslog.appname"] == "CRON" and rows[0]["process.pid"] == 12
    assert rows[0]["event.dataset"] == "node"
    iso = parse_file("/var/log/messages", b"2026-05-06T10:00:00.5+02:00 node-1 sshd[7]: Accepted key\n")
    assert iso[0]["@timestamp"] == datetime(2026, 5, 6, 8, 0, 0, 500000, tzinfo=UTC)
    assert iso[0]["message"] == "Accepted key" and iso[0]["event.parse_error"] is None


def test_kubelet_klog_and_plain_lines() -> None:
    rows = parse_file("/var/log/kubelet.log", KUBELET)
    assert [r["event.module"] for r in rows] == ["nodelog"] * 3
    assert [r["event.dataset"] for r in rows] == ["node"] * 3
    assert [r["event.parse_error"] for r in rows] == [None] * 3
    first, second, third = rows
    assert first["message"] == "RemoveContainer" and first["log.level"] == "info"
    assert first["@timestamp"] == datetime(2026, 5, 5, 17, 59, 40, 692994, tzinfo=UTC)
    assert first["process.pid"] == 2842 and first["log.origin.file.name"] == "scope.go"
    assert orjson.loads(first["attributes"]) == {"containerID": "b27e"}
    assert second["log.level"] == "error" and orjson.loads(second["attributes"])["err"] == "boom"
    assert third["message"] == KUBELET.splitlines()[2].decode()
    assert third["@timestamp"] == NOW and third["log.level"] is None


def test_containerd_logfmt_and_plain_lines() -> None:
    rows = parse_file("/var/log/containerd.log", CONTAINERD)
    assert [r["event.parse_error"] for r in rows] == [None] * 4
    first, second, third, fourth = rows
    assert first["message"] == 'StartContainer for "b8f" returns successfully'
    assert first["log.level"] == "info"
    assert first["@timestamp"] == datetime(2026, 5, 6, 11, 59, 0, 525256, tzinfo=UTC)
    attrs = orjson.loads(first["attributes"])
    assert attrs["event.original"] == CONTAINERD.splitlines()[0].decode()  # the raw line is kept
    assert second["log.level"] == "error" and second["error.message"] is None
    assert orjson.loads(second["attributes"])["error"] == "not found"
    assert third["log.level"] == "warning"
    assert third["@timestamp"] == datetime(2026, 5, 6, 11, 59, 2, 123000, tzinfo=UTC)
    assert fourth["message"] == "no time, no level here" and fourth["@timestamp"] == NOW


def test_impossible_time_is_flagged() -> None:
    rows = parse_file("/var/log/containerd.log", b'time="2026-13-45T99:00:00Z" level=info msg=x\n')
    assert rows[0]["event.parse_error"] == "bad_timestamp" and rows[0]["@timestamp"] == NOW


def test_controlplane_files_get_their_dataset() -> None:
    rows = parse_file("/var/log/kube-apiserver.log", KUBELET[: KUBELET.index(b"\n") + 1])
    assert rows[0]["event.dataset"] == "controlplane"


def test_simulator_node_files(tmp_path: Path) -> None:
    """Every node file the simulator writes parses without an error flag."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetrail",
            "simulate",
            "--root",
            str(tmp_path),
            "--nodes",
            "2",
            "--hours",
            "0.01",
        ],
        check=True,
        capture_output=True,
    )
    files = [p for p in tmp_path.glob("*/var/log/*") if p.is_file()]
    assert {p.name for p in files} >= {"syslog", "kubelet.log", "containerd.log"}
    parsing = Parsing()
    total = 0
    for path in files:
        data = path.read_bytes()
        origin = file_origin("file", 0, "/var/log/" + path.name)
        rows = parsing.parse(Chunk(origin, data), NOW).to_pylist()
        total += len(rows)
        assert len(rows) == data.count(b"\n")
        assert [r for r in rows if r["event.parse_error"]] == [], path
        assert all(r["log.level"] for r in rows if path.name != "syslog"), path
    assert total > 50


_klog_line = st.builds(
    lambda sev, msg: f"{sev}0505 17:59:40.692994    2842 a.go:1] {msg}".encode(),
    st.sampled_from("IWEF"),
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30),
)
_logfmt_line = st.builds(
    lambda level, msg: f'time="2026-05-06T11:59:00Z" level={level} msg="{msg}"'.encode(),
    st.sampled_from(["info", "warn", "error"]),
    st.text(alphabet="abc xyz=", max_size=20),
)
_valid = _klog_line | _logfmt_line


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_valid | st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=10), st.data())
def test_lossless_under_any_chunk_split(lines: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(line + b"\n" for line in lines)
    cuts = data.draw(st.lists(st.integers(0, max(len(blob), 1)), max_size=6))
    whole = parse_in_chunks(NodeLogParser, blob, [], "file")
    assert comparable(parse_in_chunks(NodeLogParser, blob, cuts, "file")) == comparable(whole)
    assert len(whole) == len(lines)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300) | st.lists(_valid | mutations(_valid), max_size=5).map(b"\n".join))
def test_fuzz_never_raises(data: bytes) -> None:
    check_fuzz(NodeLogParser, data, "file")
