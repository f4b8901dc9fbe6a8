"""``kubetrail.yaml``: loading, environment overrides and validation that names the offending key.

Top level:

    cluster:    {name: prod-eu-1}
    data_dir:   /var/lib/kubetrail
    receivers:  {NAME: {type: TYPE, ...options}}
    transforms: {NAME: {type: TYPE, ...options}}
    outputs:    {NAME: {type: TYPE, ...options}}
    <section>:  options of a part (agent, server, store, detect, ...) registered with ``register_section``

Environment overrides: ``KUBETRAIL_<KEY>__<KEY>...=value`` sets a nested key, the value read as YAML,
e.g. ``KUBETRAIL_CLUSTER__NAME=prod`` or ``KUBETRAIL_RECEIVERS__FWD__PORT=24225``.

Validation collects every problem (with its dotted key path) before anything is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubetrail.components import Component, Registry, outputs, receivers, transforms
from kubetrail.errors import ConfigError

__all__ = [
    "ClusterConfig",
    "KubetrailConfig",
    "Topology",
    "apply_env_overrides",
    "load_config",
    "register_section",
    "validate_config",
]

ENV_PREFIX = "KUBETRAIL_"


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("kubernetes", description="Written to orchestrator.cluster.name.")


class KubetrailConfig(BaseModel):
    """The validated configuration: typed sections plus the component topology."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    cluster: ClusterConfig = Field(default_factory=lambda: ClusterConfig())
    data_dir: Path = Field(Path("./kubetrail-data"), description="Where the server keeps WAL and store.")
    receivers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    transforms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sections: dict[str, BaseModel] = Field(default_factory=dict, exclude=True)

    def section(self, name: str) -> Any:
        """A part's typed section (its defaults when the file does not mention it)."""
        if name not in self.sections:
            self.sections[name] = _SECTIONS[name]()
        return self.sections[name]


class Topology(BaseModel):
    """Built components, by kind and name."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    receivers: dict[str, Component[Any]] = Field(default_factory=dict)
    transforms: dict[str, Component[Any]] = Field(default_factory=dict)
    outputs: dict[str, Component[Any]] = Field(default_factory=dict)


_SECTIONS: dict[str, type[BaseModel]] = {}
_RESERVED = {"cluster", "data_dir", "receivers", "transforms", "outputs"}


def register_section(name: str, model: type[BaseModel]) -> type[BaseModel]:
    """Let a part own a top-level section of ``kubetrail.yaml`` (e.g. ``store``)."""
    if name in _RESERVED:
        raise ValueError(f"section name {name!r} is reserved")
    _SECTIONS[name] = model
    return model


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc]
    return ".".join(parts)


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out = dict(raw)
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        if path[0] not in _RESERVED | set(_SECTIONS):
            continue  # another KUBETRAIL_* variable (a token, a URL), not a config key
        node = out
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(value) if value != "" else ""
    return out


def validate_config(raw: Any, source: str = "config") -> tuple[KubetrailConfig, Topology]:
    """Validate everything, collecting all problems, then build the components."""
    from kubetrail.components import load_builtin_components

    load_builtin_components()
    problems: list[tuple[str, str]] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([("(top)", "must be a mapping")], source)
    section_raw = {k: raw[k] for k in raw if k in _SECTIONS}
    core_raw = {k: v for k, v in raw.items() if k not in _SECTIONS}
    cfg: KubetrailConfig | None = None
    try:
        cfg = KubetrailConfig.model_validate(core_raw)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                known = sorted(_RESERVED | set(_SECTIONS))
                msg = f"unknown key (top-level keys: {', '.join(known)})"
            problems.append((_loc("", err["loc"]), msg))
    sections: dict[str, BaseModel] = {}
    for name, value in section_raw.items():
        try:
            sections[name] = _SECTIONS[name].model_validate(value or {})
        except ValidationError as exc:
            problems += [(_loc(name, e["loc"]), e["msg"]) for e in exc.errors()]
    topology = Topology()
    kinds: list[tuple[str, Registry]] = [
        ("receivers", receivers),
        ("transforms", transforms),
        ("outputs", outputs),
    ]
    for kind, registry in kinds:
        entries = core_raw.get(kind) or {}
        if not isinstance(entries, dict):
            continue
        for name, options in entries.items():
            where = f"{kind}.{name}"
            if not isinstance(options, dict):
                problems.append((where, "must be a mapping with a 'type' key"))
                continue
            if "type" not in options:
                problems.append((f"{where}.type", f"missing (one of: {', '.join(registry.names())})"))
                continue
            try:
                component = registry.build(name, options)
            except KeyError as exc:
                problems.append((f"{where}.type", str(exc.args[0])))
            except ValidationError as exc:
                problems += [(_loc(where, e["loc"]), e["msg"]) for e in exc.errors()]
            else:
                getattr(topology, kind)[name] = component
    if problems or cfg is None:
        raise ConfigError(problems, source)
    cfg.sections.update(sections)
    return cfg, topology


def load_config(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> tuple[KubetrailConfig, Topology]:
    """Read a YAML file (or nothing), apply environment overrides, validate and build."""
    raw: Any = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError([("(file)", "not found")], source) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
            raise ConfigError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")], source) from None
    if not isinstance(raw, dict):
        raise ConfigError([("(top)", "must be a mapping")], source)
    return validate_config(apply_env_overrides(raw, environ), source)
