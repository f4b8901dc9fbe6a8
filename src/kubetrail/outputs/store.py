"""``store``: append events to the embedded store (Parquet segments + DuckDB), so a topology can name it.

The server keeps its own handle on the store (``<data_dir>/store``); this output opens the same
store object through ``open_shared`` when both name one directory, so rows are never written twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pydantic import Field

from kubetrail.components import ComponentConfig, Output, outputs
from kubetrail.store.config import StoreConfig  # registers the `store:` section of kubetrail.yaml

if TYPE_CHECKING:
    from kubetrail.store import Store

__all__ = ["StoreOutput", "StoreOutputConfig"]


class StoreOutputConfig(ComponentConfig):
    """Options of ``store``."""

    path: Path = Field(Path("./kubetrail-data/store"), description="Store root directory.")
    flush_max_age_secs: float = Field(60.0, gt=0, description="Tail age at which a segment is written.")


@outputs.register("store")
class StoreOutput(Output[StoreOutputConfig]):
    Config = StoreOutputConfig

    def _store(self) -> Store:
        from kubetrail.store.core import open_shared

        return open_shared(self.config.path, StoreConfig(flush_max_age_secs=self.config.flush_max_age_secs))

    def encode(self, batch: pa.RecordBatch) -> bytes:
        """The store writes Parquet itself; the wire form here is Arrow IPC (for tests and tooling)."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return bytes(sink.getvalue().to_pybytes())

    async def write(self, batch: pa.RecordBatch) -> None:
        await asyncio.to_thread(self._store().append, batch)

    async def close(self) -> None:
        await asyncio.to_thread(self._store().flush)
