"""``elasticsearch_bulk``: an Elasticsearch ``_bulk``-compatible endpoint for Filebeat and Fluent Bit ``es``.

Serves what those outputs call: ``GET /`` (version handshake, with the ``X-Elastic-Product`` header
Elastic's clients check), ``GET /_license``, and ``POST``/``PUT`` ``/_bulk`` and ``/<index>/_bulk``
with NDJSON ``index``/``create`` action + document pairs (gzip allowed). Every item gets its own
result in an Elasticsearch-shaped response: 201 for accepted documents, 400 with a reason for a
malformed one or an unsupported action (``update``/``delete``), which the shippers drop rather than
retry — a clear error the sender sees. The whole request is 429 under backpressure, which they retry.

Documents are flattened (``{"kubernetes": {"pod": {"name": ...}}}`` -> ``kubernetes.pod.name``) and
mapped onto the schema; Filebeat's ECS fields land in their columns directly and Fluent Bit's
kubernetes filter keys are mapped as for ``forward``. ``event.id`` derives from ``_index`` + ``_id``
when the shipper sets one (Filebeat can), else from the body hash and the item's position, so a
retried request stores nothing twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetrail.components import receivers
from kubetrail.errors import LimitExceeded
from kubetrail.receivers._context import ListenerConfig
from kubetrail.receivers._http import HttpReceiver, bearer_token, decompress_body, read_body
from kubetrail.receivers._records import MappedRecord, nesting_depth_exceeds, records_to_batch
from kubetrail.schema import SCHEMA, event_id_prefix
from kubetrail.server.pipeline import register_codec
from kubetrail.server.settings import LimitsConfig
from kubetrail.server.wal import WalRecord

__all__ = ["BulkConfig", "BulkItem", "BulkReceiver", "flatten_document", "parse_bulk"]

ES_VERSION = "8.15.0"
_ACTIONS = ("index", "create")
_COLUMNS = frozenset(SCHEMA.names)


@dataclass(frozen=True, slots=True)
class BulkItem:
    action: str
    index: str
    doc_id: str | None
    document: dict[str, Any] | None  # None: rejected
    error: str | None = None


def parse_bulk(body: bytes, default_index: str, limits: LimitsConfig) -> list[BulkItem]:
    """Pair action and document lines; bad pairs become items with an error (never raises per item)."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) > 2 * limits.max_array_len:
        raise LimitExceeded("too many bulk lines", lines=len(lines), max_array_len=limits.max_array_len)
    items: list[BulkItem] = []
    i = 0
    while i < len(lines):
        try:
            action_doc = orjson.loads(lines[i])
        except orjson.JSONDecodeError as exc:
            items.append(BulkItem("index", default_index, None, None, f"malformed action line: {exc}"))
            i += 1
            continue
        if not isinstance(action_doc, dict) or len(action_doc) != 1:
            items.append(
                BulkItem("index", default_index, None, None, "action line must be one {action: meta}")
            )
            i += 1
            continue
        action, meta = next(iter(action_doc.items()))
        meta = meta if isinstance(meta, dict) else {}
        index = str(meta.get("_index") or default_index)
        doc_id = str(meta["_id"]) if meta.get("_id") is not None else None
        if action == "delete":
            items.append(BulkItem(action, index, doc_id, None, "delete is not supported (append-only store)"))
            i += 1
            continue
        if i + 1 >= len(lines):
            items.append(BulkItem(action, index, doc_id, None, "action without a document"))
            break
        raw = lines[i + 1]
        i += 2
        if action not in _ACTIONS:
            items.append(BulkItem(action, index, doc_id, None, f"action {action!r} is not supported"))
            continue
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            items.append(BulkItem(action, index, doc_id, None, f"malformed document: {exc}"))
            continue
        if not isinstance(document, dict):
            items.append(BulkItem(action, index, doc_id, None, "document must be a JSON object"))
            continue
        if nesting_depth_exceeds(document, limits.max_nesting_depth):
            items.append(BulkItem(action, index, doc_id, None, "document nests too deeply"))
            continue
        items.append(BulkItem(action, index, doc_id, document))
    return items


