"""kube-apiserver audit events: one ``audit.k8s.io/v1`` Event per line, EventList bodies, and the
AKS and GKE cloud envelopes — all mapped onto ``kubernetes.audit.*`` and ECS.

Shapes, sniffed per line:

* native ``Event`` (the audit log file, EKS CloudWatch export) and ``EventList`` (the audit webhook
  body; each item becomes a row, its ``event.id`` suffixed ``.<index>``);
* AKS diagnostic records (``properties.log`` holds the Event as a JSON string; also the Event Hub
  ``{"records": [...]}`` batch) — the envelope without the log goes to ``attributes.azure``;
* GKE Cloud Audit Logs (``protoPayload``): mapping documented in ``_audit_sql``.

ECS: ``user.name`` = user.username, ``source.ip`` = sourceIPs[0], ``user_agent.original``,
``event.action`` = verb, ``event.outcome`` = failure when the authorizer's decision is forbid or the
response code is >= 400, success when a code < 400 exists, else unknown; ``kubernetes.namespace`` =
objectRef.namespace; ``@timestamp`` = stageTimestamp, else requestReceivedTimestamp, else the
receive time. ``message`` is a one-line summary: ``<user> <verb> <resource>[/<sub>] <ns>/<name> -> <code>``.

Decoding: DuckDB's ``from_json`` parses each line once into a fixed struct (``requestObject``,
``responseObject``, ``annotations`` stay raw JSON text) and Arrow kernels take the fields out. When
a chunk holds a line that is not JSON (the bulk parse then fails as a whole), validity is computed
once and the invalid lines keep what patterns can salvage (auditID, verb, user, objectRef, ...),
flagged ``bad_json`` — a cut RequestResponse line still says who did what.

``event.id`` stays origin-derived (``<prefix>-<offset>``) although the same auditID+stage may arrive
both from the file and from the webhook: ids must be unique per delivery path, and matching the two
copies is the query layer's business (``kubernetes.audit.auditID`` + ``stage``).
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
from kubetrail.formats._audit_sql import (
    AZURE_SQL,
    EVENTS_SQL,
    EVENTS_SQL_GUARDED,
    GCP_SQL,
    VALID_SQL,
    params_for,
)
from kubetrail.formats._flags import Flags
from kubetrail.formats._lineparser import LineParser, Rows
from kubetrail.formats._times import parse_rfc3339
from kubetrail.formats.base import register_parser

__all__ = ["AuditParser", "events_to_batch"]

_STR = pa.string()
# The columns every shape is brought to before the common finishing step.
_RAW_TEXT = [
    "auditID",
    "level",
    "stage",
    "verb",
    "requestURI",
    "username",
    "uid",
    "impersonated",
    "userAgent",
    "resource",
    "subresource",
    "namespace",
    "name",
    "apiGroup",
    "apiVersion",
    "code_text",
    "reason",
    "annotations",
    "requestObject",
    "responseObject",
    "rrt_text",
    "st_text",
    "decision",
    "attributes",
    "method",
    "problem",
]
RAW_SCHEMA = pa.schema(
    [("li", pa.int64()), ("item", pa.int64())]
    + [(name, _STR) for name in _RAW_TEXT]
    + [("groups", pa.list_(_STR)), ("sourceIPs", pa.list_(_STR))]
)
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
    "reason": "kubernetes.audit.responseStatus.reason",
    "annotations": "kubernetes.audit.annotations",
    "requestObject": "kubernetes.audit.requestObject",
    "responseObject": "kubernetes.audit.responseObject",
    "attributes": "attributes",
}
_PROBLEMS = {
    "bad_json": ("bad_json", "not JSON; fields salvaged by pattern where found"),
    "bad_event": ("bad_json", "EventList item or AKS properties.log is not a JSON object"),
    "not_audit_event": ("not_audit_event", "JSON object that is no audit Event, EventList or cloud envelope"),
    "not_k8s_audit": ("not_k8s_audit", "cloud audit record about something other than Kubernetes"),
    "empty": ("empty_line", "empty line"),
}
_SALVAGE = {  # one named group ``v`` each
    "auditID": r'"auditID":"(?P<v>[^"]*)"',
    "level": r'"level":"(?P<v>[^"]*)"',
    "stage": r'"stage":"(?P<v>[^"]*)"',
    "verb": r'"verb":"(?P<v>[^"]*)"',
    "requestURI": r'"requestURI":"(?P<v>[^"]*)"',
    "username": r'"user":\{"username":"(?P<v>[^"]*)"',
    "userAgent": r'"userAgent":"(?P<v>[^"]*)"',
    "code_text": r'"responseStatus":\{(?:[^{}]|\{[^{}]*\})*?"code":(?P<v>[0-9]+)',
    "rrt_text": r'"requestReceivedTimestamp":"(?P<v>[^"]*)"',
    "st_text": r'"stageTimestamp":"(?P<v>[^"]*)"',
}
_SALVAGE_REF = ("resource", "subresource", "namespace", "name", "apiGroup", "apiVersion")
_NULL = pa.scalar(None, _STR)


def _run(sql: str, table: pa.Table) -> pa.Table:
    return _duck.run(sql, params_for(sql), t=table)


def _nonempty(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(arr, ""), _NULL, arr)


def _conform(columns: dict[str, pa.Array], n: int) -> pa.Table:
    arrays = []
    for field in RAW_SCHEMA:
        col = columns.get(field.name)
        arrays.append(pa.nulls(n, field.type) if col is None else col.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)


# --- shapes ------------------------------------------------------------------------------------------


def _parse_events(t: pa.Table, guarded: bool) -> pa.Table:
    """(li, item, line, env) -> (li, item, e, decision, attributes); ``e`` null for non-objects."""
    return _run(EVENTS_SQL_GUARDED if guarded else EVENTS_SQL, t)


def _native(parsed: pa.Table) -> tuple[pa.Table, pa.Array]:
    """Raw columns of native Events, and the struct (for the envelope shapes' sniffing)."""
    e = parsed["e"].combine_chunks()

    def f(*path: str) -> pa.Array:
        return pc.struct_field(e, list(path))

    columns = {
        "li": parsed["li"].combine_chunks(),
        "item": parsed["item"].combine_chunks(),
        "auditID": f("auditID"),
        "level": f("level"),
        "stage": f("stage"),
        "verb": f("verb"),
        "requestURI": f("requestURI"),
        "username": f("user", "username"),
        "uid": f("user", "uid"),
        "groups": f("user", "groups"),
        "impersonated": _json_username(f("impersonatedUser")),
        "sourceIPs": f("sourceIPs"),
        "userAgent": f("userAgent"),
        "resource": f("objectRef", "resource"),
        "subresource": f("objectRef", "subresource"),
        "namespace": f("objectRef", "namespace"),
        "name": f("objectRef", "name"),
        "apiGroup": f("objectRef", "apiGroup"),
        "apiVersion": f("objectRef", "apiVersion"),
        "code_text": f("responseStatus", "code"),
        "reason": f("responseStatus", "reason"),
        "annotations": f("annotations"),
        "requestObject": f("requestObject"),
        "responseObject": f("responseObject"),
        "rrt_text": f("requestReceivedTimestamp"),
        "st_text": f("stageTimestamp"),
        "decision": parsed["decision"].combine_chunks(),
        "attributes": _attributes(
            [
                ("user.extra", f("user", "extra")),
                ("impersonatedUser", f("impersonatedUser")),
                ("objectRef.uid", _json_string(f("objectRef", "uid"))),
                ("objectRef.resourceVersion", _json_string(f("objectRef", "resourceVersion"))),
                ("responseStatus.status", _json_string(f("responseStatus", "status"))),
                ("responseStatus.message", _json_string(f("responseStatus", "message"))),
            ],
            parsed["env"].combine_chunks(),
        ),
    }
    looks_like_event = pc.or_(
        pc.equal(pc.fill_null(columns["verb"].is_valid(), False), True),
        pc.or_(
            pc.fill_null(pc.equal(f("kind"), "Event"), False),
            pc.or_(
                pc.or_(columns["auditID"].is_valid(), f("objectRef").is_valid()),
                f("user").is_valid(),
            ),
        ),
    )
    problem = pc.if_else(e.is_valid(), pc.if_else(looks_like_event, _NULL, "not_audit_event"), "bad_event")
    columns["problem"] = problem
    return _conform(columns, len(e)), e


def _json_string(values: pa.Array) -> pa.Array:
    """Strings as JSON string literals (null stays null); rare control characters become U+FFFD."""
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    if pc.any(pc.fill_null(pc.match_substring_regex(escaped, r"[\x00-\x1f]"), False)).as_py():
        for raw, code in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            escaped = pc.replace_substring(escaped, raw, code)
        escaped = pc.replace_substring_regex(escaped, r"[\x00-\x1f]", "\ufffd")
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _attributes(members: list[tuple[str, pa.Array]], envelope: pa.Array) -> pa.Array:
    """``{"key":<json>,...}`` of the non-null members plus the envelope fragment; null when empty."""
    parts = [pc.binary_join_element_wise(f'"{key}":', value, "") for key, value in members]
    joined = envelope.cast(_STR)
    for part in reversed(parts):
        joined = pc.coalesce(pc.binary_join_element_wise(part, joined, ","), part, joined)
    return pc.binary_join_element_wise("{", joined, "}", "")


def _json_username(impersonated: pa.Array) -> pa.Array:
    found = pc.extract_regex(pc.fill_null(impersonated, ""), r'"username":"(?P<u>(?:[^"\\]|\\.)*)"')
    return _nonempty(pc.struct_field(found, "u"))


def _explode(lines: pa.Array, lists: pa.Array, li: pa.Array) -> pa.Table:
    """Items of ``lists`` (list<string>) as rows (li, item, line) keeping the parent's li."""
    parents = pc.list_parent_indices(lists)
    flat = pc.list_flatten(lists)
    offsets = np.asarray(lists.offsets.to_numpy(), dtype=np.int64)
    parent_np = np.asarray(parents.to_numpy(zero_copy_only=False), dtype=np.int64)
    item = np.arange(len(flat), dtype=np.int64) - (offsets[parent_np] - offsets[0])
    return pa.table({"li": li.take(parents), "item": pa.array(item), "line": flat.cast(_STR)})


def _events_of(t: pa.Table) -> pa.Table:
    """Second level (EventList items, AKS logs): every row is treated as an Event."""
    parsed = _parse_events(t, guarded=True)
    raw, _ = _native(parsed)
    return raw


def _azure(t: pa.Table) -> pa.Table:
    """AKS records (li, item, line) -> raw rows; records without ``properties.log`` are not K8s."""
    out = _run(AZURE_SQL, t)
    log = out["log"].combine_chunks()
    with_log = pc.is_valid(log)
    parts = []
    if pc.any(with_log).as_py():
        sub = out.filter(with_log)
        parts.append(
            _events_of(
                pa.table({"li": sub["li"], "item": sub["item"], "line": sub["log"], "env": sub["env"]})
            )
        )
    if not pc.all(with_log).as_py():
        sub = out.filter(pc.invert(with_log))
        n = sub.num_rows
        parts.append(
            _conform(
                {
                    "li": sub["li"].combine_chunks(),
                    "item": sub["item"].combine_chunks(),
                    "method": sub["operation"].combine_chunks(),
                    "attributes": pc.binary_join_element_wise("{", sub["env"].combine_chunks(), "}", ""),
                    "problem": pa.repeat(pa.scalar("not_k8s_audit"), n),
                },
                n,
            )
        )
    return pa.concat_tables(parts)


def _salvage(t: pa.Table) -> pa.Table:
    """Lines that are not JSON: what patterns find, flagged (``empty`` for empty lines)."""
    line = t["line"].combine_chunks()
    n = len(line)

    def find(text: pa.Array, pattern: str) -> pa.Array:
        return _nonempty(pc.struct_field(pc.extract_regex(text, pattern), "v"))

    columns: dict[str, pa.Array] = {"li": t["li"].combine_chunks()}
    for name, pattern in _SALVAGE.items():
        columns[name] = find(line, pattern)
    object_ref = pc.fill_null(find(line, r'"objectRef":\{(?P<v>[^{}]*)\}'), "")
    for name in _SALVAGE_REF:
        columns[name] = find(object_ref, f'"{name}":"(?P<v>[^"]*)"')
    ip = find(line, r'"sourceIPs":\["(?P<v>[^"]*)"')
    offsets = pa.array(np.arange(n + 1, dtype=np.int32))
    columns["sourceIPs"] = pa.ListArray.from_arrays(offsets, pc.fill_null(ip, ""), mask=ip.is_null())
    columns["problem"] = pc.if_else(pc.equal(pc.utf8_length(line), 0), "empty", "bad_json")
    return _conform(columns, n)


def _decode(lines: pa.Array) -> pa.Table:
    """All lines -> raw rows, one per event, sorted by (line, item)."""
    n = len(lines)
    li = pa.array(np.arange(n, dtype=np.int64))
    base = pa.table({"li": li, "item": pa.nulls(n, pa.int64()), "line": lines, "env": pa.nulls(n, _STR)})
    try:
        parsed = _parse_events(base, guarded=False)
        invalid = None
    except Exception:  # a line that is not JSON fails the bulk parse: split valid from invalid once
        ok = pc.fill_null(_run(VALID_SQL, base)["ok"].combine_chunks(), False)
        invalid = base.filter(pc.invert(ok))
        valid = base.filter(ok)
        parsed = _parse_events(valid, guarded=False) if valid.num_rows else None
    parts: list[pa.Table] = []
    if invalid is not None and invalid.num_rows:
        parts.append(_salvage(invalid))
    if parsed is not None and parsed.num_rows:
        raw, e = _native(parsed)
        items = pc.struct_field(e, "items")
        records = pc.struct_field(e, "records")
        proto = pc.struct_field(e, "protoPayload")
        azure = pc.or_(
            pc.or_(pc.struct_field(e, "properties").is_valid(), pc.struct_field(e, "category").is_valid()),
            pc.struct_field(e, "operationName").is_valid(),
        )
        kind = pc.struct_field(e, "kind")
        is_list = pc.or_(items.is_valid(), pc.fill_null(pc.equal(kind, "EventList"), False))
        is_records = pc.and_(pc.invert(is_list), records.is_valid())
        is_gcp = pc.and_(pc.invert(pc.or_(is_list, is_records)), proto.is_valid())
        is_azure = pc.and_(pc.invert(pc.or_(pc.or_(is_list, is_records), is_gcp)), azure)
        other = pc.or_(pc.or_(is_list, is_records), pc.or_(is_gcp, is_azure))
        if not parts and not pc.any(other).as_py():
            return raw  # native Events only: in input order, one row per line
        parts.append(raw.filter(pc.invert(other)))
        line_of = parsed["li"].combine_chunks()
        text = lines.take(line_of)
        if pc.any(is_list).as_py():
            lists = pc.filter(items, is_list)
            lists = pc.if_else(lists.is_valid(), lists, pa.scalar([], lists.type))
            exploded = _explode(text, lists, pc.filter(line_of, is_list))
            if exploded.num_rows:
                parts.append(_events_of(exploded.append_column("env", pa.nulls(exploded.num_rows, _STR))))
        if pc.any(is_records).as_py():
            parts.append(
                _azure(_explode(text, pc.filter(records, is_records), pc.filter(line_of, is_records)))
            )
        if pc.any(is_azure).as_py():
            azure_li = pc.filter(line_of, is_azure)
            nulls = pa.nulls(len(azure_li), pa.int64())
            parts.append(_azure(pa.table({"li": azure_li, "item": nulls, "line": pc.filter(text, is_azure)})))
        if pc.any(is_gcp).as_py():
            gcp = _run(GCP_SQL, pa.table({"li": pc.filter(line_of, is_gcp), "line": pc.filter(text, is_gcp)}))
            parts.append(gcp.select(RAW_SCHEMA.names).cast(RAW_SCHEMA))
    table = pa.concat_tables([p.select(RAW_SCHEMA.names).cast(RAW_SCHEMA) for p in parts])
    return table.sort_by([("li", "ascending"), ("item", "ascending")])


# --- finishing -----------------------------------------------------------------------------------------


def _finish(raw: pa.Table, flags: Flags) -> dict[str, pa.Array]:
    col = {name: raw[name].combine_chunks() for name in raw.column_names}
    for problem, (reason, detail) in _PROBLEMS.items():
        flags.add(reason, pc.equal(col["problem"], problem), detail)
    code = pc.cast(
        pc.if_else(pc.match_substring_regex(col["code_text"], r"^\d{1,9}$"), col["code_text"], _NULL),
        pa.int64(),
    )
    flags.add(
        "bad_field",
        pc.and_(col["code_text"].is_valid(), code.is_null()),
        "responseStatus.code is not an integer",
    )
    received, bad_received = parse_rfc3339(col["rrt_text"])
    staged, bad_staged = parse_rfc3339(col["st_text"])
    flags.add(
        "bad_timestamp", pc.or_(bad_received, bad_staged), "unparseable audit timestamp; receive time used"
    )
    columns: dict[str, pa.Array] = {schema: col[name] for name, schema in _COLUMNS.items()}
    columns["kubernetes.audit.responseStatus.code"] = code
    columns["kubernetes.audit.requestReceivedTimestamp"] = received
    columns["kubernetes.audit.stageTimestamp"] = staged
    columns["@timestamp"] = pc.coalesce(staged, received)
    columns["user.name"] = col["username"]
    columns["source.ip"] = _first(col["sourceIPs"])
    columns["user_agent.original"] = col["userAgent"]
    columns["kubernetes.namespace"] = col["namespace"]
    not_k8s = pc.fill_null(pc.equal(col["problem"], "not_k8s_audit"), False)
    columns["event.action"] = pc.if_else(not_k8s, pc.coalesce(col["method"], col["verb"]), col["verb"])
    failure = pc.or_(
        pc.fill_null(pc.equal(col["decision"], "forbid"), False),
        pc.fill_null(pc.greater_equal(code, 400), False),
    )
    columns["event.outcome"] = pc.if_else(
        failure, "failure", pc.if_else(code.is_valid(), "success", "unknown")
    )
    columns["message"] = _summary(col, code)
    return columns


def _first(lists: pa.Array) -> pa.Array:
    """First element of each list (null for null or empty lists)."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0)
    safe = pc.if_else(pc.greater(lengths, 0), lists, pa.scalar(["-"], lists.type))
    return pc.if_else(pc.greater(lengths, 0), pc.list_element(safe, 0), _NULL)


def _summary(col: dict[str, pa.Array], code: pa.Array) -> pa.Array:
    """``<user> <verb> <resource>[/<sub>] <ns>/<name> -> <code>``; null for lines with nothing to say."""
    sub = pc.fill_null(pc.binary_join_element_wise("/", col["subresource"], ""), "")
    name = pc.fill_null(col["name"], "*")
    target = pc.coalesce(pc.binary_join_element_wise(col["namespace"], name, "/"), name)
    resource = pc.binary_join_element_wise(pc.binary_join_element_wise(col["resource"], sub, ""), target, " ")
    what = pc.coalesce(resource, col["requestURI"], pa.scalar("-"))
    parts = [
        pc.fill_null(col["username"], "-"),
        pc.coalesce(col["verb"], col["method"], pa.scalar("-")),
        what,
        pa.repeat(pa.scalar("->"), len(code)),
        pc.fill_null(code.cast(_STR), "-"),
    ]
    message = pc.binary_join_element_wise(*parts, " ")
    nothing = pc.and_(
        pc.and_(col["username"].is_null(), col["verb"].is_null()),
        pc.is_in(col["problem"], value_set=pa.array(["empty", "bad_json", "not_audit_event", "bad_event"])),
    )
    return pc.if_else(nothing, _NULL, message)


@register_parser("audit")
class AuditParser(LineParser):
    """Audit log lines (file or webhook body); every shape above."""

    dataset = "audit"

    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        if len(text) == 0:
            return Rows({}, flags)
        raw = _decode(text)
        line_index = raw["li"].combine_chunks()
        one_per_line = len(raw) == len(text) and bool(
            np.array_equal(line_index.to_numpy(zero_copy_only=False), np.arange(len(text)))
        )
        row_flags = flags if one_per_line else flags.take(line_index)
        columns = _finish(raw, row_flags)
        if one_per_line:
            return Rows(columns, row_flags)
        item = raw["item"].combine_chunks()
        suffix = pc.if_else(item.is_valid(), pc.binary_join_element_wise(".", item.cast(_STR), ""), _NULL)
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
