from __future__ import annotations

from pathlib import Path

import pytest

from kubetrail.simulate import SimulationOptions, SimulationReport, simulate_batch

# Small but complete: 3 nodes (one docker), 6 minutes, every attack, rotation forced by small sizes.
SMALL = SimulationOptions(
    nodes=3,
    hours=0.1,
    seed=7,
    docker_nodes=1,
    rotate_bytes=200_000,
    rotate_keep=4,
    audit_rotate_bytes=400_000,
    audit_keep=50,
    partial_split_prob=0.01,
)


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> SimulationReport:
    root: Path = tmp_path_factory.mktemp("sim") / "tree"
    return simulate_batch(root, SMALL)
