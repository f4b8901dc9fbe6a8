from __future__ import annotations

import pyarrow as pa
import pytest

from kubetrail import schema
from kubetrail.chunk import FileIdentity, Origin
from tests.conftest import REPO


def test_every_column_is_documented() -> None:
    doc = (REPO / "docs" / "schema.md").read_text()
    missing = [name for name in schema.SCHEMA.names if f"`{name}`" not in doc]
    assert missing == []
    assert [a for a in schema.ALIASES if f"`{a}`" not in doc] == []


def test_required_ecs_columns_exist() -> None:
    for name in [
        "@timestamp", "message", "log.level", "kubernetes.namespace", "kubernetes.pod.name",
        "kubernetes.pod.uid", "kubernetes.container.name", "container.id", "container.image.name",
        "host.name", "orchestrator.cluster.name", "source.ip", "user.name", "event.action",
        "event.outcome", "event.dataset", "event.id", "event.parse_error", "attributes",
    ]:  # fmt: skip
        assert name in schema.SCHEMA.names, name


@pytest.mark.parametrize(
    ("name", "column", "path"),
    [
        ("verb", "kubernetes.audit.verb", ()),
        ("objectRef.resource", "kubernetes.audit.objectRef.resource", ()),
        ("user.username", "kubernetes.audit.user.username", ()),
        ("sourceIPs", "kubernetes.audit.sourceIPs", ()),
        ("responseStatus.code", "kubernetes.audit.responseStatus.code", ()),
        ("message", "message", ()),
        ("requestObject.spec.hostPID", "kubernetes.audit.requestObject", ("spec", "hostPID")),
        (
            "annotations.authorization.k8s.io/decision",
            "kubernetes.audit.annotations",
            ("authorization.k8s.io/decision",),
        ),
        ("http.user_id", "attributes", ("http.user_id",)),
    ],
)
def test_resolve(name: str, column: str, path: tuple[str, ...]) -> None:
    ref = schema.resolve(name)
    assert ref.column == column
    assert ref.json_path == path
    assert ref.column in schema.SCHEMA.names


def test_conform_fills_nulls_and_casts() -> None:
    batch = schema.conform({"message": pa.array(["a", "b"]), "log.origin.file.line": pa.array([1, 2])}, 2)
    assert batch.schema == schema.SCHEMA
    assert batch.column("log.origin.file.line").type == pa.int32()
    assert batch.column("host.name").null_count == 2


def test_conform_rejects_unknown_columns() -> None:
    with pytest.raises(KeyError, match="not in the schema"):
        schema.conform({"nope": pa.array([1])}, 1)


def test_event_id_prefix_is_deterministic_and_origin_specific() -> None:
    a = Origin(node="n1", source="container", file=FileIdentity(1, 2, "ab"))
    b = Origin(node="n1", source="container", file=FileIdentity(1, 3, "ab"))
    assert a.id_prefix() == Origin.from_dict(a.to_dict()).id_prefix()
    assert a.id_prefix() != b.id_prefix()


def test_from_pylist_round_trip() -> None:
    batch = schema.from_pylist([{"message": "x", "kubernetes.audit.sourceIPs": ["1.2.3.4"]}])
    assert batch.to_pylist()[0]["kubernetes.audit.sourceIPs"] == ["1.2.3.4"]
