from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kubetrail import schema
from kubetrail.outputs.file import File, FileConfig


def test_appends_ndjson(tmp_path: Path) -> None:
    out = File(FileConfig(path=tmp_path / "o.ndjson"))
    batch = schema.from_pylist([{"message": "a", "host.name": "n1"}, {"message": "b\nc"}])
    asyncio.run(out.write(batch))
    asyncio.run(out.write(batch))
    docs = [json.loads(line) for line in (tmp_path / "o.ndjson").read_text().splitlines()]
    assert [d["message"] for d in docs] == ["a", "b\nc", "a", "b\nc"]
    assert docs[0]["host.name"] == "n1"
    assert out.encode(schema.empty_batch()) == b""
