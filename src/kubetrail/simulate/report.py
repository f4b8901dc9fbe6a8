"""What a simulation wrote: per-layer totals, per-stream line counts, the attacks. Also ``manifest.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from kubetrail.simulate.options import SimulationOptions

if TYPE_CHECKING:
    from kubetrail.simulate.attacks import Attack

__all__ = ["LAYERS", "LayerStats", "SimulationReport", "StreamInfo", "load_manifest"]

LAYERS = ("container", "node", "controlplane", "audit")
MANIFEST = "manifest.json"
TRUTH = "truth.jsonl"


@dataclass
class LayerStats:
    files: int = 0
    lines: int = 0
    bytes: int = 0


@dataclass
class StreamInfo:
    """One sequence stream: ``lines`` ids 0..lines-1 were written; ``deleted`` ranges were rotated away."""

    layer: str
    node: str
    lines: int = 0
    files: list[str] = field(default_factory=list)  # relative to the root
    deleted: list[tuple[int, int]] = field(default_factory=list)
    format: str = ""  # cri | docker | journald | klog | plain | syslog | audit


@dataclass
class SimulationReport:
    root: Path
    options: SimulationOptions
    layers: dict[str, LayerStats] = field(default_factory=lambda: {k: LayerStats() for k in LAYERS})
    streams: dict[str, StreamInfo] = field(default_factory=dict)
    attacks: list[Attack] = field(default_factory=list)
    seconds: float = 0.0  # wall-clock time the run took (not part of the manifest)

    @property
    def lines(self) -> int:
        return sum(s.lines for s in self.layers.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.layers.values())

    @property
    def files(self) -> int:
        return sum(s.files for s in self.layers.values())

    def expected_seq(self, layers: tuple[str, ...] = LAYERS) -> dict[str, int]:
        """Lines per stream, for ``seq.check_seq(seen, expected, deleted)``."""
        return {k: v.lines for k, v in self.streams.items() if v.layer in layers}

    def deleted_seq(self) -> dict[str, list[tuple[int, int]]]:
        """Per stream, the ranges of ids rotation deleted (the third argument of ``seq.check_seq``)."""
        return {k: list(v.deleted) for k, v in self.streams.items() if v.deleted}

    def manifest(self) -> dict[str, Any]:
        return {
            "options": self.options.model_dump(),
            "layers": {k: vars(v) for k, v in self.layers.items()},
            "streams": {
                k: {
                    "layer": v.layer,
                    "node": v.node,
                    "format": v.format,
                    "lines": v.lines,
                    "files": v.files,
                    "deleted": [list(r) for r in v.deleted],
                }
                for k, v in sorted(self.streams.items())
            },
            "attacks": [a.id for a in self.attacks],
        }

    def write(self) -> None:
        (self.root / MANIFEST).write_bytes(orjson.dumps(self.manifest(), option=orjson.OPT_INDENT_2) + b"\n")
        (self.root / TRUTH).write_bytes(b"".join(orjson.dumps(a.to_json()) + b"\n" for a in self.attacks))


def load_manifest(root: Path) -> dict[str, Any]:
    """The ``manifest.json`` of a simulated tree (streams and their line counts)."""
    data: dict[str, Any] = orjson.loads((root / MANIFEST).read_bytes())
    return data
