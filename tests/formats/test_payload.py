from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.formats.payload import extract_payload, logfmt_to_json, normalize_level


def payload(lines: list[str | None], kinds: frozenset[str] | None = None) -> dict[str, list[object]]:
    arr = pa.array(lines, pa.string())
    cols = extract_payload(arr) if kinds is None else extract_payload(arr, None, kinds)
    return {k: v.to_pylist() for k, v in cols.items()}


def test_json_common_keys() -> None:
    lines = [
        '{"level":"INFO","ts":"2024-05-05T17:59:40Z","msg":"request done","status":200}',
        '{"severity":"warning","message":"m2","error":"boom","stacktrace":"a\\nb","logger":"svc"}',
        '{"log.level":"error","log":"from log key","exception":"E"}',
        '{"log":{"level":"debug"},"x":1}',
        '{"lvl":"dpanic","msg":"go zap"}',
    ]
    out = payload(lines)
    assert out["log.level"] == ["info", "warning", "error", "debug", "critical"]
    assert out["message"] == ["request done", "m2", "from log key", lines[3], "go zap"]
    assert out["error.message"] == [None, "boom", "E", None, None]
    assert out["error.stack_trace"] == [None, "a\nb", None, None, None]
    assert out["log.logger"] == [None, "svc", None, None, None]
    assert out["attributes"] == lines  # the payload object verbatim: nothing of the raw line is lost


def test_logfmt() -> None:
    line = 'level=warn ts=2024-05-05T17:59:40Z msg="disk \\"sda\\" almost full" used=97.5 path=/data'
    out = payload([line, "key=value", "lvl=50 msg=x"])
    assert out["log.level"] == ["warning", None, "error"]
    assert out["message"] == ['disk "sda" almost full', "key=value", "x"]
    attrs = json.loads(out["attributes"][0])
    assert attrs["used"] == "97.5" and attrs["path"] == "/data" and attrs["event.original"] == line


def test_access_logs() -> None:
    combined = (
        '203.0.113.9 - alice [05/May/2024:17:59:40 +0000] "POST /login?next=/ HTTP/1.1" 401 19 "-" "curl/8"'
    )
    common = '2001:db8::1 - - [05/May/2024:17:59:40 +0000] "GET /healthz HTTP/1.1" 200 -'
    out = payload([combined, common])
    assert out["source.ip"] == ["203.0.113.9", "2001:db8::1"]
    assert out["user.name"] == ["alice", None]
    assert out["http.request.method"] == ["POST", "GET"]
    assert out["url.original"] == ["/login?next=/", "/healthz"]
    assert out["http.response.status_code"] == [401, 200]
    assert out["http.response.body.bytes"] == [19, None]
    assert out["user_agent.original"] == ["curl/8", None]
    assert out["log.level"] == ["warning", "info"]
    assert "message" not in out  # access lines keep their raw message


def test_plain_text_levels() -> None:
    out = payload(
        [
            "2024-05-05 17:59:40,123 ERROR [main] c.e.Foo - failed",
            "W0505 17:59:40.692994   28133 file.go:70] klog prefix",
            "all good, nothing to see",
            "INFORMATION is not a level token",
            "{broken json",
            None,
        ]
    )
    assert out["log.level"] == ["error", "warning", None, None, None, None]


def test_kinds_restrict_detection() -> None:
    out = payload(['{"level":"error","msg":"x"}', "level=info msg=y"], frozenset({"logfmt"}))
    assert out["message"] == ['{"level":"error","msg":"x"}', "y"]


def test_helpers() -> None:
    assert normalize_level(pa.array(["WARN", " Err ", "30", "nope", None])).to_pylist() == [
        "warning",
        "error",
        "info",
        None,
        None,
    ]
    assert json.loads(logfmt_to_json(pa.array(['a=1 b="x y"']))[0].as_py()) == {"a": "1", "b": "x y"}


def test_stats_count_kinds() -> None:
    stats: Counter[str] = Counter()
    extract_payload(pa.array(['{"a":1}', "a=1", '1.2.3.4 - - [x] "GET / HTTP/1.1" 200 1']), stats)
    assert stats == Counter({"payload.json": 1, "payload.logfmt": 1, "payload.access": 1})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), max_size=20))
def test_fuzz_never_raises_and_keeps_length(lines: list[str | None]) -> None:
    cols = extract_payload(pa.array(lines, pa.string()))
    for name, col in cols.items():
        assert len(col) == len(lines), name
    for value in cols.get("attributes", pa.array([], pa.string())).to_pylist():
        if value is not None:
            assert isinstance(json.loads(value), dict)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=20), min_size=1))
def test_fuzz_logfmt_roundtrip(pairs: dict[str, str]) -> None:
    line = " ".join(f"{k}={json.dumps(v)}" for k, v in pairs.items())
    cols = extract_payload(pa.array([line]))
    if "attributes" in cols and cols["attributes"][0].as_py() is not None:
        attrs = json.loads(cols["attributes"][0].as_py())
        for k, v in pairs.items():
            assert attrs[k] == v
