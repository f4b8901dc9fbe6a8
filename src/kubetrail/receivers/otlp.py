"""``otlp``: OTLP/HTTP logs (``POST /v1/logs``, protobuf or JSON, optionally gzip).

The body is decoded before the ack (a bad body is a 400 the exporter will not retry), written to the
WAL decompressed and mapped after the ack. Resource attributes of the Kubernetes semantic conventions
map onto the schema: ``k8s.pod.name``, ``k8s.namespace.name``, ``k8s.pod.uid``,
``k8s.container.name``, ``k8s.node.name``, ``k8s.cluster.name``, ``container.id``,
``container.image.name``, ``host.name`` and the workload names (``k8s.deployment.name`` ... ->
``kubernetes.owner.kind``/``name``). The body becomes ``message`` (JSON for non-string bodies),
``severity_text``/``severity_number`` become ``log.level``; everything else (other resource and log
attributes, scope, trace and span ids) is kept in ``attributes``.

Event ids hash the request body, so an exporter's retry after a lost response (OTLP exporters retry
on 429/502/503/504 honouring ``Retry-After``) stores nothing twice.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubetrail.components import receivers
from kubetrail.errors import LimitExceeded, ProtocolError
from kubetrail.receivers._context import ListenerConfig
from kubetrail.receivers._http import HttpReceiver, bearer_token, decompress_body, read_body
from kubetrail.receivers._records import MappedRecord, records_to_batch
from kubetrail.schema import event_id_prefix
from kubetrail.server.pipeline import register_codec
from kubetrail.server.settings import LimitsConfig
from kubetrail.server.wal import WalRecord

__all__ = ["OtlpConfig", "OtlpReceiver", "otlp_records"]

RESOURCE_COLUMNS: Mapping[str, str] = {
    "k8s.pod.name": "kubernetes.pod.name",
    "k8s.namespace.name": "kubernetes.namespace",
    "k8s.pod.uid": "kubernetes.pod.uid",
    "k8s.container.name": "kubernetes.container.name",
    "k8s.node.name": "kubernetes.node.name",
    "k8s.cluster.name": "orchestrator.cluster.name",
    "container.id": "container.id",
    "container.image.name": "container.image.name",
    "container.runtime": "container.runtime",
    "host.name": "host.name",
}
OWNER_KINDS: Mapping[str, str] = {
    "k8s.deployment.name": "Deployment",
    "k8s.statefulset.name": "StatefulSet",
    "k8s.daemonset.name": "DaemonSet",
    "k8s.cronjob.name": "CronJob",
    "k8s.job.name": "Job",
    "k8s.replicaset.name": "ReplicaSet",
}
_SEVERITY = ["trace", "debug", "info", "warning", "error", "critical"]
_JSON_TYPES = ("application/json",)
_PROTO_TYPES = ("application/x-protobuf", "application/protobuf")


def _level(text: str, number: int) -> str | None:
    if text:
        return text.lower()
    if 1 <= number <= 24:
        return _SEVERITY[(number - 1) // 4]
    return None


# -- AnyValue in both encodings ---------------------------------------------------------------


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def _json_value(v: Any) -> Any:
    if not isinstance(v, dict) or not v:
        return None
    kind, value = next(iter(v.items()))
    if kind == "arrayValue":
        return [_json_value(x) for x in (value or {}).get("values", [])]
    if kind == "kvlistValue":
        return {kv.get("key"): _json_value(kv.get("value")) for kv in (value or {}).get("values", [])}
    if kind == "intValue":
        return int(value)
    return value


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _record(
    resource: dict[str, Any],
    scope: str,
    time_ns: int,
    observed_ns: int,
    severity_text: str,
    severity_number: int,
    body: Any,
    attributes: dict[str, Any],
    trace_id: str,
    span_id: str,
) -> MappedRecord:
    out: dict[str, Any] = {}
    rest_resource: dict[str, Any] = {}
    for key, value in resource.items():
        if key in RESOURCE_COLUMNS and value is not None:
            out[RESOURCE_COLUMNS[key]] = str(value)
        elif key in OWNER_KINDS and value is not None and "kubernetes.owner.kind" not in out:
            out["kubernetes.owner.kind"] = OWNER_KINDS[key]
            out["kubernetes.owner.name"] = str(value)
            rest_resource[key] = value
        else:
            rest_resource[key] = value
    if "host.name" not in out and "kubernetes.node.name" in out:
        out["host.name"] = out["kubernetes.node.name"]
    out["message"] = body if isinstance(body, str) or body is None else orjson.dumps(body).decode()
    level = _level(severity_text, severity_number)
    if level:
        out["log.level"] = level
    if rest_resource:
        out["otel.resource"] = rest_resource
    if attributes:
        out["otel.attributes"] = attributes
    if scope:
        out["otel.scope"] = scope
    if trace_id:
        out["otel.trace_id"] = trace_id
    if span_id:
        out["otel.span_id"] = span_id
    return (time_ns or observed_ns or None, out)


def _from_proto(req: Any) -> Iterator[MappedRecord]:
    for rl in req.resource_logs:
        resource = {kv.key: _pb_value(kv.value) for kv in rl.resource.attributes}
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                yield _record(
                    resource,
                    sl.scope.name,
                    lr.time_unix_nano,
                    lr.observed_time_unix_nano,
                    lr.severity_text,
                    lr.severity_number,
                    _pb_value(lr.body) if lr.HasField("body") else None,
                    {kv.key: _pb_value(kv.value) for kv in lr.attributes},
                    lr.trace_id.hex(),
                    lr.span_id.hex(),
                )


def _from_json(doc: Any) -> Iterator[MappedRecord]:
    def attrs(items: Any) -> dict[str, Any]:
        return {
            str(kv.get("key")): _json_value(kv.get("value")) for kv in items or [] if isinstance(kv, dict)
        }

    for rl in doc.get("resourceLogs") or []:
        resource = attrs((rl.get("resource") or {}).get("attributes"))
        for sl in rl.get("scopeLogs") or []:
            scope = (sl.get("scope") or {}).get("name") or ""
            for lr in sl.get("logRecords") or []:
                yield _record(
                    resource,
                    scope,
                    _int(lr.get("timeUnixNano")),
                    _int(lr.get("observedTimeUnixNano")),
                    lr.get("severityText") or "",
                    _int(lr.get("severityNumber")),
                    _json_value(lr.get("body")),
                    attrs(lr.get("attributes")),
                    lr.get("traceId") or "",
                    lr.get("spanId") or "",
                )


def parse_request(body: bytes, kind: str, limits: LimitsConfig) -> Any:
    """Decode and shape-check a request; raises ProtocolError (400) / LimitExceeded (413)."""
    if kind == "proto":
        try:
            req = ExportLogsServiceRequest.FromString(body)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise ProtocolError(f"not an ExportLogsServiceRequest: {exc}") from None
        count = sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
    else:
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"body is not JSON: {exc}") from None
        if not isinstance(req, dict) or not isinstance(req.get("resourceLogs", []), list):
            raise ProtocolError("JSON body must be an ExportLogsServiceRequest object")
        try:
            count = sum(
                len(sl.get("logRecords") or [])
                for rl in req["resourceLogs"]
                for sl in rl.get("scopeLogs") or []
            )
        except (AttributeError, TypeError, KeyError) as exc:
            raise ProtocolError(f"malformed resourceLogs: {exc}") from None
    if count > limits.max_array_len:
        raise LimitExceeded("too many log records", records=count, max_array_len=limits.max_array_len)
    return req


def otlp_records(req: Any, kind: str) -> list[MappedRecord]:
    return list(_from_proto(req) if kind == "proto" else _from_json(req))


@register_codec("otlp")
def decode_otlp_record(record: WalRecord, hint: Any) -> pa.RecordBatch:
    """WAL codec ``otlp+proto`` / ``otlp+json``: the decompressed request body."""
    kind = record.codec.partition("+")[2] or "proto"
    req = hint if hint is not None else parse_request(record.data, kind, LimitsConfig(max_array_len=1 << 40))
    try:
        records = otlp_records(req, kind)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed OTLP logs: {exc}") from None
    digest = hashlib.blake2b(record.data, digest_size=12).hexdigest()
    prefix = event_id_prefix("otlp", record.source, digest)
    return records_to_batch(records, id_prefix=prefix, dataset="otlp", module="otlp")


class OtlpConfig(ListenerConfig):
    """Options of ``otlp``."""

    listen: str = Field("127.0.0.1:4318", description="OTLP/HTTP address (the exporters' default port).")
    require_token: bool = Field(False, description="Require a bearer token (role agent) when tokens exist.")


@receivers.register("otlp")
class OtlpReceiver(HttpReceiver[OtlpConfig]):
    Config = OtlpConfig
    role = "agent"

    def routes(self) -> list[Route]:
        return [Route("/v1/logs", self.guarded(self.post_logs), methods=["POST"])]

    async def post_logs(self, request: Request) -> Response:
        assert self.ctx is not None
        identity = None
        if self.config.require_token:
            identity = self.ctx.authenticate(bearer_token(request), self.role)
        self.ctx.check_rate(self.client_key(request, identity))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in _JSON_TYPES:
            kind = "json"
        elif ctype in _PROTO_TYPES:
            kind = "proto"
        else:
            raise ProtocolError("Content-Type must be application/x-protobuf or application/json", got=ctype)
        limits = self.limits
        body = await read_body(request, limits.max_body_bytes, limits.read_timeout_secs)
        body = decompress_body(body, request.headers.get("content-encoding"), limits)
        req = parse_request(body, kind, limits)
        await self.ctx.submit(self.name, f"otlp+{kind}", body, req, cost=3 * len(body))  # + decoded messages
        if kind == "json":
            return Response(b"{}", media_type="application/json")
        return Response(ExportLogsServiceResponse().SerializeToString(), media_type="application/x-protobuf")
