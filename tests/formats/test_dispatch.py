from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.config import validate_config
from kubetrail.errors import ConfigError
from kubetrail.formats.dispatch import ANNOTATION_KEY, FormatsConfig, Parsing, load_parser_class
from kubetrail.schema import SCHEMA
from tests.formats.helpers import NOW, chunk, rows, split_feed

CRI = b"2024-05-05T17:59:40Z stdout F "


def cri(*messages: str) -> bytes:
    return b"".join(CRI + m.encode() + b"\n" for m in messages)


def test_source_and_sniffing() -> None:
    parsing = Parsing()
    assert parsing.choose(chunk(cri("x")))[0] == "cri"
    assert parsing.choose(chunk(b'{"log":"x\\n"}\n'))[0] == "docker"
    assert parsing.choose(chunk(b"x\n", source="audit"))[0] == "audit"
    assert parsing.choose(chunk(b"x\n", source="controlplane"))[0] == "klog"
    assert parsing.choose(chunk(b"x\n", source="syslog"))[0] == "syslog"
    assert parsing.choose(chunk(b"x\n", format="docker"))[0] == "docker"


def test_annotation_and_overrides() -> None:
    config = FormatsConfig.model_validate(
        {
            "overrides": [
                {"namespace": "legacy-*", "parser": "logfmt"},
                {"namespace": "default", "pod": "web-*", "parser": "none"},
            ]
        }
    )
    parsing = Parsing(config)
    assert parsing.choose(chunk(cri("x")))[1] == "none"  # default/web-1 from the path
    legacy = chunk(cri("x"), metadata={"kubernetes.namespace": "legacy-app"})
    assert parsing.choose(legacy)[1] == "logfmt"
    annotated = chunk(cri("x"), metadata={ANNOTATION_KEY: "json"})
    assert parsing.choose(annotated)[1] == "json"  # the annotation wins over the override
    reformat = chunk(cri("x"), metadata={ANNOTATION_KEY: "klog"})
    assert parsing.choose(reformat)[1] == "klog"


def test_full_pipeline_on_a_container_stream() -> None:
    parsing = Parsing()
    data = cri(
        '{"level":"warn","msg":"hello json"}',
        'level=error msg="bad thing" code=7',
        "java.lang.RuntimeException: boom",
        "\tat a.b.C.d(C.java:1)",
        "plain DEBUG text",
    )
    out = split_feed(parsing, data, [])
    got = rows(out, "message", "log.level", "error.type", "event.module")
    assert got == [
        ("hello json", "warning", None, "cri"),
        ("bad thing", "error", None, "cri"),
        ("java.lang.RuntimeException: boom", "error", "java.lang.RuntimeException", "cri"),
        ("plain DEBUG text", "debug", None, "cri"),
    ]
    assert all(b.schema == SCHEMA for b in out)
    stats = parsing.stats
    assert stats["cri.lines"] == 5 and stats["cri.payload.json"] == 1


def test_payload_mode_none_keeps_lines_apart() -> None:
    parsing = Parsing()
    data = cri("java.lang.RuntimeException: boom", "\tat a.b.C.d(C.java:1)")
    out = split_feed(parsing, data, [], metadata={ANNOTATION_KEY: "none"})
    assert len(rows(out, "message")) == 2


def test_controlplane_klog_inside_cri() -> None:
    path = "/var/log/pods/kube-system_kube-scheduler-cp_u1/kube-scheduler/0.log"
    data = b'2024-05-05T17:59:40Z stderr F I0505 17:59:40.692994       1 leader.go:258] "msg here" k="v"\n'
    out = Parsing().parse(chunk(data, path=path), NOW)
    assert rows(out, "event.dataset", "kubernetes.pod.name") == [("controlplane", "kube-scheduler-cp")]
    message, level = rows(out, "message", "log.level")[0]
    if load_parser_class("klog"):  # formats B's klog upgrades the message when present
        assert message == "msg here" and level == "info"


def test_unknown_format_is_flagged_not_raised() -> None:
    out = Parsing().parse(chunk(b"a\nb\n", format="no-such-format"), NOW)
    assert rows(out, "message", "event.parse_error") == [("a", "unknown_format"), ("b", "unknown_format")]


