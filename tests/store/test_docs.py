from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from kubetrail.store.config import StoreConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "store.md"


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaves(ann, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_every_store_option_is_documented() -> None:
    import re

    words = set()
    for token in re.findall(r"`([^`\n]+)`", DOC.read_text()):
        words.update(re.split(r"[.\[\]]+", token))
    missing = [key for key in _leaves(StoreConfig) if key.rsplit(".", 1)[-1] not in words]
    assert not missing, f"document these store options in docs/store.md: {missing}"
