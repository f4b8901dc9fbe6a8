from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubetrail import schema
from kubetrail.transforms.add_fields import AddFields, AddFieldsConfig


def test_fills_nulls_only_by_default() -> None:
    batch = schema.from_pylist([{"orchestrator.cluster.name": "keep"}, {}])
    out = AddFields(AddFieldsConfig(fields={"orchestrator.cluster.name": "prod"})).transform(batch)
    assert out.column("orchestrator.cluster.name").to_pylist() == ["keep", "prod"]


def test_overwrite() -> None:
    batch = schema.from_pylist([{"orchestrator.cluster.name": "keep"}, {}])
    cfg = AddFieldsConfig(fields={"orchestrator.cluster.name": "prod"}, overwrite=True)
    assert AddFields(cfg).transform(batch).column("orchestrator.cluster.name").to_pylist() == ["prod"] * 2


def test_unknown_column_rejected() -> None:
    with pytest.raises(ValidationError, match="not schema columns"):
        AddFieldsConfig(fields={"no.such.column": "x"})
