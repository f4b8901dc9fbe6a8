"""Vectorized parsers: raw chunks (bytes + origin) -> Arrow batches in the canonical schema.

One module per format. Each parser registers with ``kubetrail.formats.base.parsers``; the server
picks one per origin with ``kubetrail.formats.dispatch``.
"""

__all__ = ["BUILTIN_PARSER_MODULES"]

# Modules under kubetrail.formats that register a parser of the same name; imported on first use.
BUILTIN_PARSER_MODULES: tuple[str, ...] = ("cri", "docker", "klog", "audit", "journald", "syslog", "nodelog")
