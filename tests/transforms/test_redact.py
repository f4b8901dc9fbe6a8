from __future__ import annotations

import pyarrow as pa

from kubetrail import schema
from kubetrail.transforms.redact import Redact, RedactConfig


def test_redacts_secrets_keeps_context() -> None:
    batch = schema.from_pylist(
        [
            {"message": "login ok password=hunter2 user=bob"},
            {"message": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123"},
            {"message": "key AKIAABCDEFGHIJKLMNOP used"},
            {"message": "nothing to see"},
            {"message": None},
        ]
    )
    out = Redact(RedactConfig()).transform(batch).column("message").to_pylist()
    assert out[0] == "login ok password=[REDACTED] user=bob"
    assert out[1] == "Authorization: Bearer [REDACTED]"
    assert out[2] == "key [REDACTED] used"
    assert out[3] == "nothing to see"
    assert out[4] is None


def test_other_columns_untouched() -> None:
    batch = schema.from_pylist([{"message": "token=abc", "host.name": "token=abc"}])
    out = Redact(RedactConfig()).transform(batch)
    assert out.column("host.name").to_pylist() == ["token=abc"]
    assert out.schema == batch.schema
    assert isinstance(out, pa.RecordBatch)
