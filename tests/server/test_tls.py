from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from kubetrail.chunk import Chunk, Origin
from kubetrail.receivers.agent_protocol import PATH, encode_request
from kubetrail.server.app import KubetrailServer
from tests.server.certs import Certs
from tests.server.helpers import MemoryStore, make_server, settle


def _tls(certs: Certs, client_auth: str = "none") -> dict[str, Any]:
    return {
        "cert_file": str(certs.server_cert),
        "key_file": str(certs.server_key),
        "ca_file": str(certs.ca),
        "client_auth": client_auth,
    }


def _addr(server: KubetrailServer, name: str) -> tuple[str, int]:
    return server.receivers[name].address  # type: ignore[attr-defined,no-any-return]


def test_agent_mtls_and_forward_tls(tmp_path: Path, certs: Certs) -> None:
    store = MemoryStore()
    cfg = {
        "receivers": {
            "agent": {"type": "agent", "listen": "127.0.0.1:0", "tls": _tls(certs, "required")},
            "fwd": {"type": "forward", "listen": "127.0.0.1:0", "tls": _tls(certs), "heartbeat_udp": False},
        },
        "server": {"tls": _tls(certs)},
    }

    async def go() -> None:
        server = make_server(tmp_path, cfg, store)
        await server.start()
        try:
            host, port = _addr(server, "agent")
            url = f"https://{host}:{port}{PATH}"
            body, headers = encode_request(
                "n", [Chunk(Origin(node="n", source="file", path="/x"), b"over mtls\n")]
            )
            ctx = ssl.create_default_context(cafile=str(certs.ca))
            ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
            async with httpx.AsyncClient(verify=ctx) as client:
                r = await client.post(url, content=body, headers=headers)
                assert r.status_code == 200
            no_cert = ssl.create_default_context(cafile=str(certs.ca))
            async with httpx.AsyncClient(verify=no_cert) as client:
                with pytest.raises(httpx.HTTPError):  # the handshake fails without a client certificate
                    r = await client.post(url, content=body, headers=headers)
                    r.raise_for_status()
            assert server.api is not None
            api_host, api_port = server.api.address
            async with httpx.AsyncClient(verify=no_cert) as client:
                assert (await client.get(f"https://{api_host}:{api_port}/healthz")).status_code == 200

            def forward_over_tls() -> Any:
                fctx = ssl.create_default_context(cafile=str(certs.ca))
                raw = socket.create_connection(_addr(server, "fwd"))
                with raw, fctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    sock.sendall(msgpack.packb(["t", 1764220000, {"message": "over tls"}, {"chunk": "k"}]))
                    return msgpack.unpackb(sock.recv(100))

            assert await asyncio.to_thread(forward_over_tls) == {"ack": "k"}
            await settle(server)
        finally:
            await server.stop()

    asyncio.run(go())
    assert store.messages() == ["over mtls", "over tls"]
