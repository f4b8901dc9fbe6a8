"""Which parser reads a chunk, and the ``Parsing`` stage the server runs: ``parse`` / ``flush``.

Choice, first match wins:

1. the pod annotation ``kubetrail.io/parser``, delivered by the agent in
   ``origin.metadata["kubernetes.annotations.kubetrail.io/parser"]`` (``ANNOTATION_KEY``);
2. the first ``formats.overrides`` entry of ``kubetrail.yaml`` whose namespace / pod / container
   globs match the pod (coordinates from the metadata, else from the log path);
3. ``origin.format`` set by the receiver or the agent;
4. the source: ``container`` -> ``cri``, or ``docker`` when the chunk starts with ``{``;
   ``audit``, ``journald``, ``syslog``, ``klog`` -> the parser of that name; ``controlplane`` -> klog.

A choice is either a registered format (``cri``, ``docker``, ``klog``, ``audit``, ``journald``,
``syslog``), which parses the chunk's bytes, or a payload mode for container logs: ``auto`` (the
default: JSON, logfmt, access log or plain text, per line), ``json``, ``logfmt``, ``access``,
``plain``, ``klog`` applied to container messages, or ``none`` (neither payload extraction nor
stack-trace joining). Container logs then go through partial reassembly, stack-trace joining
(``kubetrail.formats.multiline``) and payload extraction (``kubetrail.formats.payload``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections import Counter
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubetrail.chunk import Chunk, Origin
from kubetrail.config import register_section
from kubetrail.formats.base import Parser, get_parser_class, parser_names
from kubetrail.formats.container import ContainerParser, Events, fallback_batch, receive_seconds
from kubetrail.formats.multiline import Multiline
from kubetrail.formats.partials import Pieces
from kubetrail.formats.paths import dataset_for, node_file_format, parse_pod_path
from kubetrail.formats.payload import PAYLOAD_KINDS, extract_payload
from kubetrail.schema import empty_batch

__all__ = [
    "ANNOTATION_KEY",
    "PAYLOAD_MODES",
    "FormatsConfig",
    "MultilineConfig",
    "ParserOverride",
    "Parsing",
    "load_parser_class",
]

ANNOTATION_KEY = "kubernetes.annotations.kubetrail.io/parser"
PAYLOAD_MODES = ("auto", "json", "logfmt", "access", "plain", "klog", "none")
CONTAINER_FORMATS = ("cri", "docker")
_SOURCE_FORMATS = {
    "audit": "audit",
    "journald": "journald",
    "syslog": "syslog",
    "klog": "klog",
    "controlplane": "klog",
    "cri": "cri",
    "docker": "docker",
}


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return patterns


class MultilineConfig(BaseModel):
    """Stack-trace joining for container logs."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Join Java/Python/Go/Ruby/Node stack traces into one event.")
    start_patterns: list[str] = Field(
        default_factory=list,
        description="Regexes that start a new event; when set, other lines continue the previous one.",
    )
    flush_timeout_secs: float = Field(5.0, gt=0, description="Emit a held trace after this long.")
    max_lines: int = Field(1000, ge=2, description="Lines per joined event at most.")

    @field_validator("start_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        return _check_patterns(patterns)


class ParserOverride(BaseModel):
    """Parser for the pods matching every given glob (``*`` and ``?`` wildcards)."""

    model_config = ConfigDict(extra="forbid")
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    parser: str = Field(description="A format name or a payload mode (auto, json, logfmt, ...).")
    multiline_start_patterns: list[str] | None = Field(
        None, description="Start patterns for these pods (overrides multiline.start_patterns)."
    )

    @field_validator("parser")
    @classmethod
    def _known_parser(cls, value: str) -> str:
        known = {*PAYLOAD_MODES, *parser_names()}
        if value not in known:
            raise ValueError(f"unknown parser {value!r} (one of {', '.join(sorted(known))})")
        return value

    @field_validator("multiline_start_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str] | None) -> list[str] | None:
        return None if patterns is None else _check_patterns(patterns)

    def matches(self, namespace: str | None, pod: str | None, container: str | None) -> bool:
        return all(
            glob is None or (value is not None and fnmatchcase(value, glob))
            for glob, value in ((self.namespace, namespace), (self.pod, pod), (self.container, container))
        )


class FormatsConfig(BaseModel):
    """``formats:`` section of kubetrail.yaml."""

    model_config = ConfigDict(extra="forbid")
    max_line_bytes: int = Field(1 << 20, ge=256, description="Longer lines are cut and flagged.")
    max_message_bytes: int = Field(1 << 20, ge=256, description="Cap of a reassembled partial line.")
    partial_timeout_secs: float = Field(5.0, gt=0, description="Emit an unfinished partial after this.")
    payload: str = Field("auto", description="Default payload mode for container messages.")
    multiline: MultilineConfig = Field(default_factory=lambda: MultilineConfig())
    overrides: list[ParserOverride] = Field(default_factory=list)

    @field_validator("payload")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in PAYLOAD_MODES:
            raise ValueError(f"unknown payload mode {value!r} (one of {', '.join(PAYLOAD_MODES)})")
        return value


register_section("formats", FormatsConfig)


def load_parser_class(name: str) -> type[Parser]:
    """The registered parser class, importing its built-in module on first use."""
    return get_parser_class(name)


def _build(cls: type[Parser], config: FormatsConfig) -> Parser:
    options: dict[str, Any] = {
        "max_line_bytes": config.max_line_bytes,
        "max_message_bytes": config.max_message_bytes,
        "partial_timeout_secs": config.partial_timeout_secs,
        "tail_timeout_secs": config.partial_timeout_secs,
    }
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})


