"""``/api/v1/search``: a hunting query over the store, streamed as NDJSON (one event a line).

The server mounts ``router`` under ``/api`` and puts the ``Store`` on ``app.state.kubetrail_store``.
A query that does not compile is a 400 with ``{"error": {"code", "message", "position"}}`` before
any row is sent; an error while streaming (a timeout) ends the stream with one such error line.

Scope: the server's auth middleware puts the caller's ``Identity`` on ``request.state``. A viewer
token searches only the namespaces its token lists (the store cuts the relation the query reads, so
every pipe and aggregation sees only those rows); hunters, admins and anonymous callers (no tokens
configured) search everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kubetrail.errors import KubetrailError, QueryError
from kubetrail.outputs.file import encode_ndjson
from kubetrail.server.auth import Identity

__all__ = ["SearchRequest", "read_scope", "router"]

router = APIRouter()


class SearchRequest(BaseModel):
    """Body of ``POST /api/v1/search`` (the same fields as the GET query parameters)."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field("*", description="Hunting query.")
    since: str | None = Field("24h", description="Start: 24h, 15m, 7d or ISO 8601.")
    until: str | None = Field(None, description="End (exclusive).")
    limit: int = Field(1000, gt=0, description="At most this many rows.")
    include_archive: bool = Field(False, description="Also search the archive tier.")
    timeout_secs: float | None = Field(None, gt=0, description="Time limit (capped by the store's).")


def _error(exc: KubetrailError) -> dict[str, Any]:
    return {
        "error": {
            "code": exc.code,
            "message": str(exc),
            "position": getattr(exc, "position", None),
        }
    }


def read_scope(request: Request) -> tuple[str, ...] | None:
    """The namespaces the caller may search (None: all), from the identity the middleware set."""
    identity: Identity | None = getattr(request.state, "kubetrail_identity", None)
    return None if identity is None else identity.read_scope()


def _stream(store: Any, req: SearchRequest, namespaces: tuple[str, ...] | None) -> Iterator[bytes]:
    try:
        for batch in store.search_batches(
            req.q,  # the text: the store compiles it against the scan it picks
            since=req.since,
            until=req.until,
            limit=req.limit,
            timeout=req.timeout_secs,
            include_archive=req.include_archive,
            namespaces=namespaces,
        ):
            payload = encode_ndjson(batch)
            if payload:
                yield payload
    except KubetrailError as exc:
        yield orjson.dumps(_error(exc)) + b"\n"


def _search(request: Request, req: SearchRequest) -> Any:
    store = getattr(request.app.state, "kubetrail_store", None)
    if store is None:
        return JSONResponse({"error": {"code": "KT-STORE", "message": "no store configured"}}, 503)
    try:
        # a query or time that does not compile is a 400 before any row is streamed
        compiled = store.compile_text(req.q) if req.q.strip() not in ("", "*") else None
        store.time_range(compiled, req.since, req.until)
    except QueryError as exc:
        return JSONResponse(_error(exc), status_code=400)
    stream = _stream(store, req, read_scope(request))
    return StreamingResponse(stream, media_type="application/x-ndjson")


@router.get("/v1/search")
def search_get(
    request: Request,
    q: str = Query("*"),
    since: str | None = Query("24h"),
    until: str | None = Query(None),
    limit: int = Query(1000, gt=0),
    include_archive: bool = Query(False),
    timeout_secs: float | None = Query(None, gt=0),
) -> Any:
    """Search with query parameters; rows stream as NDJSON."""
    req = SearchRequest(
        q=q, since=since, until=until, limit=limit, include_archive=include_archive, timeout_secs=timeout_secs
    )
    return _search(request, req)


@router.post("/v1/search")
def search_post(request: Request, body: SearchRequest) -> Any:
    """Search with a JSON body; rows stream as NDJSON."""
    return _search(request, body)
