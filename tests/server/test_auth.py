from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubetrail.cli import app
from kubetrail.errors import Backpressure, ConfigError
from kubetrail.server.auth import TokenStore, generate_token, hash_token, verify_hash
from kubetrail.server.backpressure import ByteBudget, RateLimiter


def test_hash_is_salted_and_verifies() -> None:
    token = generate_token()
    a, b = hash_token(token), hash_token(token)
    assert a != b and token not in a
    assert verify_hash(token, a) and verify_hash(token, b)
    assert not verify_hash(token + "x", a)
    assert not verify_hash(token, "md5$00$11")


def test_token_store_roles(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        yaml.safe_dump({"tokens": [{"name": "root", "hash": hash_token("t1"), "roles": ["admin"]}]})
    )
    store = TokenStore.load(path)
    identity = store.authenticate("t1")
    assert identity is not None and identity.name == "root"
    assert identity.has("agent") and identity.has("hunter")  # admin passes every role check
    assert store.authenticate("t2") is None
    path.write_text(yaml.safe_dump({"tokens": [{"name": "x", "hash": "plaintext", "roles": ["agent"]}]}))
    with pytest.raises(ConfigError):
        TokenStore.load(path)


def test_cli_token_prints_a_usable_entry() -> None:
    result = CliRunner().invoke(app, ["server", "token", "--name", "agents", "--role", "agent"])
    assert result.exit_code == 0, result.output
    token = result.output.split("token: ", 1)[1].split()[0]
    entry = yaml.safe_load(result.output.split("tokens_file entry:", 1)[1])
    assert verify_hash(token, entry[0]["hash"]) and entry[0]["roles"] == ["agent"]


def test_rate_limiter_and_budget() -> None:
    limiter = RateLimiter(rate_per_sec=1, burst=2)
    limiter.check("a", now=0.0)
    limiter.check("a", now=0.0)
    with pytest.raises(Backpressure) as info:
        limiter.check("a", now=0.0)
    assert info.value.retry_after_secs == pytest.approx(1.0)
    limiter.check("b", now=0.0)  # per client
    limiter.check("a", now=1.0)  # refilled
    budget = ByteBudget(100)
    budget.try_reserve(500)  # one oversized item when nothing is held
    with pytest.raises(Backpressure):
        budget.try_reserve(1)
    budget.release(500)
    budget.try_reserve(60)
    with pytest.raises(Backpressure):
        budget.try_reserve(50)
