"""Sequence ids: every line the simulator writes carries one, so tests can count lost and doubled events.

Convention (also in ``docs/simulate.md``):

- plain text, logfmt, klog, nginx, stack-trace lines: the token ``kt_seq=<stream>:<n>`` at the end of
  the message (a valid logfmt / klog key=value pair);
- JSON payload lines (the container's own JSON, etcd's zap JSON): a ``"kt_seq":"<stream>:<n>"`` key;
- audit events: the annotation ``"kubetrail.io/seq":"audit:<n>"``;
- journald export records: a ``KT_SEQ`` field *and* the ``kt_seq=`` token in ``MESSAGE``.

``<stream>`` matches ``[A-Za-z0-9._-]+`` (no colon); ``<n>`` counts 0, 1, 2 ... without gaps within a
stream, in file order. A record's sequence ids are the *distinct* matches in it, so a journald record
(field + message) counts once, and a multiline event merged by a parser counts once per physical line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "SEQ_PATTERN",
    "SEQ_RE",
    "SEQ_RE_BYTES",
    "SeqCheck",
    "check_seq",
    "count_seq",
    "extract_seq",
    "seq_token",
]

# RE2-compatible too (DuckDB ``regexp_extract_all(message, SEQ_PATTERN, 1)`` etc.).
SEQ_PATTERN = (
    r'(?:kt_seq=|"kt_seq":\s*"|"kubetrail\.io/seq":\s*"|"KT_SEQ":\s*")'
    r"(?P<stream>[A-Za-z0-9._-]+):(?P<n>[0-9]+)"
)
SEQ_RE = re.compile(SEQ_PATTERN)
SEQ_RE_BYTES = re.compile(SEQ_PATTERN.encode())


def seq_token(stream: str, n: int) -> str:
    """The plain-text token for line ``n`` of ``stream``."""
    return f"kt_seq={stream}:{n}"


def extract_seq(text: str | bytes) -> list[tuple[str, int]]:
    """Distinct ``(stream, n)`` sequence ids found in one record, sorted."""
    found: set[tuple[str, int]] = set()
    if isinstance(text, bytes):
        for mb in SEQ_RE_BYTES.finditer(text):
            found.add((mb.group(1).decode(), int(mb.group(2))))
    else:
        for ms in SEQ_RE.finditer(text):
            found.add((ms.group(1), int(ms.group(2))))
    return sorted(found)


def count_seq(records: Iterable[str | bytes]) -> dict[str, Counter[int]]:
    """How often each sequence id was seen over many records: ``{stream: Counter({n: times})}``."""
    seen: dict[str, Counter[int]] = {}
    for record in records:
        for stream, n in extract_seq(record):
            seen.setdefault(stream, Counter())[n] += 1
    return seen


@dataclass
class SeqCheck:
    """Result of comparing what arrived with what the simulator wrote."""

    missing: dict[str, list[int]] = field(default_factory=dict)
    duplicated: dict[str, list[int]] = field(default_factory=dict)
    unexpected: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected)

    @property
    def missing_count(self) -> int:
        return sum(len(v) for v in self.missing.values())

    @property
    def duplicated_count(self) -> int:
        return sum(len(v) for v in self.duplicated.values())


def check_seq(
    seen: Mapping[str, Counter[int]],
    expected: Mapping[str, int],
    deleted: Mapping[str, Iterable[tuple[int, int]]] | None = None,
) -> SeqCheck:
    """Compare ``count_seq`` output with the expected line count per stream (``manifest.json`` ``streams``).

    ``deleted`` gives per stream the ``[start, end)`` ranges rotation removed before anyone could read
    them (manifest ``deleted``); those ids are not reported missing. Streams absent from ``expected``
    are ignored.
    """
    result = SeqCheck()
    for stream in sorted(expected):
        total = expected[stream]
        counts = seen.get(stream, Counter())
        gone = {n for a, b in (deleted or {}).get(stream, ()) for n in range(a, b)}
        missing = [n for n in range(total) if counts[n] == 0 and n not in gone]
        dup = sorted(n for n, c in counts.items() if c > 1)
        extra = sorted(n for n in counts if n >= total or n < 0)
        if missing:
            result.missing[stream] = missing
        if dup:
            result.duplicated[stream] = dup
        if extra:
            result.unexpected[stream] = extra
    return result
