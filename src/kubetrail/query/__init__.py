"""The hunting query language: Lucene/KQL-style search plus pipes, compiled to DuckDB SQL
(:func:`compile_query`) for the embedded store and to OpenSearch DSL (:func:`to_opensearch`) for
the scale-out hot store. ``docs/query.md`` is the language reference.
"""

from __future__ import annotations

from kubetrail.query.ast import Query
from kubetrail.query.needles import TimeRange
from kubetrail.query.parser import parse
from kubetrail.query.to_opensearch import to_opensearch
from kubetrail.query.to_sql import CompiledQuery, compile_query
from kubetrail.query.validate import validate_sql

__all__ = ["CompiledQuery", "Query", "TimeRange", "compile_query", "parse", "to_opensearch", "validate_sql"]
