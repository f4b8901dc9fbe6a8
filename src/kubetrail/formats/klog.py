"""klog: the Kubernetes components' log format, plain and structured.

``I0505 17:59:40.692994   28133 file.go:70] message`` — severity I/W/E/F, month and day (no year),
time, thread id, source file:line. Structured klog (``InfoS``/``ErrorS``) writes the message quoted
and then ``key="value" key2=3`` pairs: the message is unquoted and the pairs become the
``attributes`` JSON object (numbers, booleans and JSON-looking values keep their type).

The year is inferred (see ``_times.infer_year``). The header is one RE2 extraction over the Arrow
column; the structured rest is split into message and pairs with Arrow kernels (``_klog_pairs``).

``parse_klog_messages(batch)`` applies the same to the ``message`` column of an already parsed
batch: control-plane static pods write klog into CRI files, so the dispatcher upgrades those rows
after CRI parsing (the CRI timestamp is then the reference for the year).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats import _duck
from kubetrail.formats._flags import Flags
from kubetrail.formats._klog_pairs import split_structured
from kubetrail.formats._lineparser import LineParser, Rows
from kubetrail.formats._text import extract_head, slice_fixed
from kubetrail.formats._times import fraction_to_ns, infer_year, now_ns, ns_to_timestamp, to_ns
from kubetrail.formats.base import register_parser
from kubetrail.formats.kernels import first_bytes, from_np, scatter, to_np
from kubetrail.schema import TIMESTAMP

__all__ = ["CONTROL_PLANE_COMPONENTS", "KlogParser", "apply_klog", "klog_columns", "parse_klog_messages"]

# The header only (fixed-width date and time are sliced by position); the message is the rest.
KLOG_HEAD = (
    r"(?P<sev>[IWEF])\d{4} \d\d:\d\d:\d\d(?:\.(?P<frac>\d{1,9}))?"
    r"\s+(?P<pid>\d{1,18}) (?P<file>[^:\]\s]+):(?P<line>\d{1,9})\] ?"
)
_KLOG_FIRST = np.zeros(256, dtype=bool)
_KLOG_FIRST[np.frombuffer(b"IWEF", dtype=np.uint8)] = True
_LEVELS = pa.array(["info", "warning", "error", "critical"])
_SEVERITIES = pa.array(["I", "W", "E", "F"])
CONTROL_PLANE_COMPONENTS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "cloud-controller-manager",
    "etcd",
)


def _dataset(origin: Origin) -> str:
    where = f"{origin.path or ''} {origin.metadata.get('kubernetes.container.name', '')}"
    return "controlplane" if any(c in where for c in CONTROL_PLANE_COMPONENTS) else "node"


def klog_columns(text: pa.Array, reference_ns: np.ndarray) -> tuple[dict[str, pa.Array], pa.Array, pa.Array]:
    """klog fields of every row of ``text``.

    Returns (columns, matched mask, bad-timestamp mask). Columns hold nulls where a row is no klog
    line; ``@timestamp`` is null where the date is impossible.
    """
    parts, matched, rest = extract_head(text, KLOG_HEAD)
    head = pc.struct_field(parts, "m")

    def part(name: str) -> pa.Array:
        return pc.struct_field(parts, name)

    def at(start: int, stop: int) -> np.ndarray:
        return to_ns(pc.cast(slice_fixed(head, start, stop), pa.int64()))

    frac = fraction_to_ns(part("frac"))
    ts, valid = infer_year(at(1, 3), at(3, 5), at(6, 8), at(9, 11), at(12, 14), frac, reference_ns)
    matched_np = np.asarray(matched.to_numpy(zero_copy_only=False), dtype=bool)
    bad_ts = matched_np & ~valid
    columns: dict[str, pa.Array] = {
        "message": pc.if_else(matched, rest, pa.scalar(None, pa.string())),
        "log.level": pc.take(_LEVELS, pc.index_in(part("sev"), value_set=_SEVERITIES)),
        "@timestamp": ns_to_timestamp(ts, valid & matched_np),
        "process.pid": pc.cast(part("pid"), pa.int64()),
        "log.origin.file.name": part("file"),
        "log.origin.file.line": pc.cast(part("line"), pa.int32()),
    }
    structured = to_np(pc.and_(matched, pc.starts_with(pc.fill_null(rest, ""), '"')), False)
    if structured.any():
        rows = np.flatnonzero(structured)
        message, attributes = split_structured(rest.take(from_np(rows)))
        mask = from_np(structured)
        columns["message"] = pc.replace_with_mask(columns["message"], mask, message)
        columns["attributes"] = pc.replace_with_mask(pa.nulls(len(text), pa.string()), mask, attributes)
    return columns, matched, pa.array(bad_ts)


@register_parser("klog")
class KlogParser(LineParser):
    """klog files (kubelet.log, kube-apiserver.log, ... on nodes that log to files)."""

    def dataset_for(self, origin: Origin) -> str:
        return _dataset(origin)

    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        n = len(text)
        columns, matched, bad_ts = klog_columns(text, np.full(n, now_ns, dtype=np.int64))
        unmatched = pc.invert(matched)
        empty = pc.equal(pc.utf8_length(text), 0)
        flags.add("empty_line", empty, "empty line")
        flags.add(
            "bad_format", pc.and_(unmatched, pc.invert(empty)), "not a klog line; kept whole as the message"
        )
        flags.add("bad_timestamp", bad_ts, "impossible klog date/time; @timestamp is the receive time")
        columns["message"] = pc.if_else(matched, columns["message"], text)
        return Rows(columns, flags)


def apply_klog(
    columns: dict[str, pa.Array], reference_ns: np.ndarray, klog_key: str | None = None
) -> dict[str, pa.Array]:
    """Upgrade the rows of ``columns`` whose ``message`` is a klog line (other rows unchanged).

    The klog time replaces ``@timestamp`` (its year nearest ``reference_ns``) unless the date is
    impossible. Structured pairs are merged into ``attributes`` (a JSON object): at the top level,
    or under ``klog_key`` when the attributes hold something else (a whole journal entry).
    """
    message = columns.get("message")
    if message is None or len(message) == 0:
        return columns
    text = pc.fill_null(message, "") if message.null_count else message
    n = len(text)
    # a klog line starts with I, W, E or F: the regex and the date arithmetic run on those rows only
    candidates = np.flatnonzero(_KLOG_FIRST[first_bytes(text)])
    if candidates.size == 0:
        return columns
    if candidates.size == n:
        parsed, matched, bad_ts = klog_columns(text, reference_ns)
    else:
        sub_parsed, sub_matched, sub_bad = klog_columns(
            text.take(from_np(candidates)), reference_ns[candidates]
        )
        parsed = {name: scatter(values, candidates, n) for name, values in sub_parsed.items()}
        matched = scatter(sub_matched, candidates, n).fill_null(False)
        bad_ts = scatter(sub_bad, candidates, n).fill_null(False)
    if not pc.any(matched).as_py():
        return columns
    out = dict(columns)
    good_ts = pc.and_(matched, pc.invert(bad_ts))
    masks = {"@timestamp": good_ts}
    for name in (
        "message",
        "log.level",
        "@timestamp",
        "process.pid",
        "log.origin.file.name",
        "log.origin.file.line",
    ):
        old = out.get(name)
        new = parsed[name]
        mask = masks.get(name, matched)
        base = old.cast(new.type) if old is not None else pa.nulls(len(new), new.type)
        out[name] = pc.if_else(mask, new, base)
    if "attributes" in parsed:
        out["attributes"] = _merge_attributes(out.get("attributes"), parsed["attributes"], klog_key)
    return out


def parse_klog_messages(batch: pa.RecordBatch, now: datetime | None = None) -> pa.RecordBatch:
    """Upgrade rows of a full-schema batch whose ``message`` is a klog line.

    For control-plane static pods after CRI parsing: message, level, time, pid, source file:line,
    structured attributes. Rows that are no klog line are returned unchanged. The year of each klog
    time is the one nearest the row's existing ``@timestamp`` (the CRI time), or ``now`` when it has
    none; an impossible klog date keeps the existing ``@timestamp``. Structured pairs are merged into
    an existing ``attributes`` object (the klog pairs win on a clash).
    """
    if batch.num_rows == 0 or "message" not in batch.schema.names:
        return batch
    fallback = now_ns(now)
    if "@timestamp" in batch.schema.names:
        ref = to_ns(batch.column("@timestamp").cast(TIMESTAMP).cast(pa.int64()))
        ref = np.where(ref == -1, fallback, ref)
    else:
        ref = np.full(batch.num_rows, fallback, dtype=np.int64)
    names = batch.schema.names
    columns = {name: batch.column(name) for name in names}
    upgraded = apply_klog(columns, ref)
    for name, values in upgraded.items():
        if name in names and values is not columns.get(name):
            i = names.index(name)
            batch = batch.set_column(i, batch.schema.field(i), values.cast(batch.schema.field(i).type))
    return batch


def _merge_attributes(old: pa.Array | None, new: pa.Array, key: str | None) -> pa.Array:
    if key is not None:
        new = pc.if_else(
            pc.is_valid(new),
            pc.binary_join_element_wise(f'{{"{key}":', new, "}", ""),
            pa.scalar(None, pa.string()),
        )
    if old is None:
        return new
    both = pc.and_(pc.is_valid(old), pc.is_valid(new))
    if not pc.any(both).as_py():
        return pc.coalesce(new, old)
    merged = _duck.run(
        "SELECT CASE WHEN old IS NOT NULL AND new IS NOT NULL AND json_valid(old) "
        "THEN json_merge_patch(old, new)::VARCHAR ELSE coalesce(new, old) END AS m FROM t",
        t=pa.table({"old": old, "new": new}),
    )
    return merged["m"].combine_chunks()
