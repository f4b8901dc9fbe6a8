"""The canonical event schema: one Arrow schema every part of kubetrail speaks.

Column names are the dotted ECS names themselves (``kubernetes.pod.name`` is one top-level column,
not a struct), which keeps DuckDB SQL, Parquet statistics and OpenSearch documents aligned. The audit
event keeps its native paths under ``kubernetes.audit.*``; its variable objects and the rest of any
payload are JSON strings. ``docs/schema.md`` documents every column; a test keeps the two in sync.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

__all__ = [
    "ALIASES",
    "DATASETS",
    "FIELDS",
    "JSON_COLUMNS",
    "JSON_PREFIX_ALIASES",
    "SCHEMA",
    "TIMESTAMP",
    "FieldRef",
    "conform",
    "empty_batch",
    "event_id_prefix",
    "from_pylist",
    "resolve",
]

TIMESTAMP = pa.timestamp("ns", tz="UTC")
_STR = pa.string()
_LIST_STR = pa.list_(pa.string())


@dataclass(frozen=True)
class Field:
    name: str
    type: pa.DataType
    doc: str


FIELDS: tuple[Field, ...] = (
    # identity and time
    Field("@timestamp", TIMESTAMP, "When the event happened (from the log line when it has one)."),
    Field("event.id", _STR, "Deterministic id derived from the origin; the dedup key."),
    Field("event.ingested", TIMESTAMP, "When the server parsed the event."),
    Field("event.dataset", _STR, "Layer: container, node, controlplane, audit, syslog, otlp, forward, ..."),
    Field("event.module", _STR, "Parser that produced the event: cri, docker, klog, audit, journald, ..."),
    Field("event.action", _STR, "What was done (audit: the verb)."),
    Field("event.outcome", _STR, "success, failure or unknown."),
    Field("event.parse_error", _STR, "Null when parsing succeeded, else a stable reason code."),
    Field("error.message", _STR, "Human-readable detail of a parse error or of an error in the payload."),
    Field("error.type", _STR, "Exception class or error kind found in the payload."),
    Field("error.stack_trace", _STR, "Stack trace found in the payload (joined multiline)."),
    # the line itself
    Field("message", _STR, "The log message (for audit events, a one-line summary)."),
    Field("log.level", _STR, "Normalised level: trace, debug, info, warning, error, critical."),
    Field("log.logger", _STR, "Logger name when the payload has one."),
    Field("log.file.path", _STR, "File the line was read from."),
    Field("log.offset", pa.int64(), "Byte offset of the line in that file."),
    Field("log.origin.file.name", _STR, "Source file that logged the line (klog)."),
    Field("log.origin.file.line", pa.int32(), "Source line that logged the line (klog)."),
    Field("log.syslog.facility.code", pa.int16(), "Syslog facility."),
    Field("log.syslog.severity.code", pa.int16(), "Syslog severity / journald PRIORITY."),
    Field("log.syslog.appname", _STR, "Syslog APP-NAME / tag / systemd unit."),
    Field("stream", _STR, "stdout or stderr for container logs."),
    Field("process.pid", pa.int64(), "Process / thread id (klog, syslog PROCID, journald _PID)."),
    # where it came from
    Field("orchestrator.cluster.name", _STR, "Cluster name from the configuration."),
    Field("host.name", _STR, "Node that produced the log."),
    Field("kubernetes.namespace", _STR, "Namespace of the pod, or of the audited object."),
    Field("kubernetes.pod.name", _STR, "Pod name."),
    Field("kubernetes.pod.uid", _STR, "Pod UID."),
    Field("kubernetes.container.name", _STR, "Container name."),
    Field("kubernetes.container.restart_count", pa.int32(), "Restart count from the log file name."),
    Field("kubernetes.node.name", _STR, "Node the pod runs on."),
    Field("kubernetes.labels", _STR, "Pod labels as a JSON object."),
    Field("kubernetes.namespace_labels", _STR, "Labels of the pod's namespace as a JSON object."),
    Field("kubernetes.node.labels", _STR, "Labels of the node as a JSON object."),
    Field("kubernetes.owner.kind", _STR, "Top owner kind (Deployment, DaemonSet, Job, ...)."),
    Field("kubernetes.owner.name", _STR, "Top owner name."),
    Field("kubernetes.serviceaccount.name", _STR, "Service account of the pod."),
    Field("container.id", _STR, "Container id."),
    Field("container.image.name", _STR, "Container image reference."),
    Field("container.runtime", _STR, "containerd, cri-o or docker."),
    # who, from where
    Field("source.ip", _STR, "Client address (audit: sourceIPs[0]; access logs: remote address)."),
    Field("source.geo.country_iso_code", _STR, "GeoIP country of source.ip."),
    Field("source.as.number", pa.int64(), "Autonomous system number of source.ip."),
    Field("source.as.organization.name", _STR, "Autonomous system organisation of source.ip."),
    Field("user.name", _STR, "Acting user (audit: user.username)."),
    Field("user_agent.original", _STR, "User agent string."),
    # HTTP access logs
    Field("http.request.method", _STR, "HTTP method of an access log line."),
    Field("http.response.status_code", pa.int32(), "HTTP status of an access log line."),
    Field("http.response.body.bytes", pa.int64(), "Response size of an access log line."),
    Field("url.original", _STR, "Request URI of an access log line."),
    # kube-apiserver audit, native paths
    Field("kubernetes.audit.auditID", _STR, "Audit event id."),
    Field("kubernetes.audit.level", _STR, "Metadata, Request or RequestResponse."),
    Field("kubernetes.audit.stage", _STR, "RequestReceived, ResponseStarted, ResponseComplete, Panic."),
    Field("kubernetes.audit.verb", _STR, "Kubernetes verb (get, list, create, ...)."),
    Field("kubernetes.audit.requestURI", _STR, "Request URI."),
    Field("kubernetes.audit.user.username", _STR, "Authenticated user."),
    Field("kubernetes.audit.user.uid", _STR, "Authenticated user's uid."),
    Field("kubernetes.audit.user.groups", _LIST_STR, "Authenticated user's groups."),
    Field("kubernetes.audit.impersonatedUser.username", _STR, "Impersonated user, if any."),
    Field("kubernetes.audit.sourceIPs", _LIST_STR, "Client addresses."),
    Field("kubernetes.audit.userAgent", _STR, "Client user agent."),
    Field("kubernetes.audit.objectRef.resource", _STR, "Resource (pods, secrets, ...)."),
    Field("kubernetes.audit.objectRef.subresource", _STR, "Subresource (exec, attach, log, ...)."),
    Field("kubernetes.audit.objectRef.namespace", _STR, "Object namespace."),
    Field("kubernetes.audit.objectRef.name", _STR, "Object name."),
    Field("kubernetes.audit.objectRef.apiGroup", _STR, "API group ('' for core)."),
    Field("kubernetes.audit.objectRef.apiVersion", _STR, "API version."),
    Field("kubernetes.audit.responseStatus.code", pa.int32(), "HTTP response code."),
    Field("kubernetes.audit.responseStatus.reason", _STR, "Response reason."),
    Field("kubernetes.audit.annotations", _STR, "Audit annotations (JSON object)."),
    Field("kubernetes.audit.requestObject", _STR, "Request body (JSON), when the policy level records it."),
    Field("kubernetes.audit.responseObject", _STR, "Response body (JSON), when the level records it."),
    Field("kubernetes.audit.requestReceivedTimestamp", TIMESTAMP, "When the request arrived."),
    Field("kubernetes.audit.stageTimestamp", TIMESTAMP, "When the stage was reached."),
    # enrichment
    Field("threat.indicator.type", _STR, "Type of the matched indicator (ipv4-addr, domain-name, ...)."),
    Field("threat.indicator.value", _STR, "The matched indicator."),
    Field("threat.feed.name", _STR, "Feed the indicator came from."),
    # everything else
    Field("attributes", _STR, "JSON object with the parsed fields that have no column of their own."),
)

SCHEMA: pa.Schema = pa.schema([pa.field(f.name, f.type) for f in FIELDS])
JSON_COLUMNS: frozenset[str] = frozenset(
    {
        "attributes",
        "kubernetes.labels",
        "kubernetes.namespace_labels",
        "kubernetes.node.labels",
        "kubernetes.audit.annotations",
        "kubernetes.audit.requestObject",
        "kubernetes.audit.responseObject",
    }
)
DATASETS: tuple[str, ...] = (
    "container",
    "node",
    "controlplane",
    "audit",
    "syslog",
    "forward",
    "otlp",
    "bulk",
    "internal",
)

# Native kube-apiserver audit names (as hunters and Sigma rules write them) -> schema columns.
ALIASES: Mapping[str, str] = {
    "verb": "kubernetes.audit.verb",
    "level": "kubernetes.audit.level",
    "stage": "kubernetes.audit.stage",
    "auditID": "kubernetes.audit.auditID",
    "requestURI": "kubernetes.audit.requestURI",
    "user.username": "kubernetes.audit.user.username",
    "user.uid": "kubernetes.audit.user.uid",
    "user.groups": "kubernetes.audit.user.groups",
    "impersonatedUser.username": "kubernetes.audit.impersonatedUser.username",
    "sourceIPs": "kubernetes.audit.sourceIPs",
    "userAgent": "kubernetes.audit.userAgent",
    "objectRef.resource": "kubernetes.audit.objectRef.resource",
    "objectRef.subresource": "kubernetes.audit.objectRef.subresource",
    "objectRef.namespace": "kubernetes.audit.objectRef.namespace",
    "objectRef.name": "kubernetes.audit.objectRef.name",
    "objectRef.apiGroup": "kubernetes.audit.objectRef.apiGroup",
    "objectRef.apiVersion": "kubernetes.audit.objectRef.apiVersion",
    "responseStatus.code": "kubernetes.audit.responseStatus.code",
    "responseStatus.reason": "kubernetes.audit.responseStatus.reason",
    "requestReceivedTimestamp": "kubernetes.audit.requestReceivedTimestamp",
    "stageTimestamp": "kubernetes.audit.stageTimestamp",
    "annotations": "kubernetes.audit.annotations",
    "requestObject": "kubernetes.audit.requestObject",
    "responseObject": "kubernetes.audit.responseObject",
    # short names for hunters
    "namespace": "kubernetes.namespace",
    "pod": "kubernetes.pod.name",
    "container": "kubernetes.container.name",
    "node": "host.name",
    "dataset": "event.dataset",
    "image": "container.image.name",
    "timestamp": "@timestamp",
}

# Prefixes that address a path inside a JSON column: `requestObject.spec.hostPID`.
JSON_PREFIX_ALIASES: Mapping[str, str] = {
    "requestObject.": "kubernetes.audit.requestObject",
    "responseObject.": "kubernetes.audit.responseObject",
    "annotations.": "kubernetes.audit.annotations",
    "kubernetes.audit.requestObject.": "kubernetes.audit.requestObject",
    "kubernetes.audit.responseObject.": "kubernetes.audit.responseObject",
    "kubernetes.audit.annotations.": "kubernetes.audit.annotations",
    "kubernetes.labels.": "kubernetes.labels",
    "labels.": "kubernetes.labels",
    "attributes.": "attributes",
}

_COLUMN_NAMES = frozenset(SCHEMA.names)


@dataclass(frozen=True)
class FieldRef:
    """Where a field name lives: a column, optionally a path inside that column's JSON."""

    column: str
    json_path: tuple[str, ...] = ()

    @property
    def is_json(self) -> bool:
        return bool(self.json_path)


