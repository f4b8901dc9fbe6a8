"""Structured records (forward, OTLP, ``_bulk``) -> full-schema batches.

Records arrive as dicts already parsed by their protocol, so the mapping is a per-record dict walk
(the protocols hand them over one by one; there is no byte layout to vectorize). What is mapped:

- the message: ``log``, ``message``, ``msg`` or ``MESSAGE``;
- Fluent Bit's kubernetes filter (``kubernetes: {pod_name, namespace_name, pod_id, container_name,
  container_image, docker_id, container_hash, host, labels}`` — nested or as dotted keys);
- ECS-shaped documents (Filebeat): ``kubernetes.pod.name``, ``host.name``, ``log.level`` ... as given;
- ``stream``, ``level``/``severity``, ``host``/``hostname``;
- every other key into ``attributes`` (JSON), so nothing a sender sent is lost.

Each record gets ``event.id = <id_prefix>-<index>``; callers choose a prefix that is stable under
retries (a forward chunk id, a bulk ``_id``) or under replay (the WAL sequence number).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.schema import SCHEMA, conform

__all__ = ["MappedRecord", "extract_message_payload", "nesting_depth_exceeds", "records_to_batch"]

MappedRecord = tuple[int | None, Mapping[str, Any]]  # (time in ns since the epoch or None, record)

_K8S_KEYS: Mapping[str, str] = {
    "pod_name": "kubernetes.pod.name",
    "namespace_name": "kubernetes.namespace",
    "pod_id": "kubernetes.pod.uid",
    "container_name": "kubernetes.container.name",
    "container_image": "container.image.name",
    "docker_id": "container.id",
    "host": "host.name",
}
_MESSAGE_KEYS = ("log", "message", "msg", "MESSAGE")
_LEVELS = {
    "warn": "warning",
    "warning": "warning",
    "err": "error",
    "error": "error",
    "fatal": "critical",
    "crit": "critical",
    "critical": "critical",
    "info": "info",
    "information": "info",
    "debug": "debug",
    "trace": "trace",
    "notice": "info",
}
_COLUMNS = frozenset(SCHEMA.names)
_STRING_COLUMNS = frozenset(f.name for f in SCHEMA if pa.types.is_string(f.type))
_INT_BITS: Mapping[str, int] = {f.name: f.type.bit_width for f in SCHEMA if pa.types.is_integer(f.type)}


def nesting_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether lists/maps in ``value`` nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=_default).decode()


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _fits(value: Any, bits: int) -> bool:
    limit = 1 << (bits - 1)
    return isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit


def _flatten_kubernetes(record: Mapping[str, Any], out: dict[str, Any], rest: dict[str, Any]) -> None:
    k8s = record.get("kubernetes")
    if isinstance(k8s, Mapping):
        for key, value in k8s.items():
            key = _text(key) or ""
            if key in _K8S_KEYS:
                out[_K8S_KEYS[key]] = _text(value)
            elif key == "labels" and isinstance(value, Mapping):
                out["kubernetes.labels"] = _text(dict(value))
            elif key == "container_hash":
                out.setdefault("attributes.container_hash", _text(value))
            else:
                rest[f"kubernetes.{key}"] = value


def map_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One record -> {schema column: value}, the unmapped rest under ``attributes``."""
    out: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    _flatten_kubernetes(record, out, rest)
    for raw_key, value in record.items():
        key = _text(raw_key) or ""
        if key == "kubernetes" and isinstance(value, Mapping):
            continue
        if key in _MESSAGE_KEYS and "message" not in out:
            out["message"] = _text(value)
        elif key.startswith("kubernetes.") and key[11:] in _K8S_KEYS:
            out[_K8S_KEYS[key[11:]]] = _text(value)
        elif key == "stream":
            out["stream"] = _text(value)
        elif key in ("level", "severity", "log.level"):
            level = (_text(value) or "").lower()
            out["log.level"] = _LEVELS.get(level, level or None)
        elif key in ("host", "hostname") and "host.name" not in out:
            out["host.name"] = _text(value)
        elif key in _STRING_COLUMNS and key not in ("event.id", "@timestamp", "attributes"):
            out[key] = _text(value)
        elif key in _INT_BITS and _fits(value, _INT_BITS[key]):
            out[key] = value
        else:
            rest[key] = value
    hash_ = out.pop("attributes.container_hash", None)
    if hash_ is not None:
        rest["kubernetes.container_hash"] = hash_
    if rest:
        out["attributes"] = orjson.dumps(rest, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
    return out


def records_to_batch(
    records: Sequence[MappedRecord],
    *,
    id_prefix: str,
    dataset: str,
    module: str,
    extra: Mapping[str, Any] | None = None,
    ids: Sequence[str] | None = None,
) -> pa.RecordBatch:
    """Map ``records`` into one batch; ``extra`` columns (e.g. host.name of the sender) fill gaps.

    ``ids`` overrides the generated ``<id_prefix>-<index>`` event ids (e.g. from bulk ``_id``).
    """
    n = len(records)
    columns: dict[str, list[Any]] = {}
    for index, (_, record) in enumerate(records):
        for key, value in map_record(record).items():
            columns.setdefault(key, [None] * n)[index] = value
    for key, value in (extra or {}).items():
        col = columns.setdefault(key, [None] * n)
        for i in range(n):
            if col[i] is None:
                col[i] = value
    arrays: dict[str, pa.Array] = {
        name: pa.array(values, type=SCHEMA.field(name).type)
        for name, values in columns.items()
        if name in _COLUMNS
    }
    arrays["event.id"] = pa.array(list(ids) if ids is not None else [f"{id_prefix}-{i}" for i in range(n)])
    arrays["@timestamp"] = pa.array([t for t, _ in records], type=pa.int64()).cast(
        SCHEMA.field("@timestamp").type
    )
    arrays["event.dataset"] = pa.array([dataset] * n)
    arrays["event.module"] = pa.array([module] * n)
    return conform(arrays, n)


def extract_message_payload(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Read JSON / logfmt application logs inside ``message`` with the formats' payload extraction.

    Fluent Bit forwards a container's line as ``log``; when that is ``{"level": "error", "msg": ...}``
    the level, message, logger and error fields fill their columns (where the record did not set
    them) and the payload's fields join ``attributes`` (the record's own keys win on a clash).
    """
    from kubetrail.formats.payload import extract_payload

    if batch.num_rows == 0:
        return batch
    message = batch.column(SCHEMA.get_field_index("message"))
    extracted = extract_payload(message)
    for name, values in extracted.items():
        if name not in _COLUMNS or len(values) != batch.num_rows:
            continue
        i = SCHEMA.get_field_index(name)
        current = batch.column(i)
        if name == "message":
            merged = pc.coalesce(values.cast(current.type), current)
        elif name == "attributes":
            merged = _merge_json(current, values)
        else:
            merged = pc.coalesce(current, values.cast(current.type))
        batch = batch.set_column(i, SCHEMA.field(i), merged)
    return batch


def _merge_json(record_attrs: pa.Array, payload_attrs: pa.Array) -> pa.Array:
    both = pc.and_(pc.is_valid(record_attrs), pc.is_valid(payload_attrs))
    merged = pc.coalesce(record_attrs, payload_attrs.cast(pa.string()))
    if not pc.any(both).as_py():
        return merged
    out = merged.to_pylist()
    rec, pay = record_attrs.to_pylist(), payload_attrs.to_pylist()
    for i in np.flatnonzero(both.to_numpy(zero_copy_only=False)):  # rows with both: merge the objects
        try:
            out[i] = orjson.dumps({**orjson.loads(pay[i]), **orjson.loads(rec[i])}).decode()
        except (orjson.JSONDecodeError, TypeError):
            out[i] = rec[i]
    return pa.array(out, pa.string())
