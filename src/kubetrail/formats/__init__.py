"""Vectorized parsers: raw chunks (bytes + origin) -> Arrow batches in the canonical schema.

One module per format. Each parser registers with ``kubetrail.formats.base.parsers``; the server
picks one per origin with ``kubetrail.formats.dispatch``.
"""