def resolve(name: str) -> FieldRef:
    """Map a field name a user or a rule wrote onto the schema.

    Order: an exact column, a native alias, a path inside a known JSON column (the longest prefix
    wins, so ``annotations.authorization.k8s.io/decision`` keeps its dotted key whole), and last a
    path inside ``attributes`` for fields only some payloads carry.
    """
    if name in _COLUMN_NAMES:
        return FieldRef(name)
    if name in ALIASES:
        return FieldRef(ALIASES[name])
    for prefix in sorted(JSON_PREFIX_ALIASES, key=len, reverse=True):
        if name.startswith(prefix):
            column = JSON_PREFIX_ALIASES[prefix]
            rest = name[len(prefix) :]
            if column in ("kubernetes.audit.annotations", "kubernetes.labels"):
                # annotation and label keys contain dots themselves: the whole rest is one key
                return FieldRef(column, (rest,))
            return FieldRef(column, tuple(rest.split(".")))
    return FieldRef("attributes", (name,))


def event_id_prefix(*parts: str | int) -> str:
    """A short stable hash of an origin (node, file identity, ...); event ids are ``prefix-offset``."""
    h = hashlib.blake2b(digest_size=10)
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=SCHEMA)


def conform(columns: Mapping[str, pa.Array | pa.ChunkedArray], num_rows: int) -> pa.RecordBatch:
    """Build a full-schema batch from the columns a parser produced; the rest are nulls.

    Columns are cast to the schema type, so parsers may hand over e.g. int64 for an int32 field.
    Unknown column names are a programming error and raise ``KeyError``.
    """
    arrays: list[pa.Array] = []
    for field in SCHEMA:
        col = columns.get(field.name)
        if col is None:
            arrays.append(pa.nulls(num_rows, field.type))
            continue
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.type != field.type:
            col = col.cast(field.type)
        arrays.append(col)
    unknown = set(columns) - _COLUMN_NAMES
    if unknown:
        raise KeyError(f"columns not in the schema: {sorted(unknown)}")
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def from_pylist(rows: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]]) -> pa.RecordBatch:
    """Build a batch from dict rows (tests, fixtures and low-rate paths only — not the hot path)."""
    rows = list(rows)
    columns = {
        name: pa.array([r.get(name) for r in rows], type=SCHEMA.field(name).type)
        for name in {k for r in rows for k in r}
    }
    return conform(columns, len(rows))
