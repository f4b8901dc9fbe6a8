from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.errors import LimitExceeded
from kubetrail.formats.dispatch import Parsing
from kubetrail.receivers.syslog import SyslogReceiver, frame_messages
from kubetrail.server.app import KubetrailServer
from tests.server.certs import Certs
from tests.server.helpers import MemoryStore, make_server, settle


def test_framing_octet_counting_and_newlines() -> None:
    buf = b"12 <13>1 - - a\n<14>plain line\n5 <1>x"
    messages, offsets, consumed = frame_messages(buf, 1000)
    assert messages == [b"<13>1 - - a\n", b"<14>plain line"]
    assert offsets == [0, 15]
    assert consumed == 30  # the last octet-counted frame is incomplete
    with pytest.raises(LimitExceeded):
        frame_messages(b"99999999 <1>", 1000)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_framing(data: bytes) -> None:
    try:
        messages, _offsets, consumed = frame_messages(data, 64)
    except LimitExceeded:
        return
    assert 0 <= consumed <= len(data)
    assert all(len(m) <= 64 or b"\n" not in m for m in messages)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rsyslog_conf(work: Path, in_port: int, plain: int, tls: int, ca: Path) -> Path:
    (work / "spool").mkdir(parents=True, exist_ok=True)
    conf = work / "rsyslog.conf"
    conf.write_text(
        f"""
global(workDirectory="{work}/spool" DefaultNetstreamDriverCAFile="{ca}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{in_port}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{plain}" protocol="tcp"
         template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
  action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp"
         template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
         StreamDriverPermittedPeers="localhost")
}}
"""
    )
    return conf


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("rsyslogd") is None, reason="rsyslog not installed (apt-get install rsyslog rsyslog-gnutls)"
)
def test_rsyslog_forwards_over_tcp_and_tls(tmp_path: Path, certs: Certs) -> None:
    store = MemoryStore()
    tls = {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
    cfg = {
        "receivers": {
            "syslog_tcp": {"type": "syslog", "listen": "127.0.0.1:0", "udp": True},
            "syslog_tls": {"type": "syslog", "listen": "127.0.0.1:0", "tls": tls},
        }
    }

    async def go() -> None:
        server = make_server(tmp_path, cfg, store, parser=Parsing())
        await server.start()
        rsyslog: subprocess.Popen[bytes] | None = None
        try:
            plain = _port(server, "syslog_tcp")
            secure = _port(server, "syslog_tls")
            in_port = _free_port()
            conf = _rsyslog_conf(tmp_path / "rs", in_port, plain, secure, certs.ca)
            check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True)
            assert check.returncode == 0, check.stderr
            rsyslog = subprocess.Popen(
                ["rsyslogd", "-n", "-f", str(conf), "-i", str(tmp_path / "rs" / "pid")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            await asyncio.to_thread(_wait_port, in_port)
            for i in range(5):
                subprocess.run(
                    [
                        "logger",
                        "-n",
                        "127.0.0.1",
                        "-P",
                        str(in_port),
                        "-T",
                        "-t",
                        "sshd",
                        f"Failed password {i}",
                    ],
                    check=True,
                )
            await asyncio.to_thread(_udp_send, plain, b"<13>Nov 27 05:00:00 node-9 kernel: udp hello")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(store.rows) < 11:
                await asyncio.sleep(0.2)
                await settle(server)
        finally:
            if rsyslog is not None:
                rsyslog.terminate()
                rsyslog.wait(10)
            await server.stop()

    asyncio.run(go())
    rows = list(store.rows.values())
    messages = sorted(r["message"] for r in rows)
    assert messages.count("Failed password 3") == 2, messages  # once via TCP, once via TLS
    assert "udp hello" in messages
    assert len(rows) == 11
    sshd = next(r for r in rows if r["message"] == "Failed password 0")
    assert sshd["log.syslog.appname"] == "sshd"
    assert sshd["event.dataset"] == "syslog"
    assert sshd["event.parse_error"] is None


def _port(server: KubetrailServer, name: str) -> int:
    receiver = server.receivers[name]
    assert isinstance(receiver, SyslogReceiver)
    return receiver.address[1]


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"rsyslog did not listen on {port}")


def _udp_send(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port))


def test_oversized_frame_closes_connection_others_served(tmp_path: Path) -> None:
    store = MemoryStore()
    cfg: dict[str, Any] = {
        "receivers": {"sl": {"type": "syslog", "listen": "127.0.0.1:0"}},
        "server": {"limits": {"max_frame_bytes": 1024}},
    }

    async def go() -> None:
        server = make_server(tmp_path, cfg, store, parser=Parsing())
        await server.start()
        try:
            port = _port(server, "sl")

            def bad() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.settimeout(5)
                    s.sendall(b"999999 <13>1 ...")
                    return s.recv(10)

            def good() -> None:
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(b"<13>1 2026-11-27T05:00:00Z h app - - - still served\n")

            assert await asyncio.to_thread(bad) == b""
            await asyncio.to_thread(good)
            for _ in range(50):
                await asyncio.sleep(0.05)
                await settle(server)
                if store.rows:
                    break
        finally:
            await server.stop()

    asyncio.run(go())
    assert [r["message"] for r in store.rows.values()] == ["still served"]
