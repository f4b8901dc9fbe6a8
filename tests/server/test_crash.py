from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.crash_harness import run_crash_test


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    result = run_crash_test(tmp_path, kills=3, clients=4, min_up=0.8, max_up=2.0)
    assert result.acked > 1000, result  # the clients made real progress between the kills
    assert result.lost == 0, result
    assert result.duplicated == 0, result
    assert result.stored >= result.acked
