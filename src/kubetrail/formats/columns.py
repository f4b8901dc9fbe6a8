"""Finish a parsed batch: identity, origin and bookkeeping columns every event carries.

``event.id`` = ``origin.id_prefix() + "-" + absolute byte offset`` of the event's first byte, built
with two kernels. Origin metadata (keys are schema column names; other keys are ignored here) and
pod coordinates from the path are broadcast; columns the parser produced win over both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats.kernels import broadcast, from_np
from kubetrail.formats.paths import dataset_for, parse_pod_path
from kubetrail.schema import SCHEMA, TIMESTAMP, conform

__all__ = ["event_ids", "finish_batch"]

_SCHEMA_NAMES = frozenset(SCHEMA.names)


def event_ids(origin: Origin, offsets: npt.NDArray[np.int64]) -> pa.Array:
    return pc.binary_join_element_wise(origin.id_prefix() + "-", from_np(offsets).cast(pa.string()), "")


def finish_batch(
    origin: Origin,
    module: str,
    offsets: npt.NDArray[np.int64],
    columns: Mapping[str, pa.Array],
    now_ns: int,
    dataset: str | None = None,
) -> pa.RecordBatch:
    """Full-schema batch from a parser's columns plus the origin's identity and coordinates."""
    n = int(offsets.size)
    out: dict[str, pa.Array] = {}
    for key, value in origin.metadata.items():
        if key in _SCHEMA_NAMES:
            out[key] = broadcast(value, n)
    pod = parse_pod_path(origin.path) if origin.source in ("container", "docker", "cri") else None
    if pod is not None:
        for key, coordinate in pod.columns().items():
            if coordinate is not None:
                out[key] = pa.repeat(pa.scalar(coordinate, SCHEMA.field(key).type), n)
    out["event.id"] = event_ids(origin, offsets)
    out["log.offset"] = from_np(offsets.astype(np.int64, copy=False))
    out["host.name"] = broadcast(origin.node, n)
    if origin.path is not None:
        out["log.file.path"] = broadcast(origin.path, n)
    out["event.module"] = broadcast(module, n)
    out["event.dataset"] = broadcast(dataset or dataset_for(pod, origin.source), n)
    out["event.ingested"] = pa.repeat(pa.scalar(now_ns, pa.int64()), n).cast(TIMESTAMP)
    out.update(columns)
    return conform(out, n)
