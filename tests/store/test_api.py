from __future__ import annotations

import asyncio

import httpx
import orjson
from fastapi import FastAPI

from kubetrail.store import Store
from kubetrail.store.api import router
from tests.store.conftest import make_batch


def make_app(store: Store) -> FastAPI:
    api = FastAPI()
    api.state.kubetrail_store = store
    api.include_router(router)
    outer = FastAPI()
    outer.mount("/api", api)
    return outer


async def fetch(store: Store, method: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=make_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, "/api/v1/search", **kwargs)  # type: ignore[arg-type]


def test_search_streams_ndjson(store: Store) -> None:
    store.append(make_batch(300))
    store.flush()
    store.append(make_batch(50, seed=7))
    resp = asyncio.run(fetch(store, "GET", params={"q": "namespace:web", "since": "", "limit": 1000}))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    rows = [orjson.loads(line) for line in resp.content.splitlines()]
    expected = store.search(where="\"kubernetes.namespace\" = 'web'", limit=1000).table.num_rows
    assert len(rows) == expected > 0
    assert all(r["kubernetes.namespace"] == "web" for r in rows)


def test_post_with_limit_and_bad_query(store: Store) -> None:
    store.append(make_batch(100))
    resp = asyncio.run(fetch(store, "POST", json={"q": "*", "since": None, "limit": 7}))
    assert resp.status_code == 200 and len(resp.content.splitlines()) == 7
    bad = asyncio.run(fetch(store, "POST", json={"q": "namespace:(web", "since": None}))
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["code"].startswith("KT-QUERY") and error["position"] is not None
    bad_time = asyncio.run(fetch(store, "GET", params={"q": "*", "since": "yesterday-ish"}))
    assert bad_time.status_code == 400
