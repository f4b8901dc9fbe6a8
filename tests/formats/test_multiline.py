from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.formats.multiline import Multiline
from kubetrail.formats.partials import Pieces
from tests.formats.helpers import origin

TRACES = [
    "INFO starting",
    "java.lang.IllegalStateException: boom",
    "\tat com.x.Y.z(Y.java:10)",
    "Caused by: java.io.IOException: disk",
    "\t... 5 more",
    "INFO next",
    "Traceback (most recent call last):",
    '  File "app.py", line 3, in <module>',
    "    main()",
    "ValueError: bad value",
    "panic: oh no",
    "",
    "goroutine 1 [running]:",
    "main.main()",
    "\t/app/main.go:5 +0x27",
    "exit status 2",
    "TypeError: x is not a function",
    "    at Object.<anonymous> (/app/index.js:1:5)",
    "/app/x.rb:10:in `foo': boom (RuntimeError)",
    "\tfrom /app/x.rb:5:in `<main>'",
    "done",
]


def pieces(lines: list[str], base: int = 0, streams: list[int] | None = None) -> Pieces:
    n = len(lines)
    stream = np.array(streams if streams is not None else [0] * n, dtype=np.int8)
    offsets = np.arange(base, base + n, dtype=np.int64) * 100
    return Pieces(pa.array(lines, pa.string()), stream, offsets * 10, offsets, np.zeros(n, dtype=np.uint16))


def run(joiner: Multiline, parts: list[Pieces]) -> Pieces:
    out = [joiner.feed(origin(), p, 0.0) for p in parts]
    out += [p for _, p in joiner.flush(0.0, 5.0, force=True)]
    return Pieces.concat([p for p in out if len(p)])


def test_traces_of_every_language_are_joined() -> None:
    out = run(Multiline(), [pieces(TRACES)])
    got = list(zip(out.message.to_pylist(), out.extra["error.type"].to_pylist(), strict=True))
    assert got == [
        ("INFO starting", None),
        ("java.lang.IllegalStateException: boom", "java.lang.IllegalStateException"),
        ("INFO next", None),
        ("Traceback (most recent call last):", "ValueError"),
        ("panic: oh no", "panic"),
        ("exit status 2", None),
        ("TypeError: x is not a function", "TypeError"),
        ("/app/x.rb:10:in `foo': boom (RuntimeError)", "RuntimeError"),
        ("done", None),
    ]
    stacks = out.extra["error.stack_trace"].to_pylist()
    assert stacks[1] == "\n".join(TRACES[1:5])
    assert stacks[3] == "\n".join(TRACES[6:10])
    assert stacks[4] == "\n".join(TRACES[10:15])
    assert stacks[0] is None
    # the joined event keeps the first line's offset (event.id) and timestamp
    assert out.offsets.tolist()[1] == 100 and out.ts.tolist()[1] == 1000


def test_streams_do_not_mix() -> None:
    lines = ["java.lang.Error: x", "stderr noise", "\tat a.B.c(B.java:1)"]
    out = run(Multiline(), [pieces(lines, streams=[0, 1, 0])])
    by_offset = sorted(zip(out.offsets.tolist(), out.message.to_pylist(), strict=True))
    assert [m for _, m in by_offset] == ["java.lang.Error: x", "stderr noise"]


def test_user_start_pattern() -> None:
    lines = ["2024-05-05 first", "  detail", "more detail", "2024-05-06 second"]
    out = run(Multiline([r"^\d{4}-\d\d-\d\d "]), [pieces(lines)])
    assert out.message.to_pylist() == ["2024-05-05 first", "2024-05-06 second"]
    assert out.extra["error.stack_trace"].to_pylist()[0] == "\n".join(lines[:3])


def test_held_trace_is_flushed_after_timeout() -> None:
    joiner = Multiline()
    assert len(joiner.feed(origin(), pieces(TRACES[1:3]), 100.0)) == 0
    assert joiner.flush(103.0, 5.0) == []
    ((_, flushed),) = joiner.flush(106.0, 5.0)
    assert flushed.extra["error.stack_trace"].to_pylist() == ["\n".join(TRACES[1:3])]


def test_max_lines_bounds_an_event() -> None:
    lines = ["java.lang.Error: x"] + ["\tat a.B.c(B.java:1)"] * 25
    out = run(Multiline(max_lines=10), [pieces(lines)])
    assert len(out) == 3


@settings(max_examples=60, deadline=None)
@given(st.integers(1, len(TRACES) - 1), st.integers(1, len(TRACES) - 1))
def test_same_events_under_any_split(a: int, b: int) -> None:
    cut1, cut2 = sorted((a, b))
    whole = run(Multiline(), [pieces(TRACES)])
    parts = [pieces(TRACES[:cut1]), pieces(TRACES[cut1:cut2], cut1), pieces(TRACES[cut2:], cut2)]
    split = run(Multiline(), [p for p in parts if len(p)])
    key = np.argsort(split.offsets)
    assert split.offsets[key].tolist() == whole.offsets.tolist()
    assert [split.message.to_pylist()[i] for i in key] == whole.message.to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=30))
def test_fuzz_lossless_line_count(lines: list[str]) -> None:
    lines = [line.replace("\n", " ") for line in lines]
    if not lines:
        return
    out = run(Multiline(), [pieces(lines)])
    stacks = out.extra.get("error.stack_trace")
    total = 0
    for i, message in enumerate(out.message.to_pylist()):
        stack = stacks[i].as_py() if stacks is not None else None
        total += stack.count("\n") + 1 if stack is not None else 1
        assert message is not None
    assert total == len(lines)


def test_oversized_trace_is_cut_flagged_and_not_held() -> None:
    lines = ["java.lang.Error: x"] + ["\tat a.B.c(B.java:1)"] * 20
    joiner = Multiline(max_chars=100)
    out = joiner.feed(origin(), pieces(lines), 0.0)
    assert joiner.pending() == 0
    (stack,) = out.extra["error.stack_trace"].to_pylist()
    assert len(stack) == 100 and stack.startswith("java.lang.Error: x\n\tat")
    assert out.bits.tolist() != [0]
