"""docs/server.md documents every server option, receiver type and metric (kept honest here)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from kubetrail.components import receivers
from kubetrail.server.metrics import ServerMetrics
from kubetrail.server.settings import ServerConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()


def _options(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = [a for a in inner if issubclass(a, BaseModel) and a.__name__ not in ("TLSConfig",)]
        if nested:
            names += _options(nested[0], f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names


def test_every_server_option_is_documented() -> None:
    missing = [o for o in _options(ServerConfig) if f"`{o}`" not in DOC]
    assert not missing, missing


def test_every_metric_is_documented() -> None:
    names = [m.name for m in ServerMetrics().registry.collect()]
    missing = [n for n in names if n not in DOC]
    assert not missing, missing


def test_every_receiver_type_is_documented() -> None:
    ours = [name for name, cls in receivers if cls.__module__.startswith("kubetrail.receivers.")]
    assert "agent" in ours
    missing = [name for name in ours if f"`{name}`" not in DOC]
    assert not missing, missing
