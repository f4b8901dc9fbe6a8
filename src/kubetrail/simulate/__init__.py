"""A deterministic cluster simulator: writes the real on-disk log layout of a Kubernetes cluster.

``simulate_batch(root, SimulationOptions(...))`` writes H hours of activity as fast as possible;
``LiveSimulator`` appends at a rate and rotates as it goes. Every line carries a sequence id
(``kubetrail.simulate.seq``) and scripted attacks are listed in ``truth.jsonl``. See ``docs/simulate.md``.
"""

from __future__ import annotations

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
