"""A small fixture of events: audit rows (lists, JSON objects), container and node lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from kubetrail.query import compile_query
from kubetrail.schema import from_pylist

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _t(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def _audit(
    eid: str, minutes: float, verb: str, resource: str, user: str, ips: list[str], code: int, **kw: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event.id": eid,
        "@timestamp": _t(minutes),
        "event.dataset": "audit",
        "event.module": "audit",
        "kubernetes.audit.verb": verb,
        "kubernetes.audit.objectRef.resource": resource,
        "kubernetes.audit.user.username": user,
        "kubernetes.audit.sourceIPs": ips,
        "kubernetes.audit.responseStatus.code": code,
        "kubernetes.namespace": kw.pop("namespace", "default"),
        "message": f"{verb} {resource} by {user} -> {code}",
    }
    for key, value in kw.items():
        column = {
            "sub": "kubernetes.audit.objectRef.subresource",
            "groups": "kubernetes.audit.user.groups",
            "annotations": "kubernetes.audit.annotations",
            "request": "kubernetes.audit.requestObject",
            "name": "kubernetes.audit.objectRef.name",
        }[key]
        row[column] = json.dumps(value) if key in ("annotations", "request") else value
    return row


ALLOW = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"}
FORBID = {"authorization.k8s.io/decision": "forbid"}

ROWS: list[dict[str, Any]] = [
    _audit(
        "a1",
        50,
        "create",
        "pods",
        "alice",
        ["10.0.0.5"],
        201,
        sub="exec",
        annotations=ALLOW,
        groups=["system:authenticated", "dev"],
        name="web-1",
    ),
    _audit(
        "a2",
        40,
        "get",
        "secrets",
        "system:anonymous",
        ["203.0.113.7"],
        403,
        annotations=FORBID,
        groups=["system:unauthenticated"],
        namespace="kube-system",
    ),
    _audit("a3", 39, "list", "secrets", "system:anonymous", ["203.0.113.7", "10.0.0.9"], 401),
    _audit(
        "a4",
        30,
        "list",
        "secrets",
        "mallory",
        ["198.51.100.23"],
        200,
        namespace="kube-system",
        groups=["system:authenticated"],
        annotations=ALLOW,
    ),
    _audit(
        "a5",
        20,
        "create",
        "pods",
        "mallory",
        ["198.51.100.23"],
        201,
        namespace="prod",
        request={
            "spec": {
                "hostPID": True,
                "containers": [
                    {"image": "evil/miner:1", "securityContext": {"privileged": True}},
                    {"image": "busybox"},
                ],
                "replicas": 3,
            }
        },
    ),
    _audit(
        "a6",
        10,
        "get",
        "pods",
        "bob",
        ["10.0.0.5"],
        404,
        sub="log",
        namespace="prod",
        request={"spec": {"hostPID": False, "containers": [{"image": "nginx:1.25"}], "replicas": 12}},
    ),
    {
        "event.id": "c1",
        "@timestamp": _t(45),
        "event.dataset": "container",
        "kubernetes.namespace": "prod",
        "kubernetes.pod.name": "web-1",
        "kubernetes.container.name": "nginx",
        "stream": "stdout",
        "message": "GET /healthz 200 Connection refused by upstream 10.0.0.5:8080",
        "log.level": "info",
    },
    {
        "event.id": "c2",
        "@timestamp": _t(35),
        "event.dataset": "container",
        "kubernetes.namespace": "prod",
        "kubernetes.pod.name": "web-1",
        "kubernetes.container.name": "nginx",
        "stream": "stderr",
        "message": "ERROR: timeout while connecting to db_primary",
        "log.level": "error",
        "attributes": json.dumps({"trace_id": "abc123", "latency_ms": 250}),
    },
    {
        "event.id": "c3",
        "@timestamp": _t(25),
        "event.dataset": "container",
        "kubernetes.namespace": "kube-system",
        "kubernetes.pod.name": "coredns-5d",
        "kubernetes.container.name": "coredns",
        "stream": "stdout",
        "message": "errors: 0 timeouts; kube-dns ready",
        "log.level": "info",
        "attributes": json.dumps({"trace_id": "zzz", "latency_ms": 12}),
    },
    {
        "event.id": "c4",
        "@timestamp": _t(15),
        "event.dataset": "container",
        "kubernetes.namespace": "prod",
        "kubernetes.pod.name": "web-2",
        "kubernetes.container.name": "nginx",
        "stream": "stdout",
        "message": "Stacktrace: java.lang.NullPointerException at Foo.bar",
        "log.level": "error",
    },
    {
        "event.id": "n1",
        "@timestamp": _t(5),
        "event.dataset": "node",
        "host.name": "node-a",
        "message": 'kubelet: Failed to pull image "evil/miner:1": rpc error',
        "log.level": "warning",
        "attributes": "{not valid json",
    },
    {
        "event.id": "n2",
        "@timestamp": _t(70),
        "event.dataset": "node",
        "host.name": "node-b",
        "message": None,
        "log.level": None,
    },
]


@pytest.fixture(scope="session")
def batch() -> pa.RecordBatch:
    return from_pylist(ROWS)


@pytest.fixture(scope="session")
def con(batch: pa.RecordBatch) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.register("logs_arrow", pa.Table.from_batches([batch]))
    c.execute("CREATE TABLE logs AS SELECT * FROM logs_arrow")
    return c


Run = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def run(con: duckdb.DuckDBPyConnection) -> Run:
    def _run(query: str, **kw: Any) -> list[dict[str, Any]]:
        compiled = compile_query(query, now=NOW, **kw)
        cur = con.execute(compiled.sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    return _run


@pytest.fixture(scope="session")
def ids(run: Run) -> Callable[..., list[str]]:
    def _ids(query: str, **kw: Any) -> list[str]:
        return sorted(r["event.id"] for r in run(query, **kw))

    return _ids
