"""Plain node log files: kubelet.log, kube-proxy.log, containerd.log, anything the agent tails as ``file``.

These files have no declared format and mix shapes (kubelet writes klog, but its wrapper script or
systemd may add plain lines; containerd writes logfmt; other daemons write free text), so the shape
is sniffed per line, in bulk:

* **klog** (``I0505 17:59:40.692994 ... file.go:70] msg``, plain or structured): the klog parser's
  columns (level, time with inferred year, pid, source file:line, structured pairs as attributes);
* otherwise the container payload extraction (``payload.extract_payload``) limited to JSON, logfmt
  and plain text: containerd's ``time="..." level=info msg="..."`` gives level, message and the pairs
  as attributes; plain text gets ``log.level`` from a level token;
* for those non-klog lines a leading RFC 3339 timestamp, or one under a ``time`` / ``ts`` /
  ``timestamp`` key, becomes ``@timestamp`` (else the receive time).

``dispatch`` sends ``/var/log/syslog``-like files to the syslog parser instead (``paths.node_file_format``).
``event.dataset`` is ``node``, or ``controlplane`` for files named after a control-plane component.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats._flags import Flags
from kubetrail.formats._lineparser import LineParser, Rows
from kubetrail.formats._times import parse_rfc3339
from kubetrail.formats.base import register_parser
from kubetrail.formats.kernels import from_np, scatter, to_np
from kubetrail.formats.klog import CONTROL_PLANE_COMPONENTS, klog_columns
from kubetrail.formats.payload import extract_payload

__all__ = ["NodeLogParser"]

_PAYLOAD_KINDS = frozenset({"json", "logfmt", "plain"})
_TIME = (
    r'^(?:\[|.*?\b(?:time|ts|timestamp)"?[=:] ?"?)?'
    r"(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)"
)


def _leading_time(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(timestamp or null, mask of present-but-impossible) from a leading or ``time=`` RFC 3339 stamp."""
    found = pc.struct_field(pc.extract_regex(text, _TIME), "ts")
    found = pc.replace_substring(found, ",", ".")
    return parse_rfc3339(found)


@register_parser("nodelog")
class NodeLogParser(LineParser):
    """Node log files without a declared format: klog, logfmt, JSON or plain text, sniffed per line."""

    def dataset_for(self, origin: Origin) -> str:
        name = (origin.path or "").rsplit("/", 1)[-1]
        return "controlplane" if any(c in name for c in CONTROL_PLANE_COMPONENTS) else "node"

    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        n = len(text)
        columns, matched, bad_ts = klog_columns(text, np.full(n, now_ns, dtype=np.int64))
        flags.add("bad_timestamp", bad_ts, "impossible klog date/time; @timestamp is the receive time")
        other = np.flatnonzero(~to_np(matched, False))
        if other.size:
            sub = text if other.size == n else text.take(from_np(other))
            counts: Counter[str] = Counter()
            extracted = extract_payload(sub, counts, _PAYLOAD_KINDS)
            for key, count in counts.items():
                self.stats[key] = self.stats.get(key, 0) + count
            stamp, bad = _leading_time(sub)
            flags.add(
                "bad_timestamp",
                scatter(bad, other, n).fill_null(False),
                "impossible timestamp; @timestamp is the receive time",
            )
            extracted["@timestamp"] = stamp
            extracted["message"] = extracted.get("message", sub)
            for name, values in extracted.items():
                spread = scatter(values, other, n)
                current = columns.get(name)
                columns[name] = spread if current is None else pc.coalesce(current, spread.cast(current.type))
        empty = pc.equal(pc.utf8_length(text), 0)
        flags.add("empty_line", empty, "empty line")
        columns["message"] = pc.coalesce(columns["message"], text)
        return Rows(columns, flags)
