"""``add_fields``: set constant values on schema columns where they are null (or always)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from kubetrail.components import ComponentConfig, Transform, transforms
from kubetrail.schema import SCHEMA


class AddFieldsConfig(ComponentConfig):
    """Options of ``add_fields``."""

    fields: dict[str, str] = Field(description="Schema column -> value, e.g. orchestrator.cluster.name.")
    overwrite: bool = Field(False, description="Replace existing values instead of filling nulls.")

    @field_validator("fields")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in value if k not in SCHEMA.names]
        if unknown:
            raise ValueError(f"not schema columns: {', '.join(unknown)}")
        return value


@transforms.register("add_fields")
class AddFields(Transform[AddFieldsConfig]):
    Config = AddFieldsConfig

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = list(batch.columns)
        for name, value in self.config.fields.items():
            idx = batch.schema.get_field_index(name)
            if idx < 0:
                continue
            typ = batch.schema.field(idx).type
            constant = pa.scalar(value).cast(typ)
            if self.config.overwrite:
                columns[idx] = pa.array([constant.as_py()] * batch.num_rows, type=typ)
            else:
                columns[idx] = pc.fill_null(columns[idx], constant)
        return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
