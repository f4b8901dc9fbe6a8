"""The project's own rule pack: every rule loads, carries ATT&CK tags, a level and an id, and fires on its
true events and not on its false events (tests/detect/rules/<rule-name>.yml)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from kubetrail.detect.rules import RuleSet, load_rules
from kubetrail.detect.testing import run_rule_test

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
TESTS = Path(__file__).parent / "rules"
TEST_FILES = sorted(TESTS.glob("*.yml"))


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules([RULES])


def test_pack_loads_without_errors(pack: RuleSet) -> None:
    assert pack.errors == []
    alerting = [r for r in pack.rules if r.alert] + pack.correlations
    assert len(alerting) >= 40


def test_every_rule_has_tags_level_id_and_tests(pack: RuleSet) -> None:
    tested = {yaml.safe_load(f.read_text())["rule"] for f in TEST_FILES}
    for rule in [*pack.rules, *pack.correlations]:
        uuid.UUID(rule.id)
        assert rule.level in ("informational", "low", "medium", "high", "critical")
        assert any(re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t) for t in rule.tags), rule.name
        assert any(re.fullmatch(r"attack\.[a-z-]+", t) and t[7:8] != "t" for t in rule.tags), rule.name
        if rule in pack.correlations or getattr(rule, "alert", True):
            assert rule.name in tested, f"{rule.name} has no test events"


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[f.stem for f in TEST_FILES])
def test_rule_fires_on_true_events_only(test_file: Path, pack: RuleSet) -> None:
    result = run_rule_test(test_file, pack)
    assert result.ok, f"{result.rule}: {result.failures}"
