"""Every audit line is a valid audit.k8s.io/v1 Event under the simulated policy."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from kubetrail.simulate import SimulationReport
from kubetrail.simulate.audit import level_for

from .helpers import read_bytes

REQUIRED = (
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "stageTimestamp",
    "requestReceivedTimestamp",
)
STAGES = {"ResponseStarted", "ResponseComplete", "Panic"}


@pytest.fixture(scope="module")
def events(small_sim: SimulationReport) -> list[dict[str, Any]]:
    out = []
    for rel in small_sim.streams["audit"].files:
        for line in read_bytes(small_sim.root / rel).splitlines():
            out.append(json.loads(line))
    assert len(out) == small_sim.layers["audit"].lines
    return out


def test_required_fields_and_stages(events: list[dict[str, Any]]) -> None:
    for ev in events:
        for key in REQUIRED:
            assert key in ev, (key, ev)
        assert ev["kind"] == "Event" and ev["apiVersion"] == "audit.k8s.io/v1"
        assert ev["stage"] in STAGES  # omitStages: RequestReceived never appears
        assert ev["level"] in ("Metadata", "Request", "RequestResponse")
        assert ev["requestReceivedTimestamp"] <= ev["stageTimestamp"]
        assert ev["requestURI"].startswith("/")
        assert isinstance(ev["user"], dict) and isinstance(ev.get("sourceIPs", []), list)
        assert "code" in ev["responseStatus"]


def test_audit_ids_unique_per_stage(events: list[dict[str, Any]]) -> None:
    counts = Counter((ev["auditID"], ev["stage"]) for ev in events)
    assert max(counts.values()) == 1


def test_policy_levels(events: list[dict[str, Any]]) -> None:
    bodies = 0
    for ev in events:
        ref = ev.get("objectRef", {})
        resource = ref.get("resource", "")
        full = f"{resource}/{ref['subresource']}" if ref.get("subresource") else resource
        assert ev["level"] == level_for(ev["verb"], full, ref.get("apiGroup", ""))
        if resource in ("secrets", "configmaps"):
            assert ev["level"] == "Metadata"
            assert "requestObject" not in ev and "responseObject" not in ev
        if ev["verb"] == "create" and (
            (resource == "pods" and not ref.get("subresource"))
            or ref.get("apiGroup") == "rbac.authorization.k8s.io"
        ):
            assert ev["level"] == "RequestResponse"
            assert "requestObject" in ev and "responseObject" in ev
            bodies += 1
        if ev["level"] == "Metadata":
            assert "requestObject" not in ev and "responseObject" not in ev
        if ev["level"] == "Request":
            assert "responseObject" not in ev
    assert bodies >= 2  # the privileged pod and the cluster-admin binding


def test_log_is_in_stage_timestamp_order(events: list[dict[str, Any]]) -> None:
    stamps = [ev["stageTimestamp"] for ev in events]
    assert stamps == sorted(stamps)


def test_noise_has_ordinary_actors(events: list[dict[str, Any]]) -> None:
    users = Counter(ev["user"].get("username", "") for ev in events)
    assert users["system:kube-controller-manager"] > 10
    assert any(u.startswith("system:node:") for u in users)
    leases = [ev for ev in events if ev.get("objectRef", {}).get("resource") == "leases"]
    assert len(leases) > 10


def test_audit_ids_in_bulk_are_unique_uuid4() -> None:
    """A long run draws ~1M ids at once; pyarrow then returns chunks, which must still join."""
    import re

    import numpy as np

    from kubetrail.simulate.noise import audit_ids

    ids = audit_ids(np.random.default_rng(3), 1_000_000)
    assert len(ids) == 1_000_000
    assert len(set(ids.to_pylist())) == 1_000_000
    uuid4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(uuid4.match(x) for x in ids.to_pylist()[:1000])


def test_audit_lines_use_64_bit_offsets_so_a_day_of_a_large_cluster_fits() -> None:
    """A single string array holds at most 2 GiB: 24 h of a 13-node cluster's audit log (~6M events
    of ~1.5 kB) overflowed it. The encoder works in large_string, with the same bytes."""
    import numpy as np
    import pyarrow as pa

    from kubetrail.simulate import SimulationOptions
    from kubetrail.simulate.arrowtext import join
    from kubetrail.simulate.audit import encode_bulk
    from kubetrail.simulate.cluster import build_cluster
    from kubetrail.simulate.noise import background_events

    cluster = build_cluster(SimulationOptions(nodes=2), np.random.default_rng(1))
    noise = background_events(cluster, 0, 60 * 10**9, 20.0, np.random.default_rng(2))
    lines, ts, _ = encode_bulk(noise, [])
    assert lines.type == pa.large_string() and len(lines) == len(noise) > 0
    for line in lines.to_pylist():
        event = json.loads(line)
        assert line.endswith("\n") and event["auditID"] and event["stageTimestamp"]
    assert (np.diff(ts) >= 0).all()
    # join keeps 64-bit offsets once any input has them, strings or bytes
    assert join(pa.array(["a"], pa.large_string()), "-", pa.array(["b"])).to_pylist() == ["a-b"]
    assert join(pa.array(["a"], pa.large_string()), "-").type == pa.large_string()
    assert join(pa.array([b"a"], pa.large_binary()), pa.array(["b"])).type == pa.large_binary()
    assert join(pa.array(["a"]), "x").type == pa.string()