def test_config_section_is_registered() -> None:
    cfg, _ = validate_config(
        {"formats": {"partial_timeout_secs": 2, "multiline": {"start_patterns": ["^x"]}}}
    )
    section = cfg.section("formats")
    assert isinstance(section, FormatsConfig) and section.partial_timeout_secs == 2
    with pytest.raises(ConfigError) as err:
        validate_config({"formats": {"payload": "yaml", "bogus": 1}})
    text = str(err.value)
    assert "formats.payload" in text and "formats.bogus" in text


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["container", "audit", "journald", "syslog", "klog", "file"]))
def test_fuzz_any_source_never_raises(data: bytes, source: str) -> None:
    parsing = Parsing()
    out = split_feed(parsing, data, [len(data) // 2] if len(data) > 2 else [], source=source)
    got = rows(out, "event.id")
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert len(got) <= max(n_lines, 1) + 1
    assert all(r[0] for r in got)


def test_every_option_and_reason_code_is_documented() -> None:
    from pathlib import Path

    from kubetrail.formats.dispatch import MultilineConfig, ParserOverride
    from kubetrail.formats.kernels import REASONS

    page = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    for model in (FormatsConfig, MultilineConfig, ParserOverride):
        for option in model.model_fields:
            assert f"{option}" in page, f"formats option {option!r} missing from docs/formats.md"
    for code in REASONS:
        assert f"`{code}`" in page, f"reason code {code!r} missing from docs/formats.md"


def test_config_rejects_bad_patterns_and_parsers() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(
            {
                "formats": {
                    "multiline": {"start_patterns": ["(unclosed"]},
                    "overrides": [{"namespace": "x", "parser": "yaml"}],
                }
            }
        )
    text = str(err.value)
    assert "formats.multiline.start_patterns" in text and "formats.overrides.0.parser" in text


_MESSAGES = [
    ["plain INFO line"],
    ['{"level":"warn","msg":"json line","n":1}'],
    ['level=error msg="logfmt line" k=v'],
    ['10.0.0.1 - - [05/May/2024:17:59:40 +0000] "GET / HTTP/1.1" 200 12 "-" "curl"'],
    ["java.lang.IllegalStateException: boom", "\tat a.B.c(B.java:1)", "\t... 3 more"],
    ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "    f()", "ValueError: v"],
    ["panic: oh no", "", "goroutine 1 [running]:", "main.main()", "\t/app/main.go:5 +0x27"],
    ["\tat orphan.Frame(F.java:1)"],
]


@settings(max_examples=int(os.environ.get("KT_SPLIT_EXAMPLES", "40")), deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_MESSAGES) - 1), st.sampled_from(["stdout", "stderr"])), max_size=12
    ),
    st.lists(st.integers(0, 10_000), max_size=5),
    st.data(),
)
def test_whole_pipeline_is_the_same_under_any_split(
    picks: list[tuple[int, str]], raw_cuts: list[int], data: st.DataObject
) -> None:
    lines = []
    for i, (kind, stream) in enumerate(picks):
        for text in _MESSAGES[kind]:
            body = text.encode()
            if len(body) > 6 and data.draw(st.booleans()):  # a partial line
                cut = len(body) // 2
                lines.append(f"2024-05-05T17:59:{i:02d}Z {stream} P ".encode() + body[:cut] + b"\n")
                body = body[cut:]
            lines.append(f"2024-05-05T17:59:{i:02d}Z {stream} F ".encode() + body + b"\n")
    stream_bytes = b"".join(lines)
    if not stream_bytes:
        return
    cuts = sorted({c % len(stream_bytes) for c in raw_cuts} - {0})
    cols = ("event.id", "message", "error.stack_trace", "error.type", "log.level", "stream", "attributes")
    whole = sorted(rows(split_feed(Parsing(), stream_bytes, []), *cols), key=lambda r: str(r[0]))
    split = sorted(rows(split_feed(Parsing(), stream_bytes, cuts), *cols), key=lambda r: str(r[0]))
    assert split == whole
