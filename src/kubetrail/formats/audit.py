"""kube-apiserver audit events: one ``audit.k8s.io/v1`` Event per line, EventList bodies, and the
AKS and GKE cloud envelopes — all mapped onto ``kubernetes.audit.*`` and ECS.

Shapes, sniffed per line:

* native ``Event`` (the audit log file, EKS CloudWatch export) and ``EventList`` (the audit webhook
  body; each item becomes a row, its ``event.id`` suffixed ``.<index>``);
* AKS diagnostic records (``properties.log`` holds the Event as a JSON string; also the Event Hub
  ``{"records": [...]}`` batch) — the envelope without the log goes to ``attributes.azure``;
* GKE Cloud Audit Logs (``protoPayload``): see ``_sql.GCP_SELECT`` for the field mapping, which is
  documented in docs/formats-node-and-audit.md.

ECS: ``user.name`` = user.username, ``source.ip`` = sourceIPs[0], ``user_agent.original``,
``event.action`` = verb, ``event.outcome`` = failure when the authorizer's decision is forbid or the
response code is >= 400, success when a code < 400 exists, else unknown; ``kubernetes.namespace`` =
objectRef.namespace; ``@timestamp`` = stageTimestamp, else requestReceivedTimestamp, else the
receive time. ``message`` is a one-line summary: ``<user> <verb> <resource>[/<sub>] <ns>/<name> -> <code>``.

Decoding is one DuckDB pass: ``from_json`` with a fixed structure parses every line once, keeping
``requestObject`` / ``responseObject`` / ``annotations`` as raw JSON text. A chunk with an invalid
line takes a guarded second pass; invalid lines keep what regexes can salvage (auditID, verb, user,
objectRef, ...), flagged ``invalid_json`` — a cut RequestResponse line still says who did what.

``event.id`` stays origin-derived (``<prefix>-<offset>``) although the same auditID+stage may arrive
both from the file and from the webhook: dedup across the two is the query layer's business
(``kubernetes.audit.auditID`` + ``stage``); ids must stay unique per delivery path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats import _duck
from kubetrail.formats._audit_sql import AUDIT_SQL_GUARDED, FAST_SQL, VALID_SQL, params_for
from kubetrail.formats._flags import Flags
from kubetrail.formats._lineparser import LineParser, Rows
from kubetrail.formats.base import register_parser
from kubetrail.schema import TIMESTAMP

__all__ = ["AuditParser", "events_to_batch"]

# SQL result column -> schema column
_COLUMNS: Mapping[str, str] = {
    "auditID": "kubernetes.audit.auditID",
    "level": "kubernetes.audit.level",
    "stage": "kubernetes.audit.stage",
    "verb": "kubernetes.audit.verb",
    "requestURI": "kubernetes.audit.requestURI",
    "username": "kubernetes.audit.user.username",
    "uid": "kubernetes.audit.user.uid",
    "groups": "kubernetes.audit.user.groups",
    "impersonated": "kubernetes.audit.impersonatedUser.username",
    "sourceIPs": "kubernetes.audit.sourceIPs",
    "userAgent": "kubernetes.audit.userAgent",
    "resource": "kubernetes.audit.objectRef.resource",
    "subresource": "kubernetes.audit.objectRef.subresource",
    "namespace": "kubernetes.audit.objectRef.namespace",
    "name": "kubernetes.audit.objectRef.name",
    "apiGroup": "kubernetes.audit.objectRef.apiGroup",
    "apiVersion": "kubernetes.audit.objectRef.apiVersion",
    "code": "kubernetes.audit.responseStatus.code",
    "reason": "kubernetes.audit.responseStatus.reason",
    "annotations": "kubernetes.audit.annotations",
    "requestObject": "kubernetes.audit.requestObject",
    "responseObject": "kubernetes.audit.responseObject",
    "attributes": "attributes",
    "message": "message",
    "action": "event.action",
    "outcome": "event.outcome",
}
_PROBLEMS = {
    "invalid_json": "not JSON; fields salvaged by pattern where found",
    "not_audit_event": "JSON object that is no audit Event, EventList or known cloud envelope",
    "not_k8s_audit": "cloud audit record about something other than Kubernetes",
    "bad_event": "EventList item or AKS properties.log is not a JSON object",
}


def _run(sql: str, table: pa.Table) -> pa.Table:
    return _duck.run(sql, params_for(sql), t=table)


def _decode(table: pa.Table) -> pa.Table:
    """All lines -> one row per event, sorted by (line, item).

    The fast query parses native Events once; lines of another shape (EventList, envelopes) and,
    when some line is not JSON (the fast query then fails as a whole), the lines that are not
    valid objects go through the full guarded query.
    """
    try:
        fast = _run(FAST_SQL, table)
    except Exception:  # a line that is not JSON: split valid from invalid once, cheaply
        valid_li = _run(VALID_SQL, table)["li"]
        valid = pc.is_in(table["li"], value_set=valid_li.combine_chunks())
        fast = _run(FAST_SQL, table.filter(valid)) if pc.any(valid).as_py() else None
    if fast is not None:
        is_event = pc.equal(fast["shape"], "event")
        done = fast.filter(is_event)
        rest = table.filter(pc.invert(pc.is_in(table["li"], value_set=done["li"].combine_chunks())))
    else:
        done, rest = None, table
    parts = [done] if done is not None and done.num_rows else []
    if rest.num_rows:
        parts.append(
            _run(AUDIT_SQL_GUARDED, rest).cast(parts[0].schema) if parts else _run(AUDIT_SQL_GUARDED, rest)
        )
    if len(parts) == 1 and done is not None and parts[0] is done:
        return done  # native Events only: DuckDB kept the input order, one row per line
    out = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return out.sort_by([("li", "ascending"), ("item", "ascending")])


def _us_to_ts(col: pa.Array) -> pa.Array:
    return pc.multiply(col.cast(pa.int64()), 1000).cast(TIMESTAMP)


@register_parser("audit")
class AuditParser(LineParser):
    """Audit log lines (file or webhook body); every shape above."""

    dataset = "audit"

    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        if len(text) == 0:
            return Rows({}, flags)
        table = pa.table({"li": pa.array(np.arange(len(text), dtype=np.int64)), "line": text})
        out = _decode(table)
        line_index = out["li"].combine_chunks()
        one_per_line = len(out) == len(text) and bool(
            np.array_equal(line_index.to_numpy(zero_copy_only=False), np.arange(len(text)))
        )
        row_flags = flags if one_per_line else flags.take(line_index)
        col = {name: out[name].combine_chunks() for name in out.column_names}
        problem = col["problem"]
        for reason, detail in _PROBLEMS.items():
            code = "invalid_json" if reason == "bad_event" else reason
            row_flags.add(code, pc.equal(problem, reason), detail)
        row_flags.add("empty_line", pc.equal(problem, "empty"), "empty line")
        row_flags.add("bad_timestamp", col["bad_ts"], "unparseable audit timestamp; receive time used")
        row_flags.add("bad_field", col["bad_code"], "responseStatus.code is not an integer")
        columns: dict[str, pa.Array] = {schema: col[sql] for sql, schema in _COLUMNS.items()}
        columns["kubernetes.audit.requestReceivedTimestamp"] = _us_to_ts(col["rrt_us"])
        columns["kubernetes.audit.stageTimestamp"] = _us_to_ts(col["st_us"])
        columns["@timestamp"] = pc.coalesce(
            columns["kubernetes.audit.stageTimestamp"], columns["kubernetes.audit.requestReceivedTimestamp"]
        )
        columns["user.name"] = col["username"]
        columns["source.ip"] = col["source_ip"]
        columns["user_agent.original"] = col["userAgent"]
        columns["kubernetes.namespace"] = col["namespace"]
        item = col["item"]
        suffix = pc.if_else(
            pc.is_valid(item),
            pc.binary_join_element_wise(".", item.cast(pa.string()), ""),
            pa.scalar(None, pa.string()),
        )
        if one_per_line:
            return Rows(columns, row_flags)
        return Rows(columns, row_flags, line_index=line_index, id_suffix=suffix)


def events_to_batch(
    events: Iterable[Mapping[str, Any]], origin: Origin, now: datetime | None = None
) -> pa.RecordBatch:
    """Audit events as dicts (any shape above) -> a full-schema batch, through the same bulk path.

    For the detection helper's labelled data and for receivers that already hold decoded JSON.
    ``event.id`` is ``origin.id_prefix()-<origin.offset + index>``. Never raises for bad events.
    """
    texts = []
    for event in events:
        try:
            texts.append(orjson.dumps(event).decode())
        except (TypeError, orjson.JSONEncodeError) as exc:
            texts.append(f"unserializable event: {exc}")
    offsets = np.arange(len(texts), dtype=np.int64) + origin.offset
    return AuditParser().build(pa.array(texts, pa.string()), offsets, origin, now or datetime.now(UTC))
