"""One exception hierarchy for kubetrail, each class with a stable error code.

    KubetrailError                 code        raised when
    ├── ConfigError                KT-CONFIG   the configuration is invalid (names the key)
    ├── ParseError                 KT-PARSE    a parser is given something it cannot read at all
    ├── ProtocolError              KT-PROTO    a receiver gets a malformed frame or body
    │   └── LimitExceeded          KT-LIMIT    a size, nesting or decompression limit is crossed
    ├── Backpressure               KT-BUSY     a queue is full; carries ``retry_after_secs``
    ├── StorageError               KT-STORE    the WAL or the store cannot read or write
    └── QueryError                 KT-QUERY    a query cannot be parsed or run (names the position)
        ├── QueryTimeout           KT-QUERY-TIMEOUT    a query ran longer than its time limit
        └── QueryCancelled         KT-QUERY-CANCELLED  a query was cancelled by its caller

Parsers never raise for bad *lines*: those become flagged events. These exceptions are for callers.
"""

from __future__ import annotations

__all__ = [
    "Backpressure",
    "ConfigError",
    "KubetrailError",
    "LimitExceeded",
    "ParseError",
    "ProtocolError",
    "QueryCancelled",
    "QueryError",
    "QueryTimeout",
    "StorageError",
]


class KubetrailError(Exception):
    code = "KT-ERROR"

    def __init__(self, message: str, **context: object) -> None:
        self.context = context
        detail = ", ".join(f"{k}={v!r}" for k, v in context.items())
        super().__init__(f"[{self.code}] {message}" + (f" ({detail})" if detail else ""))


class ConfigError(KubetrailError):
    code = "KT-CONFIG"

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        KubetrailError.__init__(self, f"{source} is invalid:\n{lines}")


class ParseError(KubetrailError):
    code = "KT-PARSE"


class ProtocolError(KubetrailError):
    code = "KT-PROTO"


class LimitExceeded(ProtocolError):
    code = "KT-LIMIT"


class Backpressure(KubetrailError):
    code = "KT-BUSY"

    def __init__(self, message: str, retry_after_secs: float = 1.0, **context: object) -> None:
        self.retry_after_secs = retry_after_secs
        super().__init__(message, retry_after_secs=retry_after_secs, **context)


class StorageError(KubetrailError):
    code = "KT-STORE"


class QueryError(KubetrailError):
    code = "KT-QUERY"

    def __init__(self, message: str, query: str = "", position: int | None = None) -> None:
        self.query = query
        self.position = position
        pointer = ""
        if query and position is not None:
            pointer = f"\n  {query}\n  {' ' * position}^"
        KubetrailError.__init__(self, message + (f" at position {position}" if position is not None else ""))
        self.args = (str(self.args[0]) + pointer,)


class QueryTimeout(QueryError):
    code = "KT-QUERY-TIMEOUT"


class QueryCancelled(QueryError):
    code = "KT-QUERY-CANCELLED"
