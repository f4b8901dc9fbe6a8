"""Vectorized parsers: raw chunks (bytes + origin) -> Arrow batches in the canonical schema.

One module per format. Each parser registers with ``kubetrail.formats.base.parsers``; the server
picks one per origin with ``kubetrail.formats.dispatch``.
"""

__all__ = ["BUILTIN_PARSERS", "BUILTIN_PARSER_MODULES"]

# Modules under kubetrail.formats that register a parser of the same name; imported on first use.
BUILTIN_PARSER_MODULES: tuple[str, ...] = ("cri", "docker", "klog", "audit", "journald", "syslog", "nodelog")
# Every built-in parser name -> the module that registers it (aliases live in another name's module).
BUILTIN_PARSERS: dict[str, str] = {
    **{name: name for name in BUILTIN_PARSER_MODULES},
    "syslog5424": "syslog",
    "syslog3164": "syslog",
}
