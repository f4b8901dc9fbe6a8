from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.formats.docker import DockerParser
from tests.formats.helpers import NOW, chunk, ns, rows, split_feed

CID = "0123456789abcdef" * 4
PATH = f"/var/log/containers/web-1_default_app-{CID}.log"


def record(log: str, stream: str = "stdout", time: str = "2024-05-05T17:59:40.123456789Z") -> bytes:
    return orjson.dumps({"log": log, "stream": stream, "time": time}) + b"\n"


def test_golden_columns_and_16k_partials() -> None:
    big = "z" * 16384
    data = (
        record('hello "quoted" \\ \u00e9\n')
        + record(big, "stderr", "2024-05-05T17:59:41Z")
        + record("between\n")
        + record(big, "stderr", "2024-05-05T17:59:42Z")
        + record("end\n", "stderr", "2024-05-05T17:59:43Z")
    )
    batch = DockerParser().parse(chunk(data, 0, path=PATH), NOW)
    got = rows(batch, "message", "stream", "@timestamp", "log.offset", "container.id", "kubernetes.pod.name")
    # events come in file order of their first piece
    assert [r[0] for r in got] == ['hello "quoted" \\ \u00e9', big + big + "end", "between"]
    assert [r[1] for r in got] == ["stdout", "stderr", "stdout"]
    assert got[0][2] == ns("2024-05-05T17:59:40.123456789Z")
    assert got[1][2] == ns("2024-05-05T17:59:41Z")  # the first piece's time
    first_len = len(record('hello "quoted" \\ \u00e9\n'))
    assert [r[3] for r in got] == [
        0,
        first_len,
        first_len + len(record(big, "stderr", "2024-05-05T17:59:41Z")),
    ]
    assert {r[4] for r in got} == {CID}
    assert {r[5] for r in got} == {"web-1"}
    assert set(rows(batch, "event.module")) == {("docker",)}


def test_bad_json_lines_fall_back_per_line() -> None:
    data = (
        record("ok 1\n") + b"{not json\n" + b"[1,2]\n" + b"\n" + record("ok 2\n", time="2024-02-30T00:00:00Z")
    )
    parser = DockerParser()
    got = rows(parser.parse(chunk(data), NOW), "message", "event.parse_error", "stream")
    assert got == [
        ("ok 1", None, "stdout"),
        ("{not json", "bad_json", None),
        ("[1,2]", "bad_json", None),
        ("", "bad_json", None),
        ("ok 2", "bad_timestamp", "stdout"),
    ]
    assert parser.stats["slow_path_blocks"] == 1
    assert parser.stats["parse_error.bad_json"] == 3


def test_invalid_utf8_in_a_line() -> None:
    data = record("fine\n") + b'{"log":"bad \xff\\n","stream":"stdout","time":"2024-05-05T17:59:40Z"}\n'
    got = rows(DockerParser().parse(chunk(data), NOW), "message", "event.parse_error")
    assert got[0] == ("fine", None)
    assert got[1][1] is not None  # decoded as far as possible, flagged
    assert "bad" in got[1][0]


_rec = st.tuples(
    st.sampled_from(["stdout", "stderr"]),
    st.booleans(),
    st.text(
        alphabet=st.characters(min_codepoint=1, max_codepoint=0x3FF, exclude_characters="\n"), max_size=30
    ),
)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_rec, min_size=1, max_size=25), st.data())
def test_reassembly_lossless_under_any_split(recs: list[tuple[str, bool, str]], data: st.DataObject) -> None:
    stream = b"".join(record(text + ("\n" if final else ""), s) for s, final, text in recs)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8))))
    cols = ("event.id", "message", "stream", "event.parse_error")
    whole = sorted(rows(split_feed(DockerParser(), stream, []), *cols), key=lambda r: str(r[0]))
    split = sorted(rows(split_feed(DockerParser(), stream, cuts), *cols), key=lambda r: str(r[0]))
    assert split == whole
    assert sum(len(r[1]) for r in whole) == sum(len(t) for _, _, t in recs)


@settings(max_examples=70, deadline=None)
@given(st.binary(max_size=500))
def test_fuzz_random_bytes(data: bytes) -> None:
    out = split_feed(DockerParser(), data, [])
    got = rows(out, "event.id")
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert len(got) <= n_lines
    if b'"log"' not in data:
        assert len(got) == n_lines
    assert all(r[0] for r in got)


@settings(max_examples=70, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=5), st.integers(1, 6))
def test_fuzz_mutated_records(mutations: list[tuple[int, int]], count: int) -> None:
    data = bytearray(b"".join(record(f"line {i}\n") for i in range(count)))
    for pos, value in mutations:
        data[pos % len(data)] = value if value != 0x0A else 0x20
    out = split_feed(DockerParser(), bytes(data), [])
    got = rows(out, "event.id")
    assert 1 <= len(got) <= count
    assert all(r[0] for r in got)
