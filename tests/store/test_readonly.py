from __future__ import annotations

import pytest

from kubetrail.errors import QueryError
from kubetrail.store.readonly import validate_read_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM logs",
        "WITH x AS (SELECT * FROM logs) SELECT * FROM x",
        "SELECT 'DELETE FROM logs' AS s FROM logs",  # keywords inside literals are fine
    ],
)
def test_read_only_selects_pass(sql: str) -> None:
    validate_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    ["DROP TABLE logs", "SELECT 1 FROM logs; DELETE FROM logs", "ATTACH 'x.db'", "SELECT getenv('HOME')"],
)
def test_everything_else_is_rejected_with_a_position(sql: str) -> None:
    with pytest.raises(QueryError) as info:
        validate_read_only(sql)
    assert info.value.code == "KT-QUERY"
