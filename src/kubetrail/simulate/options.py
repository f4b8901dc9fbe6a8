"""The simulator's options: one pydantic model shared by the CLI, the Python API and the demo."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_START", "SimulationOptions"]

DEFAULT_START = "2026-01-01T12:00:00Z"
MIB = 1024 * 1024


class SimulationOptions(BaseModel):
    """What to simulate. Same options and seed => byte-identical output tree."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(3, ge=1, le=500, description="Nodes; node 0 is the control plane.")
    hours: float = Field(0.25, gt=0, le=168, description="Simulated activity (batch mode).")
    seed: int = Field(1, description="Seed of every random choice.")
    start: str = Field(DEFAULT_START, description="ISO-8601 time of the first event (UTC).")
    cluster_name: str = "kt-sim"
    docker_nodes: int = Field(0, ge=0, description="How many worker nodes use docker json-file logs.")
    lines_per_node_s: float = Field(40.0, gt=0, description="Container log lines per node per second.")
    audit_events_per_node_s: float = Field(6.0, ge=0, description="Background audit events per node per s.")
    rotate_bytes: int = Field(10 * MIB, ge=4096, description="kubelet containerLogMaxSize.")
    rotate_keep: int = Field(5, ge=2, description="kubelet containerLogMaxFiles (current file included).")
    copytruncate: bool = Field(
        False,
        description="Live mode: rotate by copy + truncate instead of rename (batch trees are the same).",
    )
    audit_rotate_bytes: int = Field(100 * MIB, ge=4096, description="kube-apiserver --audit-log-maxsize.")
    audit_keep: int = Field(10, ge=1, description="kube-apiserver --audit-log-maxbackup.")
    audit_compress: bool = Field(False, description="kube-apiserver --audit-log-compress.")
    partial_split_prob: float = Field(
        0.002, ge=0, le=1, description="Share of CRI lines cut at a random point into P + F."
    )
    attacks: bool = Field(True, description="Inject the scripted attack scenarios.")
    restart_prob: float = Field(0.06, ge=0, le=1, description="Share of containers restarted once.")
