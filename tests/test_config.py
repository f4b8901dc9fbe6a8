from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubetrail.cli import app
from kubetrail.config import apply_env_overrides, load_config, validate_config
from kubetrail.errors import ConfigError


def test_valid_config_builds_components(tmp_path: Path) -> None:
    cfg, topo = validate_config(
        {
            "cluster": {"name": "prod"},
            "transforms": {"mask": {"type": "redact"}},
            "outputs": {"debug": {"type": "file", "path": str(tmp_path / "x.ndjson")}},
        }
    )
    assert cfg.cluster.name == "prod"
    assert topo.transforms["mask"].type_name == "redact"
    assert topo.outputs["debug"].name == "debug"


def test_errors_name_every_bad_key() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(
            {
                "clustr": {},
                "transforms": {"mask": {"type": "redact", "replacment": "x"}, "bad": {"type": "nope"}},
                "outputs": {"f": {"type": "file"}},
            }
        )
    keys = [k for k, _ in info.value.problems]
    assert "clustr" in keys
    assert "transforms.mask.replacment" in keys
    assert "transforms.bad.type" in keys
    assert "outputs.f.path" in keys
    assert "KT-CONFIG" in str(info.value)


def test_env_overrides_nested_keys() -> None:
    raw = apply_env_overrides(
        {"cluster": {"name": "a"}},
        {"KUBETRAIL_CLUSTER__NAME": "b", "KUBETRAIL_TOKEN": "not-config", "HOME": "/"},
    )
    assert raw == {"cluster": {"name": "b"}}


def test_env_override_reaches_a_component(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text("outputs:\n  out: {type: file, path: /tmp/a}\n")
    _, topo = load_config(f, {"KUBETRAIL_OUTPUTS__OUT__FSYNC": "true"})
    assert topo.outputs["out"].config.fsync is True


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text("cluster:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(f)


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("cluster: {name: c1}\ntransforms: {mask: {type: redact}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("transforms: {mask: {type: redact, nope: 1}}\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["config", "check", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "mask" in ok.output
    ko = runner.invoke(app, ["config", "check", str(bad)])
    assert ko.exit_code == 2