def flatten_document(
    doc: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Nested objects -> dotted keys, stopping at schema columns (``kubernetes.labels`` stays an object)."""
    out = {} if out is None else out
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in _COLUMNS and value:
            flatten_document(value, f"{path}.", out)
        else:
            out[path] = value
    return out


def _timestamp_ns(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1_000_000)  # epoch_millis, Elasticsearch's numeric date default
    return None


@register_codec("bulk")
def decode_bulk_record(record: WalRecord, hint: Any) -> pa.RecordBatch:
    """WAL codec ``bulk+<default index>``: the decompressed NDJSON body; rejected items are skipped
    here exactly as they were rejected in the response."""
    default_index = record.codec.partition("+")[2] or "kubetrail"
    items = (
        hint
        if hint is not None
        else parse_bulk(record.data, default_index, LimitsConfig(max_array_len=1 << 40))
    )
    digest = hashlib.blake2b(record.data, digest_size=12).hexdigest()
    records: list[MappedRecord] = []
    ids: list[str] = []
    for position, item in enumerate(items):
        if item.document is None:
            continue
        flat = flatten_document(item.document)
        ts = flat.pop("@timestamp", None)
        flat["es.index"] = item.index
        records.append((_timestamp_ns(ts), flat))
        if item.doc_id is not None:
            ids.append(f"{event_id_prefix('bulk', record.source, item.index, item.doc_id)}-0")
        else:
            ids.append(f"{event_id_prefix('bulk', record.source, digest)}-{position}")
    return records_to_batch(records, id_prefix="", dataset="bulk", module="elasticsearch_bulk", ids=ids)


class BulkConfig(ListenerConfig):
    """Options of ``elasticsearch_bulk``."""

    listen: str = Field("127.0.0.1:9200", description="HTTP address (Elasticsearch's default port).")
    default_index: str = Field("kubetrail", description="Index name when neither path nor action has one.")
    require_token: bool = Field(False, description="Require a bearer/ApiKey token (role agent).")


@receivers.register("elasticsearch_bulk")
class BulkReceiver(HttpReceiver[BulkConfig]):
    Config = BulkConfig
    role = "agent"

    def routes(self) -> list[Route]:
        bulk = self.guarded(self.post_bulk)
        return [
            Route("/", self.guarded(self.info), methods=["GET", "HEAD"]),
            Route("/_license", self.guarded(self.license), methods=["GET"]),
            Route("/_bulk", bulk, methods=["POST", "PUT"]),
            Route("/{index}/_bulk", bulk, methods=["POST", "PUT"]),
        ]

    def _headers(self) -> dict[str, str]:
        return {"X-Elastic-Product": "Elasticsearch"}

    async def info(self, request: Request) -> Response:
        body = {
            "name": "kubetrail",
            "cluster_name": "kubetrail",
            "version": {"number": ES_VERSION, "build_flavor": "default", "lucene_version": "9.11.1"},
            "tagline": "You Know, for Search",
        }
        return JSONResponse(body, headers=self._headers())

    async def license(self, request: Request) -> Response:
        body = {"license": {"status": "active", "type": "basic", "uid": "kubetrail"}}
        return JSONResponse(body, headers=self._headers())

    async def post_bulk(self, request: Request) -> Response:
        assert self.ctx is not None
        started = time.monotonic()
        identity = None
        if self.config.require_token:
            identity = self.ctx.authenticate(bearer_token(request), self.role)
        self.ctx.check_rate(self.client_key(request, identity))
        limits = self.limits
        body = await read_body(request, limits.max_body_bytes, limits.read_timeout_secs)
        body = decompress_body(body, request.headers.get("content-encoding"), limits)
        default_index = request.path_params.get("index") or self.config.default_index
        items = parse_bulk(body, default_index, limits)
        if any(item.document is not None for item in items):
            await self.ctx.submit(self.name, f"bulk+{default_index}", body, items)
        results = []
        for n, item in enumerate(items):
            doc_id = item.doc_id or f"kt-{n}"
            if item.error is None:
                result = {
                    "_index": item.index,
                    "_id": doc_id,
                    "_version": 1,
                    "result": "created",
                    "status": 201,
                }
                result["_shards"] = {"total": 1, "successful": 1, "failed": 0}
            else:
                result = {
                    "_index": item.index,
                    "_id": doc_id,
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": item.error},
                }
                self.ctx.metrics.rejected.labels(self.name, "KT-PROTO").inc()
            results.append({item.action: result})
        took = int((time.monotonic() - started) * 1000)
        errors = any(item.error is not None for item in items)
        return JSONResponse({"took": took, "errors": errors, "items": results}, headers=self._headers())
