"""The example ``kubetrail.yaml`` at the repository root stays valid and names every receiver."""

from __future__ import annotations

from pathlib import Path

from kubetrail.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_demo_config_is_valid() -> None:
    cfg, topology = load_config(REPO / "kubetrail.yaml", environ={})
    types = {r.type_name for r in topology.receivers.values()}
    assert types == {"agent", "forward", "audit_webhook", "syslog", "otlp", "elasticsearch_bulk"}
    assert all(r.config.listen.startswith("127.0.0.1:") for r in topology.receivers.values())  # type: ignore[attr-defined]
    assert str(cfg.data_dir) == "demo-data"
    assert cfg.section("server").listen == "127.0.0.1:8080"
