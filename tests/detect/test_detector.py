"""Streaming detection: alerts grouped per rule and key, correlation state across batches, a failing
rule disabled with its id while the others keep running, the registered ``detect`` transform."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrail.components import transforms
from kubetrail.detect.config import DetectConfig
from kubetrail.detect.detector import Detector
from kubetrail.detect.engine import Engine
from kubetrail.detect.rules import load_rules
from kubetrail.detect.testing import batch_of

RULES = Path(__file__).resolve().parents[2] / "rules"


def secret_get(i: int, sec: int) -> dict:
    return {
        "verb": "get",
        "user": {"username": "mallory"},
        "objectRef": {"resource": "secrets", "namespace": "p", "name": f"s{i}"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": f"2026-11-27T12:00:{sec:02d}Z",
    }


def test_correlation_state_carries_across_batches() -> None:
    det = Detector(DetectConfig(rules=[str(RULES / "credential_access/k8s_secret_read_burst.yml")]))
    fired = []
    for i in range(12):  # one event per batch
        _, alerts = det.process(batch_of([secret_get(i, i * 2)]))
        fired += [a for a in alerts if a.kind == "correlation"]
    assert len(fired) == 1
    assert fired[0].group_key == {"user.username": "mallory"} and fired[0].count == 10
    det.close()


def test_detection_alerts_group_by_key_with_event_ids() -> None:
    det = Detector(DetectConfig(rules=[str(RULES / "execution/k8s_pod_exec.yml")]))
    execs = [
        {
            "verb": "get",
            "user": {"username": u},
            "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "p"},
            "auditID": f"id{i}",
        }
        for i, u in enumerate(["a", "a", "b"])
    ]
    _, alerts = det.process(batch_of(execs))
    by_user = {a.group_key["user.name"]: a for a in alerts}
    assert set(by_user) == {"a", "b"} and by_user["a"].event_ids == ["id0", "id1"]
    det.close()


def test_failing_rule_is_disabled_and_others_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "title: casts at run time\nid: 5d6f0c4e-1111-4c3b-9a51-2b9c7d0e4a10\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel:\n    requestObject.spec.replicas|gt: 1\n  condition: sel\nlevel: low\n"
    )
    ruleset = load_rules([bad, RULES / "execution/k8s_pod_exec.yml"])
    # make the compiled SQL fail only on data: a division by zero in an error() call
    ruleset.rules[0].sql = (
        "error('boom') IS NULL" if "casts" in ruleset.rules[0].title else ruleset.rules[0].sql
    )
    engine = Engine(ruleset)
    exec_event = {"verb": "create", "objectRef": {"resource": "pods", "subresource": "exec"}}
    matches = engine.evaluate(batch_of([exec_event]))
    assert [m.rule.name for m in matches.matches] == ["k8s_pod_exec"]
    assert any(
        e.rule_id == "5d6f0c4e-1111-4c3b-9a51-2b9c7d0e4a10" and e.stage == "run" for e in ruleset.errors
    )


def test_bad_rule_file_reported_with_id(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text("title: x\nid: 7\ndetection: {condition: nothing}\n")
    (tmp_path / "unknown_source.yml").write_text(
        "title: windows\nid: 8f5e1c2a-1111-4c3b-9a51-2b9c7d0e4a10\nlogsource: {product: windows}\n"
        "detection: {sel: {Image: x}, condition: sel}\n"
    )
    ruleset = load_rules([tmp_path, RULES / "execution/k8s_pod_exec.yml"])
    assert [r.name for r in ruleset.rules] == ["k8s_pod_exec"]
    assert len(ruleset.errors) == 2


def test_detect_transform_registered_enriches_and_records_alerts(tmp_path: Path) -> None:
    from kubetrail.detect.alerts import AlertStore

    cls = transforms.get("detect")
    db = tmp_path / "alerts.sqlite"
    options = {
        "type": "detect",
        "rules": [str(RULES / "execution")],
        "geoip": {"enabled": True},
        "alerts_db": str(db),
    }
    component = transforms.build("d", options)
    assert isinstance(component, cls)
    exec_event = {
        "verb": "get",
        "sourceIPs": ["8.8.8.8"],
        "auditID": "a1",
        "objectRef": {"resource": "pods", "subresource": "exec"},
    }
    out = component.transform(batch_of([exec_event]))
    assert out.column("source.geo.country_iso_code").to_pylist() == ["US"]
    assert [a.event_ids for a in AlertStore(db).list()] == [["a1"]]


def test_server_pipeline_puts_the_default_alert_store_under_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``alerts_db`` the detect transform's alerts go to <data_dir>/alerts.sqlite, not the CWD."""
    from kubetrail.detect.alerts import AlertStore
    from kubetrail.server.pipeline import Pipeline
    from kubetrail.server.wal import WriteAheadLog
    from tests.server.helpers import LineParser, MemoryStore

    monkeypatch.chdir(tmp_path)
    component = transforms.build("d", {"type": "detect", "rules": [str(RULES / "execution")]})
    data_dir = tmp_path / "data"
    Pipeline(
        WriteAheadLog(tmp_path / "wal"),
        LineParser(),
        MemoryStore(),
        transforms=[component],
        data_dir=data_dir,
    )
    exec_event = {"verb": "get", "auditID": "a1", "objectRef": {"resource": "pods", "subresource": "exec"}}
    component.transform(batch_of([exec_event]))
    assert [a.event_ids for a in AlertStore(data_dir / "alerts.sqlite").list()] == [["a1"]]
    assert not (tmp_path / "kubetrail-data").exists()
