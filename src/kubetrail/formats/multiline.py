"""Join multi-line stack traces (Java, Python, Go, Ruby, Node) into one event, vectorized.

Each line is classified with three anchored RE2 masks over the whole batch:

* ``strong`` lines (frames) continue a trace of the same stream: ``\\tat ...``,
  ``    at fn (file:1:2)``, ``Caused by: ...``, ``... 12 more``, ``  File "x.py", line 3``,
  ``\\tfrom /app/x.rb:5:in ...``, ``goroutine 7 [running]:``, ``\\t/src/main.go:12 +0x1d``, ...
* ``start`` lines open a trace: ``Traceback (most recent call last):``, ``panic: ...``,
  ``java.lang.IllegalStateException: ...``, ``TypeError: ...``, ``/app/x.rb:3:in `f': ...``.
* ``weak`` lines continue only inside a trace (the nearest earlier line that is not weak is a start
  or a strong line): Python code lines and the final ``ValueError: msg`` (a start line too, when it
  is not inside a trace), Go function lines ``main.main()``, blank lines between goroutines.

Groups are numbered with a cumulative sum over "not a continuation" per stream (stdout and stderr
interleave), and joined with one ``take``: every line gets a ``\\n`` appended, lines are laid out
stream by stream, and a group's text is one contiguous range. ``message`` becomes the trace's first
line, ``error.stack_trace`` the whole joined text, ``error.type`` the exception class when one is
found. With user ``start_patterns`` the rule is instead: a line matching none of them continues the
previous event.

The last event of a stream that could still grow (a trace, or anything in start-pattern mode) is
held back until the next chunk of that stream, or emitted after the flush timeout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats.kernels import Flags, first_bytes, from_np, scatter, slice_ranges, to_np
from kubetrail.formats.partials import Pieces

__all__ = ["STACK_START", "STACK_STRONG", "STACK_WEAK", "Multiline"]

STACK_STRONG = (
    r"^(?:\s+at \S|\s*\.\.\. \d+ (?:more|common frames omitted)|Caused by: |\s+Suppressed: |"
    r"  File \"|\s+from \S+:\d+:in |goroutine \d+ \[[^\]]*\]:$|\t\S+\.go:\d+|created by \S|\[signal )"
)
STACK_START = (
    r"^(?:Traceback \(most recent call last\):|panic: |fatal error: |Exception in thread |"
    r"(?:[\w$]+\.)*[\w$]*(?:Exception|Error|Throwable)(?::|$)|\S+\.rb:\d+:in )"
)
STACK_WEAK = (
    r"^(?:    \S|(?:[\w$]+\.)*[\w$]*(?:Error|Exception|Exit|Interrupt|Warning)\b|"
    r"[\w./*()\[\]{}$-]+\(.*\)$|\s*$)"
)
_ANY = f"(?:{STACK_STRONG})|(?:{STACK_START})|(?:{STACK_WEAK})"
_TYPE_FIRST = (
    r"^(?:Exception in thread \"[^\"]*\" )?(?P<t>(?:[\w$]+\.)*[\w$]*(?:Exception|Error|Throwable))(?::|$| )"
    r"|\((?P<rb>\w+(?:Error|Exception))\)$|^(?P<go>panic|fatal error): "
)
_TYPE_LAST = r"^(?P<t>(?:[\w]+\.)*\w*(?:Error|Exception|Exit|Interrupt|Warning))\b"


@dataclass(slots=True)
class _Held:
    text: str  # joined lines so far
    first: str
    last: str
    ts: int
    offset: int
    bits: int
    anchored: bool  # weak lines may still continue it
    lines: int
    since: float
    origin: Origin


_NEVER_IN_TRACE = np.zeros(256, dtype=bool)
_NEVER_IN_TRACE[np.frombuffer(b"0123456789{", dtype=np.uint8)] = True


def _mask(messages: pa.Array, pattern: str) -> npt.NDArray[np.bool_]:
    return to_np(pc.match_substring_regex(messages, pattern), False)


class Multiline:
    """Per-stream stack-trace joiner; state survives across chunks of the same stream."""

    def __init__(
        self, start_patterns: Sequence[str] = (), max_lines: int = 1000, max_chars: int = 1 << 20
    ) -> None:
        for pattern in start_patterns:
            re.compile(pattern)
        self.start_pattern = "|".join(f"(?:{p})" for p in start_patterns) if start_patterns else None
        self.max_lines = max_lines
        self.max_chars = max_chars  # a joined event is cut there (flagged truncated) and not held
        self._held: dict[tuple[str, int], _Held] = {}

    def pending(self) -> int:
        return len(self._held)

    def streams(self) -> list[tuple[str, int]]:
        return list(self._held)

    def feed(self, origin: Origin, events: Pieces, now: float) -> Pieces:
        """Join continuation lines of ``events`` (string messages, stream order) with held state."""
        key = origin.stream_key()
        held = [(code, self._held.pop((key, code))) for code in range(3) if (key, code) in self._held]
        messages = events.message
        n_new = len(events)
        if self.start_pattern is not None:
            strong = ~_mask(messages, self.start_pattern)
            weak = np.zeros(n_new, dtype=bool)
            start = ~strong
        else:
            # one pass over the lines that can take part (a trace line never starts with a digit or
            # "{": timestamps, addresses and JSON are skipped by their first byte), then the three
            # masks only for the few lines that matched any
            maybe = np.flatnonzero(~_NEVER_IN_TRACE[first_bytes(messages)])
            candidates = maybe
            if maybe.size:
                subset = messages if maybe.size == n_new else messages.take(from_np(maybe))
                candidates = maybe[_mask(subset, _ANY)]
            if not held and candidates.size == 0:
                return events  # common case: plain lines only
            strong = np.zeros(n_new, dtype=bool)
            start = np.zeros(n_new, dtype=bool)
            weak = np.zeros(n_new, dtype=bool)
            if candidates.size:
                sub = messages.take(from_np(candidates))
                strong[candidates] = _mask(sub, STACK_STRONG)
                start[candidates] = _mask(sub, STACK_START)
                weak[candidates] = _mask(sub, STACK_WEAK)
                start &= ~strong
                weak &= ~strong
        if not held and not strong.any() and not start.any():
            return events  # blank or weak-looking lines alone never join anything
        anchored = np.zeros(n_new, dtype=bool)
        if held:
            held.sort(key=lambda item: item[1].offset)
            head = Pieces(
                pa.array([h.text for _, h in held], pa.string()),
                np.array([code for code, _ in held], dtype=np.int8),
                np.array([h.ts for _, h in held], dtype=np.int64),
                np.array([h.offset for _, h in held], dtype=np.int64),
                np.array([h.bits for _, h in held], dtype=np.uint16),
            )
            k = len(held)
            events = Pieces.concat([head, events])
            strong = np.concatenate([np.zeros(k, dtype=bool), strong])
            weak = np.concatenate([np.zeros(k, dtype=bool), weak])
            start = np.concatenate([np.zeros(k, dtype=bool), start])
            anchored = np.concatenate([[h.anchored for _, h in held], anchored])
        n = len(events)
        order = np.argsort(events.stream, kind="stable")
        s_stream = events.stream[order]
        new_stream = np.ones(n, dtype=bool)
        new_stream[1:] = s_stream[1:] != s_stream[:-1]
        s_strong, s_weak, s_start = strong[order], weak[order], start[order]
        anchor = s_strong | s_start | anchored[order]
        idx = np.arange(n)
        last_anchor = np.maximum.accumulate(np.where(anchor, idx, -1))
        breaker = ~(s_weak | anchor) | (new_stream & ~anchor)
        last_breaker = np.maximum.accumulate(np.where(breaker, idx, -1))
        prev_anchor = np.concatenate([[-1], last_anchor[:-1]])
        prev_breaker = np.concatenate([[-1], last_breaker[:-1]])
        # a frame continues only a trace: the nearest earlier line that is not weak is a start, a
        # frame or a held trace. So whether a line joins never depends on where a chunk was cut.
        in_trace = (prev_anchor > prev_breaker) & (prev_anchor >= 0)
        cont = (s_strong | s_weak) & in_trace & ~new_stream
        if self.start_pattern is not None:
            cont = s_strong & ~new_stream
        starts_group = ~cont
        # bound the size of one event: force a new group every max_lines lines
        group_id = np.cumsum(starts_group) - 1
        first_of_group = np.flatnonzero(starts_group)
        position = idx - first_of_group[group_id]
        starts_group |= (position > 0) & (position % self.max_lines == 0)
        group_first = np.flatnonzero(starts_group)
        group_last = np.append(group_first[1:] - 1, n - 1)
        sizes = group_last - group_first + 1
        n_groups = group_first.size
        first_rows = order[group_first]
        held_lines = np.ones(n, dtype=np.int64)
        for i, (_, h) in enumerate(held):
            held_lines[i] = h.lines
        line_count = np.add.reduceat(held_lines[order], group_first)
        multi = line_count > 1
        # hold back the last group of each stream when it may still grow
        stream_of_group = s_stream[group_first]
        last_group_of_stream = np.ones(n_groups, dtype=bool)
        last_group_of_stream[:-1] = stream_of_group[1:] != stream_of_group[:-1]
        growing = anchor[group_last] | s_weak[group_last] & multi
        if self.start_pattern is not None:
            growing = np.ones(n_groups, dtype=bool)
        hold = last_group_of_stream & growing & (line_count < self.max_lines)
        if not held and not hold.any() and n_groups == n:
            return events  # candidates, but nothing joined and nothing to wait for
        # join the text of the groups that need it (multi-line or held), and only theirs
        need = np.flatnonzero(multi | hold)
        joined = pa.array([], pa.string())
        last_line = pa.array([], pa.string())
        if need.size:
            member_pos = np.flatnonzero(np.repeat(multi | hold, sizes))
            members = events.message.take(from_np(order[member_pos]))
            with_nl = pc.binary_join_element_wise(members, "\n", "")
            m = len(members)
            offsets = np.frombuffer(with_nl.buffers()[1], dtype=np.int32)[
                with_nl.offset : with_nl.offset + m + 1
            ]
            data = with_nl.buffers()[2]
            ends = np.cumsum(sizes[need])
            joined = slice_ranges(
                data if data is not None else b"",
                offsets[ends - sizes[need]].astype(np.int64),
                offsets[ends].astype(np.int64) - 1,
            ).cast(pa.string())
            last_line = members.take(from_np(ends - 1))
            alone = np.flatnonzero((sizes[need] == 1) & (first_rows[need] < len(held)))
            if alone.size:  # a held event nothing continued: its last line is the one held
                lasts = pa.array([held[int(first_rows[need[j]])][1].last for j in alone], pa.string())
                last_line = pc.coalesce(scatter(lasts, alone, need.size), last_line)
        first_text = events.message.take(from_np(first_rows))
        if held:
            # a held event's message is already joined text: its first line is what was held
            held_groups = np.flatnonzero(first_rows < len(held))
            if held_groups.size:
                firsts = pa.array([held[int(r)][1].first for r in first_rows[held_groups]], pa.string())
                first_text = pc.coalesce(scatter(firsts, held_groups, n_groups), first_text)
        bits = np.bitwise_or.reduceat(events.bits[order], group_first).astype(np.uint16)
        if need.size and pc.max(pc.utf8_length(joined)).as_py() > self.max_chars:
            over = to_np(pc.greater(pc.utf8_length(joined), self.max_chars), False)
            joined = pc.if_else(from_np(over), pc.utf8_slice_codeunits(joined, 0, self.max_chars), joined)
            bits[need[over]] |= np.uint16(Flags.bit("truncated"))
            hold[need[over]] = False  # bounded state: an oversized trace is emitted now
        multi_of_need = multi[need]
        stack_need = pc.if_else(from_np(multi_of_need), joined, pa.nulls(need.size, pa.string()))
        type_need = self._error_type(first_text.take(from_np(need)), last_line, from_np(multi_of_need))
        result = Pieces(
            first_text,
            events.stream[first_rows],
            events.ts[first_rows],
            events.offsets[first_rows],
            bits,
            {
                "error.stack_trace": scatter(stack_need, need, n_groups),
                "error.type": scatter(type_need, need, n_groups),
            },
        )
        need_index = {int(g): j for j, g in enumerate(need.tolist())}
        held_since = {h.offset: h.since for _, h in held}
        for g in np.flatnonzero(hold).tolist():
            j = need_index[g]
            offset = int(result.offsets[g])
            self._held[(key, int(stream_of_group[g]))] = _Held(
                text=joined[j].as_py(),
                first=first_text[g].as_py(),
                last=last_line[j].as_py(),
                ts=int(result.ts[g]),
                offset=offset,
                bits=int(bits[g]),
                anchored=bool(anchor[group_last[g]] or s_weak[group_last[g]]),
                lines=int(line_count[g]),
                since=held_since.get(offset, now),
                origin=origin,
            )
        emit = np.flatnonzero(~hold)
        emit = emit[np.argsort(result.offsets[emit], kind="stable")]
        return result.take(emit)

    @staticmethod
    def _error_type(first: pa.Array, last: pa.Array, multi: pa.Array) -> pa.Array:
        """Exception class of the multi-line events (regexes run on those rows only)."""
        rows = np.flatnonzero(to_np(multi, False))
        n = len(first)
        if rows.size == 0:
            return pa.nulls(n, pa.string())
        if rows.size < n:
            picked = from_np(rows)
            found = Multiline._error_type(first.take(picked), last.take(picked), pa.repeat(True, rows.size))
            return scatter(found, rows, n)
        head = pc.extract_regex(first, _TYPE_FIRST)
        tail = pc.extract_regex(last, _TYPE_LAST)

        def nonempty(values: pa.Array) -> pa.Array:
            return pc.if_else(pc.equal(values, ""), None, values)

        python = pc.starts_with(first, "Traceback")
        found = pc.coalesce(
            pc.if_else(python, nonempty(tail.field("t")), None),
            nonempty(head.field("t")),
            nonempty(head.field("rb")),
            nonempty(head.field("go")),
        )
        return pc.if_else(multi, found, pa.nulls(len(first), pa.string()))

    def flush(self, now: float, timeout: float, force: bool = False) -> list[tuple[Origin, Pieces]]:
        """Held events older than ``timeout`` seconds (all with ``force``)."""
        out: list[tuple[Origin, Pieces]] = []
        for (key, code), h in list(self._held.items()):
            if not force and now - h.since < timeout:
                continue
            del self._held[(key, code)]
            multi = h.lines > 1
            first = pa.array([h.first], pa.string())
            error_type = self._error_type(first, pa.array([h.last], pa.string()), pa.array([multi]))
            out.append(
                (
                    h.origin,
                    Pieces(
                        pa.array([h.first if multi else h.text], pa.string()),
                        np.array([code], dtype=np.int8),
                        np.array([h.ts], dtype=np.int64),
                        np.array([h.offset], dtype=np.int64),
                        np.array([h.bits], dtype=np.uint16),
                        {
                            "error.stack_trace": pa.array([h.text if multi else None], pa.string()),
                            "error.type": error_type,
                        },
                    ),
                )
            )
        return out