class Parsing:
    """One parser instance per format, with per-stream state; the server calls ``parse``/``flush``."""

    def __init__(self, config: FormatsConfig | None = None) -> None:
        self.config = config or FormatsConfig()
        self._parsers: dict[str, Parser] = {}
        self._multiline: dict[tuple[str, ...], Multiline] = {}
        # stream key -> (format, payload mode, start patterns) chosen at the stream's first chunk
        self._stream_mode: dict[str, tuple[str, str, tuple[str, ...] | None]] = {}
        self.errors: Counter[str] = Counter()

    # --- choice ----------------------------------------------------------------------------------
    def choose(self, chunk: Chunk) -> tuple[str, str, tuple[str, ...] | None]:
        """``(format, payload mode, multiline start patterns or None for the default)``."""
        origin = chunk.origin
        choice: str | None = origin.metadata.get(ANNOTATION_KEY) or None
        patterns: tuple[str, ...] | None = None
        if self.config.overrides:
            meta = origin.metadata
            pod = parse_pod_path(origin.path)
            namespace = meta.get("kubernetes.namespace") or (pod.namespace if pod else None)
            pod_name = meta.get("kubernetes.pod.name") or (pod.pod if pod else None)
            container = meta.get("kubernetes.container.name") or (pod.container if pod else None)
            for rule in self.config.overrides:
                if rule.matches(namespace, pod_name, container):
                    choice = choice or rule.parser
                    if rule.multiline_start_patterns is not None:
                        patterns = tuple(rule.multiline_start_patterns)
                    break
        mode = self.config.payload
        fmt: str | None = None
        if choice in PAYLOAD_MODES:
            mode = choice
        elif choice:
            fmt = choice
        fmt = fmt or origin.format
        if fmt is None:
            if origin.source == "container":
                fmt = "docker" if chunk.data[:1] == b"{" else "cri"
            elif origin.source == "file":
                fmt = node_file_format(origin.path)
            else:
                fmt = _SOURCE_FORMATS.get(origin.source, origin.source)
        return fmt, mode, patterns

    def parser(self, name: str) -> Parser:
        if name not in self._parsers:
            self._parsers[name] = _build(load_parser_class(name), self.config)
        return self._parsers[name]

    def _joiner(self, patterns: tuple[str, ...] | None) -> Multiline:
        key = patterns if patterns is not None else tuple(self.config.multiline.start_patterns)
        if key not in self._multiline:
            self._multiline[key] = Multiline(
                key, self.config.multiline.max_lines, self.config.max_message_bytes
            )
        return self._multiline[key]

    # --- the stage -------------------------------------------------------------------------------
    def parse(self, chunk: Chunk, now: datetime | None = None) -> pa.RecordBatch:
        fmt = "unknown"
        try:
            key = chunk.origin.stream_key()
            remembered = self._stream_mode.get(key)
            fmt, mode, patterns = self.choose(chunk)
            if remembered is not None and fmt in CONTAINER_FORMATS:
                # a stream keeps the format it started with (a continuation chunk may start mid-JSON)
                fmt = remembered[0]
            try:
                parser = self.parser(fmt)
            except (KeyError, ImportError):
                self.errors["unknown_format"] += 1
                return fallback_batch(chunk, fmt, now, "unknown_format")
            if not isinstance(parser, ContainerParser):
                return parser.parse(chunk, now)
            self._stream_mode[key] = (fmt, mode, patterns)
            events = parser.decode(chunk, now)
            return self._finish(parser, events, now)
        except Exception:
            self.errors["internal_error"] += 1
            return fallback_batch(chunk, fmt, now, "internal_error")

    def flush(self, now: datetime | None = None, force: bool = False) -> pa.RecordBatch:
        batches: list[pa.RecordBatch] = []
        seconds = receive_seconds(now)
        for name, parser in list(self._parsers.items()):
            try:
                if isinstance(parser, ContainerParser):
                    batches.append(self._finish(parser, parser.drain(now, force), now))
                else:
                    batches.append(parser.flush(now, force))
            except Exception:
                self.errors[f"internal_error.{name}"] += 1
        timeout = self.config.multiline.flush_timeout_secs
        for joiner in self._multiline.values():
            try:
                for origin, pieces in joiner.flush(seconds, timeout, force):
                    fmt, mode, _ = self._mode_of(origin)
                    parser = self.parser(fmt)
                    if isinstance(parser, ContainerParser):
                        batches.append(self._to_batch(parser, origin, pieces, mode, now))
            except Exception:
                self.errors["internal_error.multiline"] += 1
        self._forget_idle_streams()
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return empty_batch()
        if len(batches) == 1:
            return batches[0]
        return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]

    def _forget_idle_streams(self) -> None:
        """Drop remembered per-stream choices of streams without carried state (bounded memory)."""
        active: set[str] = set()
        for parser in self._parsers.values():
            if isinstance(parser, ContainerParser):
                active |= parser.active_streams()
        for joiner in self._multiline.values():
            active |= {key for key, _ in joiner.streams()}
        for key in [k for k in self._stream_mode if k not in active]:
            del self._stream_mode[key]

    @property
    def stats(self) -> dict[str, int]:
        """Counters of every parser (``<format>.<counter>``) plus the stage's own."""
        out: dict[str, int] = {f"parsing.{k}": v for k, v in self.errors.items()}
        for name, parser in self._parsers.items():
            for counter, value in getattr(parser, "stats", {}).items():
                out[f"{name}.{counter}"] = int(value)
        return out

    # --- internals -------------------------------------------------------------------------------
    def _mode_of(self, origin: Origin) -> tuple[str, str, tuple[str, ...] | None]:
        return self._stream_mode.get(origin.stream_key(), ("cri", self.config.payload, None))

    def _finish(self, parser: ContainerParser, events: Events, now: datetime | None) -> pa.RecordBatch:
        seconds = receive_seconds(now)
        batches = []
        for origin, pieces in events:
            if not len(pieces):
                continue
            _, mode, patterns = self._mode_of(origin)
            message, flags = parser.text(pieces)
            pieces.message, pieces.bits = message, flags.bits
            if mode != "none" and self.config.multiline.enabled:
                pieces = self._joiner(patterns).feed(origin, pieces, seconds)
            if len(pieces):
                batches.append(self._to_batch(parser, origin, pieces, mode, now))
        if not batches:
            return empty_batch()
        if len(batches) == 1:
            return batches[0]
        return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]

    def _to_batch(
        self, parser: ContainerParser, origin: Origin, pieces: Pieces, mode: str, now: datetime | None
    ) -> pa.RecordBatch:
        extra = dict(pieces.extra)
        if mode == "auto" and dataset_for(parse_pod_path(origin.path), origin.source) == "controlplane":
            mode = "klog"  # control-plane pods log klog: its parser sets level, time, source, pairs
        if mode not in ("none", "klog"):
            kinds = PAYLOAD_KINDS if mode == "auto" else frozenset({mode})
            for name, column in extract_payload(pieces.message, parser.stats, kinds).items():
                if name in extra and name != "message":
                    extra[name] = pc.coalesce(extra[name], column)
                else:
                    extra[name] = column
        if "error.stack_trace" in extra and "log.level" not in extra:
            extra["log.level"] = pa.nulls(len(pieces), pa.string())
        if "log.level" in extra and "error.stack_trace" in extra:
            has_trace = pc.is_valid(extra["error.stack_trace"])
            extra["log.level"] = pc.coalesce(
                extra["log.level"], pc.if_else(has_trace, "error", pa.scalar(None, pa.string()))
            )
        batch = parser.to_batch(origin, pieces, now, extra)
        if mode == "klog":
            batch = _klog_messages(batch, now)
        return batch


def _klog_messages(batch: pa.RecordBatch, now: datetime | None) -> pa.RecordBatch:
    """klog lines inside container messages (control-plane pods), via the klog module if present."""
    try:
        klog = importlib.import_module("kubetrail.formats.klog")
    except ImportError:
        return batch
    upgrade = getattr(klog, "parse_klog_messages", None)
    if upgrade is None:
        return batch
    result: pa.RecordBatch = upgrade(batch, now)
    return result
