from __future__ import annotations

import asyncio
from pathlib import Path

from kubetrail.components import outputs
from kubetrail.store.core import open_shared
from tests.store.conftest import make_batch


def test_store_output_appends_and_shares_the_store(tmp_path: Path) -> None:
    out = outputs.build("hot", {"type": "store", "path": str(tmp_path / "st")})
    batch = make_batch(100)
    asyncio.run(out.write(batch))  # type: ignore[attr-defined]
    asyncio.run(out.write(batch))  # type: ignore[attr-defined]  # re-delivery: deduplicated
    store = open_shared(tmp_path / "st")
    assert store.sql("SELECT count(*) AS n FROM logs").column("n")[0].as_py() == 100
    asyncio.run(out.close())
    assert store.stats()["hot_rows"] == 100
    assert out.encode(batch)  # type: ignore[attr-defined]
    store.close()


def test_store_section_is_known_to_the_config_loader() -> None:
    from kubetrail.config import validate_config

    cfg, _ = validate_config({"store": {"flush_max_rows": 10, "retention": {"default_max_age_days": 7}}})
    assert cfg.section("store").flush_max_rows == 10
    assert cfg.section("store").retention.default_max_age_days == 7
