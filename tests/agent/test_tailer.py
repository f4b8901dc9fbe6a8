"""The pure pieces: line cutter, fingerprint/identity, rotated-name mapping (property-based where it fits)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kubetrail.agent.discovery import Discovery, live_name, rotated_patterns
from kubetrail.agent.identity import FINGERPRINT_BYTES, fingerprint, identify_fd
from kubetrail.agent.tailer import cut_complete_lines, is_compressed, tail_start_offset


@given(st.binary(max_size=2000), st.booleans())
def test_cutter_takes_exactly_the_whole_lines(data: bytes, force: bool) -> None:
    cut = cut_complete_lines(data, force)
    head, rest = data[:cut], data[cut:]
    if b"\n" in data:
        assert head.endswith(b"\n") and b"\n" not in rest
    else:
        assert cut == (len(data) if force else 0)


@given(st.lists(st.binary(max_size=300), max_size=30))
def test_cutting_in_pieces_loses_and_duplicates_nothing(pieces: list[bytes]) -> None:
    stream = b"".join(pieces)
    shipped = b""
    buffer = b""
    for piece in pieces:
        buffer += piece
        cut = cut_complete_lines(buffer)
        shipped, buffer = shipped + buffer[:cut], buffer[cut:]
    assert shipped + buffer == stream
    assert b"\n" not in buffer


@given(st.binary(max_size=600), st.binary(max_size=600))
def test_fingerprint_is_stable_while_a_file_grows(head: bytes, more: bytes) -> None:
    fp = fingerprint(head)
    if fp is not None:
        assert fingerprint(head + more) == fp
    else:
        assert b"\n" not in head and len(head) < FINGERPRINT_BYTES


def test_fingerprint_tells_rewritten_content_apart() -> None:
    assert fingerprint(b"line one\n") != fingerprint(b"line two\n")
    assert fingerprint(b"short") is None
    assert fingerprint(b"x" * FINGERPRINT_BYTES) is not None


def test_identify_fd_and_tail_start(tmp_path: Path) -> None:
    p = tmp_path / "f.log"
    p.write_bytes(b"first\nsecond\npartial")
    fd = os.open(p, os.O_RDONLY)
    try:
        ident = identify_fd(fd)
        assert ident is not None and ident.inode == p.stat().st_ino
        assert tail_start_offset(fd, p.stat().st_size) == len(b"first\nsecond\n")
    finally:
        os.close(fd)


def test_live_name_and_rotated_patterns() -> None:
    assert live_name("/var/log/pods/ns_p_u/c/0.log.20260101-120000") == "/var/log/pods/ns_p_u/c/0.log"
    assert live_name("/var/log/kubernetes/audit/audit-2026-01-01T12-00-00.123.log") == (
        "/var/log/kubernetes/audit/audit.log"
    )
    assert live_name("/var/log/syslog.1") == "/var/log/syslog"
    assert live_name("/var/log/pods/ns_p_u/c/0.log") == "/var/log/pods/ns_p_u/c/0.log"
    assert rotated_patterns("/a/audit.log") == ["/a/audit.log.*", "/a/audit-*.log"]
    assert is_compressed("/x/0.log.20260101-120000.gz")


def test_discovery_finds_live_and_rotated_files_skips_compressed_and_wakes_on_inotify(tmp_path: Path) -> None:
    d = tmp_path / "pods" / "ns_p_u" / "c"
    d.mkdir(parents=True)
    for name in ("0.log", "0.log.20260101-000000", "0.log.20251231-000000.gz"):
        (d / name).write_bytes(b"x\n")
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "audit.log").write_bytes(b"{}\n")
    (audit / "audit-2026-01-01T00-00-00.000.log").write_bytes(b"{}\n")
    disc = Discovery({"container": [str(tmp_path / "pods/*/*/*.log")], "audit": [str(audit / "audit.log")]})
    try:
        found = disc.scan()
        assert found == {
            str(d / "0.log"): "container",
            str(d / "0.log.20260101-000000"): "container",
            str(audit / "audit.log"): "audit",
            str(audit / "audit-2026-01-01T00-00-00.000.log"): "audit",
        }
        assert not disc.structure_changed
        (tmp_path / "pods" / "ns_q_v").mkdir()  # a new pod directory: inotify says look again
        import select

        fd = disc.fileno()
        assert fd is not None
        assert select.select([fd], [], [], 2.0)[0]
        disc.on_events()
        assert disc.structure_changed
    finally:
        disc.close()


def test_watches_of_deleted_directories_are_forgotten(tmp_path: Path) -> None:
    import select
    import shutil

    pod = tmp_path / "pods" / "ns_p_u" / "c"
    pod.mkdir(parents=True)
    (pod / "0.log").write_bytes(b"x\n")
    disc = Discovery({"container": [str(tmp_path / "pods/*/*/*.log")]})
    try:
        disc.scan()
        assert str(pod) in disc._watched
        shutil.rmtree(tmp_path / "pods" / "ns_p_u")
        fd = disc.fileno()
        assert fd is not None
        for _ in range(25):
            if select.select([fd], [], [], 0.2)[0]:
                disc.on_events()
            if str(pod) not in disc._watched:
                break
        assert str(pod) not in disc._watched
    finally:
        disc.close()
