"""docs/detect.md stays honest: every config option and every pack rule is documented."""

from __future__ import annotations

from pathlib import Path

from kubetrail.detect.config import DetectConfig, FeedConfig, GeoIPConfig, IntelConfig
from kubetrail.detect.rules import load_rules

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "detect.md").read_text()


def test_every_option_documented() -> None:
    for model in (DetectConfig, GeoIPConfig, IntelConfig, FeedConfig):
        for name in model.model_fields:
            assert name in DOC, f"{model.__name__}.{name} is not in docs/detect.md"


def test_every_pack_rule_listed() -> None:
    pack = load_rules([REPO / "rules"])
    for rule in [*pack.rules, *pack.correlations]:
        assert f"`{rule.name}`" in DOC, f"{rule.name} is not in docs/detect.md"
