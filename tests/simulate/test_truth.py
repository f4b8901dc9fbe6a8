"""truth.jsonl: every attack is there, its evidence exists, and background noise never looks like it."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from kubetrail.simulate import SimulationReport
from kubetrail.simulate.seq import extract_seq

from .helpers import cri_records, docker_records, read_bytes

ATTACKS = {
    "pod-exec",
    "pod-attach",
    "secret-enumeration",
    "privileged-hostpath-pod",
    "cluster-admin-binding",
    "anonymous-access",
    "stolen-sa-token",
    "crypto-miner",
    "malicious-cronjob",
    "malicious-daemonset",
    "auth-failure-burst",
    "kube-system-tampering",
    "event-deletion",
    "reverse-shell",
}


def records(root: Path, stream_info: Any) -> list[bytes]:
    out: list[bytes] = []
    for rel in stream_info.files:
        data = read_bytes(root / rel)
        if stream_info.format == "cri":
            out.extend(m for _, m in cri_records(data))
        elif stream_info.format == "docker":
            out.extend(m.encode() for _, m in docker_records(data))
        else:
            out.extend(data.split(b"\n")[:-1])
    return out


@pytest.fixture(scope="module")
def truth(small_sim: SimulationReport) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (small_sim.root / "truth.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def audit_events(small_sim: SimulationReport) -> list[dict[str, Any]]:
    return [json.loads(r) for r in records(small_sim.root, small_sim.streams["audit"])]


def test_every_scenario_present(truth: list[dict[str, Any]]) -> None:
    assert {t["name"] for t in truth} == ATTACKS
    for t in truth:
        for key in ("id", "time", "technique", "layers", "user", "source_ip", "audit_ids", "seq_ids"):
            assert key in t
        assert t["technique"].startswith("T")
        assert t["seq_ids"], t["name"]


def test_evidence_exists(
    small_sim: SimulationReport, truth: list[dict[str, Any]], audit_events: list[dict[str, Any]]
) -> None:
    by_id = {ev["auditID"] for ev in audit_events}
    cache: dict[str, dict[int, bytes]] = {}
    for t in truth:
        for aid in t["audit_ids"]:
            assert aid in by_id, (t["name"], aid)
        for sid in t["seq_ids"]:
            stream, n = sid.rsplit(":", 1)
            if stream not in cache:
                cache[stream] = {}
                for rec in records(small_sim.root, small_sim.streams[stream]):
                    for _s, k in extract_seq(rec):
                        cache[stream][k] = rec
            assert int(n) in cache[stream], (t["name"], sid)
        layers = {small_sim.streams[s.rsplit(":", 1)[0]].layer for s in t["seq_ids"]}
        assert layers == set(t["layers"]), t["name"]


def test_exec_audited_as_create_and_get(
    truth: list[dict[str, Any]], audit_events: list[dict[str, Any]]
) -> None:
    for name, sub in (("pod-exec", "exec"), ("pod-attach", "attach")):
        ids = set(next(t for t in truth if t["name"] == name)["audit_ids"])
        verbs = {ev["verb"] for ev in audit_events if ev["auditID"] in ids}
        assert verbs == {"create", "get"}
        assert all(ev["objectRef"]["subresource"] == sub for ev in audit_events if ev["auditID"] in ids)


def test_privileged_pod_body(truth: list[dict[str, Any]], audit_events: list[dict[str, Any]]) -> None:
    ids = set(next(t for t in truth if t["name"] == "privileged-hostpath-pod")["audit_ids"])
    (ev,) = [ev for ev in audit_events if ev["auditID"] in ids]
    spec = ev["requestObject"]["spec"]
    assert ev["level"] == "RequestResponse" and spec["hostPID"] is True
    assert spec["containers"][0]["securityContext"]["privileged"] is True
    assert spec["volumes"][0]["hostPath"]["path"] == "/"


def _is_public(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_global


def test_noise_does_not_look_like_attacks(
    truth: list[dict[str, Any]], audit_events: list[dict[str, Any]], small_sim: SimulationReport
) -> None:
    evidence = {aid for t in truth for aid in t["audit_ids"]}
    noise = [ev for ev in audit_events if ev["auditID"] not in evidence]
    assert len(noise) > 1000
    for ev in noise:
        ref = ev.get("objectRef", {})
        user = ev["user"].get("username", "")
        assert ref.get("subresource") not in ("exec", "attach"), ev
        assert ev["responseStatus"]["code"] < 400, ev
        assert not any(_is_public(ip) for ip in ev["sourceIPs"]), ev
        if user == "system:anonymous":
            assert ev["requestURI"] in ("/livez", "/readyz", "/healthz"), ev
        if ev["verb"] in ("create", "update", "patch", "delete", "deletecollection"):
            assert ref.get("resource") not in ("clusterrolebindings", "cronjobs", "daemonsets"), ev
            assert ref.get("namespace") != "kube-system" or user.startswith("system:"), ev
            assert not (ref.get("resource") == "events" and ev["verb"].startswith("delete")), ev
        assert not (ref.get("resource") == "secrets" and ev["verb"] == "list"), ev
        if ev["verb"] == "create" and ref.get("resource") == "pods":
            assert ref.get("namespace") != "kube-system", ev
    # container and node logs: attack strings only in evidence
    evidence_seq = {s for t in truth for s in t["seq_ids"]}
    miner_streams = {s for t in truth for s in t["streams"]}
    for stream, info in small_sim.streams.items():
        if stream == "audit" or stream in miner_streams:
            continue
        for rec in records(small_sim.root, info):
            if b"/dev/tcp/" in rec or b"stratum+tcp" in rec or b"xmrig" in rec:
                ids = {f"{s}:{n}" for s, n in extract_seq(rec)}
                assert ids <= evidence_seq, rec[:200]
