"""The search API with real tokens: hunters read everything, a viewer only its token's namespaces."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from kubetrail.config import validate_config
from kubetrail.server.app import KubetrailServer
from kubetrail.server.auth import Identity, hash_token
from kubetrail.store import Store, StoreConfig
from tests.server.helpers import LineParser
from tests.store.conftest import make_batch

TOKENS = [
    ("hunters", "hunter-secret", ["hunter"], []),
    ("payments-team", "viewer-secret", ["viewer"], ["payments"]),
    ("nobody", "empty-viewer-secret", ["viewer"], []),
    ("agents", "agent-secret", ["agent"], ["payments"]),
    ("ops", "admin-secret", ["admin"], []),
]


def _write_tokens(path: Path) -> None:
    entries = [
        {"name": name, "hash": hash_token(secret), "roles": roles, "namespaces": namespaces}
        for name, secret, roles, namespaces in TOKENS
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))


def _namespaces(lines: list[dict[str, Any]]) -> Counter[str | None]:
    return Counter(r.get("kubernetes.namespace", r.get("namespace")) for r in lines)


def test_viewer_tokens_read_only_their_namespaces(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    _write_tokens(tokens)
    store = Store(tmp_path / "store", StoreConfig(flush_max_age_secs=3600))
    store.append(make_batch(400))
    store.flush()
    store.append(make_batch(100, seed=5, id_prefix="tail"))  # stays in the tail
    cfg, topology = validate_config(
        {
            "data_dir": str(tmp_path / "data"),
            "server": {"listen": "127.0.0.1:0", "tokens_file": str(tokens)},
            "receivers": {"agent": {"type": "agent", "listen": "127.0.0.1:0"}},
        }
    )
    server = KubetrailServer(cfg, topology, store=store, parser=LineParser())

    async def go() -> None:
        await server.start()
        try:
            assert server.api is not None
            host, port = server.api.address
            url = f"http://{host}:{port}/api/v1/search"
            async with httpx.AsyncClient() as client:

                async def search(secret: str | None, q: str = "*") -> httpx.Response:
                    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
                    params = {"q": q, "since": "", "limit": 10_000}
                    return await client.get(url, params=params, headers=headers)

                async def rows(secret: str, q: str = "*") -> list[dict[str, Any]]:
                    r = await search(secret, q)
                    assert r.status_code == 200, r.text
                    return [orjson.loads(line) for line in r.text.splitlines() if line]

                everything = _namespaces(await rows("hunter-secret"))
                assert sum(everything.values()) == 500 and len(everything) == 5
                assert _namespaces(await rows("admin-secret")) == everything

                viewed = await rows("viewer-secret")
                assert _namespaces(viewed) == {"payments": everything["payments"]}
                assert any(r["event.id"].startswith("tail-") for r in viewed), "tail rows are scoped too"
                stats = await rows("viewer-secret", "* | stats count() by namespace")
                assert stats == [{"namespace": "payments", "count": everything["payments"]}]
                top = await rows("viewer-secret", "* | top 5 namespace")
                assert [(r["namespace"], r["percent"]) for r in top] == [("payments", 100.0)]
                assert await rows("viewer-secret", "namespace:web") == []

                assert await rows("empty-viewer-secret") == []
                assert await rows("empty-viewer-secret", "* | stats count() by namespace") == []

                denied = await search("agent-secret")
                assert denied.status_code == 403
                assert denied.json()["error"]["message"] == "token 'agents' lacks role 'hunter' or 'viewer'"
                assert (await search(None)).status_code == 401
                assert (await search("wrong")).status_code == 401
                bad = await search("viewer-secret", "namespace:(web")
                assert bad.status_code == 400
        finally:
            await server.stop()

    asyncio.run(go())


def test_read_scope_of_each_role() -> None:
    assert Identity("h", frozenset({"hunter"}), ("payments",)).read_scope() is None
    assert Identity("a", frozenset({"admin"})).read_scope() is None
    assert Identity("hv", frozenset({"hunter", "viewer"}), ("payments",)).read_scope() is None
    assert Identity("v", frozenset({"viewer"}), ("payments", "web")).read_scope() == ("payments", "web")
    assert Identity("v0", frozenset({"viewer"})).read_scope() == ()
    assert Identity("ag", frozenset({"agent"}), ("payments",)).read_scope() == ()  # never everything
