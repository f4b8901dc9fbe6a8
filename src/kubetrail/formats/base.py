"""The parser interface and the registry of formats.

A parser turns chunks into full-schema batches. It may keep state per byte stream (a CRI partial
line, an unfinished stack trace), keyed by ``origin.stream_key()``, so a line split across two chunks
comes out whole. ``flush(now)`` emits what waited longer than its timeout (flagged). A parser never
raises for bad input: it returns events with ``event.parse_error`` set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, TypeVar

import pyarrow as pa

from kubetrail.chunk import Chunk
from kubetrail.formats import BUILTIN_PARSERS
from kubetrail.schema import empty_batch

__all__ = ["Parser", "get_parser_class", "parser_names", "register_parser"]


class Parser:
    """Base class: stateless parsers only implement ``parse``."""

    name: ClassVar[str] = ""

    def parse(self, chunk: Chunk, now: datetime | None = None) -> pa.RecordBatch:
        raise NotImplementedError  # abstract: every registered parser overrides it

    def flush(self, now: datetime | None = None, force: bool = False) -> pa.RecordBatch:
        """Emit state older than the timeout (all of it with ``force``); stateless parsers have none."""
        return empty_batch()


P = TypeVar("P", bound=type[Parser])
_PARSERS: dict[str, type[Parser]] = {}


def register_parser(name: str) -> Callable[[P], P]:
    def decorate(cls: P) -> P:
        cls.name = name
        _PARSERS[name] = cls
        return cls

    return decorate


def get_parser_class(name: str) -> type[Parser]:
    """The class registered under ``name``; a built-in one (or alias) is imported on first use."""
    if name not in _PARSERS and name in BUILTIN_PARSERS:
        importlib.import_module(f"kubetrail.formats.{BUILTIN_PARSERS[name]}")
    try:
        return _PARSERS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r} (known: {', '.join(parser_names())})") from None


def parser_names() -> list[str]:
    """Registered names plus the built-in ones not imported yet."""
    return sorted({*_PARSERS, *BUILTIN_PARSERS})
