"""``audit_webhook``: the kube-apiserver audit webhook backend (``POST`` of an ``audit.k8s.io/v1`` EventList).

Point the API server at it with ``--audit-webhook-config-file`` (a kubeconfig whose cluster
``server`` is this receiver's URL; see docs/server.md for the file and the batch flags). The body is
checked (JSON, ``kind: EventList`` or a single ``Event``, item count within limits) before it is
acknowledged; it is written to the WAL as one compact JSON line and parsed after the ack by the
formats' audit parser, which turns every item into a row (``kubernetes.audit.*``).

Event ids derive from the body's content hash, so the API server's retry of a batch (it retries on
any non-2xx or timeout) stores nothing twice. Auth: a bearer token with the ``agent`` role (the
kubeconfig's ``user.token``) and/or client certificates (``tls.client_auth: required``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetrail.chunk import Chunk, Origin
from kubetrail.components import receivers
from kubetrail.errors import LimitExceeded, ProtocolError
from kubetrail.receivers._context import ListenerConfig
from kubetrail.receivers._http import HttpReceiver, bearer_token, decompress_body, read_body
from kubetrail.server.pipeline import register_codec
from kubetrail.server.settings import LimitsConfig
from kubetrail.server.wal import WalRecord

__all__ = ["AuditWebhookConfig", "AuditWebhookReceiver", "validate_event_list"]


class AuditWebhookConfig(ListenerConfig):
    """Options of ``audit_webhook``."""

    listen: str = Field(
        "127.0.0.1:9444", description="Address the API server's webhook kubeconfig points at."
    )
    path: str = Field("/api/v1/audit", description="Request path (any path of the kubeconfig's server URL).")
    source_name: str = Field("kube-apiserver", description="Written to host.name when events lack one.")


def validate_event_list(body: bytes, limits: LimitsConfig) -> tuple[bytes, int]:
    """Check an EventList/Event body; returns it as one compact JSON line and its number of events."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("body must be a JSON object (an audit.k8s.io EventList)")
    kind = doc.get("kind")
    if kind == "EventList" or (kind is None and "items" in doc):
        items = doc.get("items")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ProtocolError("EventList.items must be an array of objects")
        if len(items) > limits.max_array_len:
            raise LimitExceeded("too many events", events=len(items), max_array_len=limits.max_array_len)
        count = len(items)
    elif kind == "Event":
        count = 1
    else:
        raise ProtocolError(f"expected kind EventList or Event, got {kind!r}")
    line = body.strip() if b"\n" not in body.strip() else orjson.dumps(doc)
    return line, count


@register_codec("audit")
def decode_audit_record(record: WalRecord, hint: Any) -> list[Chunk]:
    """WAL codec ``audit+<peer>``: one EventList line for the formats' audit parser."""
    peer = record.codec.partition("+")[2] or "kube-apiserver"
    digest = hashlib.blake2b(record.data, digest_size=12).hexdigest()  # stable under client retries
    origin = Origin(node=peer, source="audit", receiver=record.source, batch_id=digest, format="audit")
    return [Chunk(origin, record.data + b"\n")]


@receivers.register("audit_webhook")
class AuditWebhookReceiver(HttpReceiver[AuditWebhookConfig]):
    Config = AuditWebhookConfig
    role = "agent"

    def routes(self) -> list[Route]:
        return [Route(self.config.path, self.guarded(self.post_events), methods=["POST"])]

    async def post_events(self, request: Request) -> Response:
        assert self.ctx is not None
        identity = self.ctx.authenticate(bearer_token(request), self.role)
        self.ctx.check_rate(self.client_key(request, identity))
        limits = self.limits
        body = await read_body(request, limits.max_body_bytes, limits.read_timeout_secs)
        body = decompress_body(body, request.headers.get("content-encoding"), limits)
        line, count = validate_event_list(body, limits)
        await self.ctx.submit(self.name, f"audit+{self.config.source_name}", line)
        return JSONResponse({"accepted_events": count})
