"""Shipping against a real HTTP(S) server in a thread: acknowledgement, 429/503 Retry-After, 413 split,
400 give-up, partial acceptance, bearer token, TLS verification and mTLS; and the body encoding."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetrail.agent.config import AgentConfig
from kubetrail.agent.metrics import Metrics
from kubetrail.agent.shipper import Shipper, encode_pieces, parse_retry_after, split_entry
from kubetrail.agent.tailer import FileTail, Pending
from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.receivers.agent_protocol import PATH, decode_request, encode_request

Handler = Callable[[Request, Any], Response | None]


class Server:
    """uvicorn in a thread; ``script`` answers request n (None -> accept)."""

    def __init__(self, script: Handler | None = None, **ssl_args: Any) -> None:
        self.script = script
        self.requests: list[tuple[dict[str, str], list[Chunk]]] = []
        self.ssl_args = ssl_args

    def app(self) -> Starlette:
        async def chunks(request: Request) -> Response:
            body = await request.body()
            req = decode_request(body, request.headers.get("content-encoding", "identity"))
            self.requests.append((dict(request.headers), req.chunks))
            if self.script is not None:
                answer = self.script(request, req)
                if answer is not None:
                    return answer
            return JSONResponse({"accepted_chunks": len(req.chunks)})

        return Starlette(routes=[Route(PATH, chunks, methods=["POST"])])

    def __enter__(self) -> Server:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off", **self.ssl_args
        )
        self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not (self.server.started and self.server.servers) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True


def make_tail() -> FileTail:
    return FileTail("/var/log/pods/a_b_c/d/0.log", -1, FileIdentity(1, 2, "ff"), "container", 0, 0)


def chunk(offset: int, data: bytes) -> Chunk:
    origin = Origin(
        node="n1",
        source="container",
        path="/var/log/pods/a_b_c/d/0.log",
        file=FileIdentity(1, 2, "ff"),
        offset=offset,
    )
    return Chunk(origin, data)


def run_shipper(url: str, lines: list[bytes], **cfg: Any) -> tuple[Shipper, FileTail]:
    config = AgentConfig.model_validate(
        {
            "node_name": "n1",
            "server": {"url": url, **cfg.pop("server", {})},
            "batch": {
                "flush_interval_secs": 0.01,
                "initial_backoff_secs": 0.01,
                "max_backoff_secs": 0.05,
                **cfg.pop("batch", {}),
            },
            **cfg,
        }
    )
    tail = make_tail()

    async def go() -> Shipper:
        shipper = Shipper(config, Metrics(), lambda t: None)
        offset = 0
        for line in lines:
            shipper.add(chunk(offset, line), tail.track(offset + len(line), len(line)), tail)
            offset += len(line)
        await shipper.drain(timeout=20)
        await shipper.close()
        return shipper

    return asyncio.run(go()), tail


LINES = [f"2026 stdout F line {i}\n".encode() * 50 for i in range(20)]


def test_ack_advances_the_checkpoint_and_body_decodes() -> None:
    with Server() as srv:
        shipper, tail = run_shipper(f"http://127.0.0.1:{srv.port}", LINES, server={"token": "s3cret"})
    assert tail.acked_offset == sum(map(len, LINES))
    assert shipper.inflight_bytes == 0
    headers = srv.requests[0][0]
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-encoding"] == "zstd"
    assert headers["x-kubetrail-batch-id"].startswith("n1-")
    assert b"".join(c.data for _, cs in srv.requests for c in cs) == b"".join(LINES)


@pytest.mark.parametrize("status", [429, 503])
def test_backpressure_honours_retry_after(status: int) -> None:
    calls: list[float] = []

    def script(request: Request, req: Any) -> Response | None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return JSONResponse(
                {"error": {"code": "KT-BUSY", "message": "busy"}}, status, headers={"Retry-After": "1"}
            )
        return None

    with Server(script) as srv:
        shipper, tail = run_shipper(
            f"http://127.0.0.1:{srv.port}", LINES[:1], batch={"max_backoff_secs": 0.01}
        )
    assert tail.acked_offset == len(LINES[0])
    assert calls[1] - calls[0] >= 0.95  # waited Retry-After, not the 10 ms backoff
    assert srv.requests[0][0]["x-kubetrail-batch-id"] == srv.requests[1][0]["x-kubetrail-batch-id"]
    assert shipper.metrics.retries.labels(reason=str(status))._value.get() == 1


def test_413_splits_batches_and_chunks() -> None:
    def script(request: Request, req: Any) -> Response | None:
        if sum(len(c.data) for c in req.chunks) > 1500:
            return JSONResponse({"error": {"code": "KT-LIMIT", "message": "too large"}}, 413)
        return None

    with Server(script) as srv:
        _, tail = run_shipper(f"http://127.0.0.1:{srv.port}", LINES[:4])
    assert tail.acked_offset == sum(map(len, LINES[:4]))
    accepted = [c for _, cs in srv.requests for c in cs if sum(len(x.data) for x in cs) <= 1500]
    got = b"".join(c.data for c in sorted(accepted, key=lambda c: c.origin.offset))
    assert got == b"".join(LINES[:4])
    # offsets of split halves still point at the right bytes
    for c in accepted:
        assert b"".join(LINES[:4])[c.origin.offset : c.origin.offset + len(c.data)] == c.data


def test_400_is_given_up_after_limited_attempts() -> None:
    def script(request: Request, req: Any) -> Response | None:
        return JSONResponse({"error": {"code": "KT-PROTO", "message": "bad origin"}}, 400)

    with Server(script) as srv:
        shipper, tail = run_shipper(
            f"http://127.0.0.1:{srv.port}", LINES[:1], batch={"max_bad_request_attempts": 3}
        )
    assert len(srv.requests) == 3
    assert shipper.metrics.rejected_chunks._value.get() == 1
    assert tail.acked_offset == len(LINES[0])  # loudly given up, the stream moves on


def test_partial_acceptance_is_resent() -> None:
    seen: list[int] = []

    def script(request: Request, req: Any) -> Response | None:
        seen.append(len(req.chunks))
        return JSONResponse({"accepted_chunks": 0}) if len(seen) == 1 else None

    with Server(script) as srv:
        _, tail = run_shipper(f"http://127.0.0.1:{srv.port}", LINES[:2])
    assert tail.acked_offset == sum(map(len, LINES[:2]))
    assert len(srv.requests) >= 2


def test_unreachable_server_keeps_retrying_until_it_is_back() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = Server()

    def later() -> None:
        time.sleep(0.6)
        srv.ssl_args = {}
        config = uvicorn.Config(srv.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        srv.server = uvicorn.Server(config)
        srv.server.run()

    threading.Thread(target=later, daemon=True).start()
    shipper, tail = run_shipper(f"http://127.0.0.1:{port}", LINES[:1])
    srv.server.should_exit = True
    assert tail.acked_offset == len(LINES[0])
    assert shipper.metrics.retries.labels(reason="HttpError")._value.get() >= 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("pki")

    def sh(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    sh(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=kt-ca",
    )
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        sh(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        sh(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
    yield d


def test_tls_verification_and_mutual_tls(pki: Path) -> None:
    ssl_args = {
        "ssl_certfile": str(pki / "server.crt"),
        "ssl_keyfile": str(pki / "server.key"),
        "ssl_ca_certs": str(pki / "ca.crt"),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    with Server(**ssl_args) as srv:
        url = f"https://127.0.0.1:{srv.port}"
        mtls = {
            "ca_file": str(pki / "ca.crt"),
            "client_cert_file": str(pki / "client.crt"),
            "client_key_file": str(pki / "client.key"),
        }
        _, tail = run_shipper(url, LINES[:1], server=mtls)
        assert tail.acked_offset == len(LINES[0])
        # without the CA the server certificate is not trusted; without a client cert the server refuses
        for server_cfg in (
            {"client_cert_file": mtls["client_cert_file"], "client_key_file": mtls["client_key_file"]},
            {"ca_file": mtls["ca_file"]},
        ):

            async def attempt(cfg: dict[str, str] = server_cfg) -> FileTail:
                config = AgentConfig.model_validate(
                    {
                        "node_name": "n1",
                        "server": {"url": url, **cfg},
                        "batch": {
                            "flush_interval_secs": 0.01,
                            "initial_backoff_secs": 0.01,
                            "max_backoff_secs": 0.05,
                        },
                    }
                )
                shipper = Shipper(config, Metrics(), lambda t: None)
                tail = make_tail()
                shipper.add(chunk(0, LINES[0]), tail.track(len(LINES[0]), len(LINES[0])), tail)
                assert not await shipper.drain(timeout=1.0)
                await shipper.close()
                return tail

            assert asyncio.run(attempt()).acked_offset == 0


def test_encode_pieces_is_the_protocol_encoding() -> None:
    chunks = [
        chunk(0, b"a\n"),
        chunk(2, b"b\n" * 40000),
        Chunk(
            Origin(
                node="n1",
                source="file",
                path="/x",
                format="json",
                receiver="agent-ratelimit",
                batch_id="k:1",
                metadata={"a": "b"},
            ),
            b"{}\n",
        ),
    ]
    assert b"".join(encode_pieces("n1", chunks)) == encode_request("n1", chunks, "identity")[0]


def test_split_entry_and_retry_after_parsing() -> None:
    tail = make_tail()
    data = b"x" * 10 + b"\n" + b"y" * 10 + b"\n" + b"z\n"
    pending = tail.track(len(data), len(data))
    first, second = split_entry((chunk(100, data), pending, tail))
    assert first[0].data + second[0].data == data
    assert second[0].origin.offset == 100 + len(first[0].data)
    assert second[1] is pending and first[1] is not pending
    assert split_entry((chunk(0, b"no newline"), Pending(10, 10), tail))[0][0].data == b"no newline"
    assert parse_retry_after("7", 1.0) == 7.0
    assert parse_retry_after(None, 1.5) == 1.5
    assert parse_retry_after("garbage", 2.0) == 2.0
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 3.0) <= 300
