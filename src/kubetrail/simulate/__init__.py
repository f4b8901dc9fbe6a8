"""A deterministic cluster simulator: writes the real on-disk log layout of a Kubernetes cluster.

``simulate_batch(root, SimulationOptions(...))`` writes H hours of activity as fast as possible;
``live.LiveSimulator`` appends at a rate and rotates as it goes. Every line carries a sequence id
(``kubetrail.simulate.seq``) and scripted attacks are listed in ``truth.jsonl``. See ``docs/simulate.md``.

Names are imported lazily so that ``kubetrail --help`` does not load numpy and pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetrail.simulate.batch import simulate_batch
    from kubetrail.simulate.options import SimulationOptions
    from kubetrail.simulate.report import LAYERS, SimulationReport, load_manifest
    from kubetrail.simulate.seq import SEQ_PATTERN, SEQ_RE, check_seq, count_seq, extract_seq

__all__ = [
    "LAYERS",
    "SEQ_PATTERN",
    "SEQ_RE",
    "SimulationOptions",
    "SimulationReport",
    "check_seq",
    "count_seq",
    "extract_seq",
    "load_manifest",
    "simulate_batch",
]

_WHERE = {
    "simulate_batch": "batch",
    "SimulationOptions": "options",
    "LAYERS": "report",
    "SimulationReport": "report",
    "load_manifest": "report",
    "SEQ_PATTERN": "seq",
    "SEQ_RE": "seq",
    "check_seq": "seq",
    "count_seq": "seq",
    "extract_seq": "seq",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"kubetrail.simulate.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'kubetrail.simulate' has no attribute {name!r}")
