"""The embedded store: Parquet segments, a SQLite catalog, a token index, an in-memory tail.

See ``docs/store.md``. The public entry point is ``Store``; ``StoreConfig`` is the ``store``
section of ``kubetrail.yaml``.
"""

from kubetrail.store.config import StoreConfig
from kubetrail.store.core import SearchResult, Store, to_ns

__all__ = ["SearchResult", "Store", "StoreConfig", "to_ns"]
