"""The ``agent`` section of ``kubetrail.yaml``.

Loaded by the agent process itself with :func:`load_agent_config`, which reads only this section (plus
``cluster.name``) so the DaemonSet does not import the server's components (pyarrow) just to start:
every node pays for the agent's memory. ``kubetrail config check`` validates the same model through
``kubetrail.config.register_section``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubetrail.errors import ConfigError

__all__ = [
    "AgentConfig",
    "BatchConfig",
    "JournaldConfig",
    "KubernetesConfig",
    "RateLimitConfig",
    "ServerConfig",
    "SourcesConfig",
    "load_agent_config",
]

_ENV_PREFIX = "KUBETRAIL_AGENT__"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Model):
    """Where chunks go. TLS is verified against ``ca_file`` (or the system store); ``http://`` is allowed
    only for tests and local set-ups."""

    url: str = Field("https://kubetrail:8443", description="Base URL of the kubetrail server.")
    token: str | None = Field(None, description="Bearer token (prefer token_file).")
    token_file: Path | None = Field(None, description="File holding the bearer token (re-read on 401).")
    ca_file: Path | None = Field(None, description="CA bundle that signs the server certificate.")
    client_cert_file: Path | None = Field(None, description="Client certificate for mTLS.")
    client_key_file: Path | None = Field(None, description="Key of the client certificate.")
    timeout_secs: float = Field(30.0, gt=0, description="Per-request timeout.")


class BatchConfig(_Model):
    max_batch_bytes: int = Field(2 * 1024 * 1024, ge=4096, description="Raw bytes per request.")
    flush_interval_secs: float = Field(0.5, gt=0, description="Send a partial batch after this long.")
    compression: Literal["zstd", "lz4", "none"] = Field("zstd", description="Body compression.")
    zstd_level: int = Field(
        -1,
        ge=-7,
        le=19,
        description="zstd level: -1 keeps CPU under 2.5 s/GB (ratio ~6); 1 compresses ~40% better.",
    )
    max_inflight_bytes: int = Field(
        8 * 1024 * 1024, ge=65536, description="Read but unacknowledged bytes; reading pauses above it."
    )
    max_concurrent_requests: int = Field(2, ge=1, le=16, description="Requests in flight at once.")
    initial_backoff_secs: float = Field(0.2, gt=0, description="First retry delay (doubles, with jitter).")
    max_backoff_secs: float = Field(30.0, gt=0, description="Longest retry delay.")
    max_bad_request_attempts: int = Field(
        5,
        ge=1,
        description="A batch the server rejects with 400 is retried this often, then given up loudly.",
    )


class RateLimitConfig(_Model):
    lines_per_sec: float = Field(0.0, ge=0, description="Per-container line rate; 0 disables the limit.")
    burst_lines: int = Field(10_000, ge=1, description="Token-bucket burst.")


class JournaldConfig(_Model):
    enabled: bool = Field(True, description="Read the journal when journalctl exists.")
    journalctl: str = Field("journalctl", description="journalctl executable.")
    directory: Path | None = Field(None, description="Journal directory (journalctl -D), e.g. a hostPath.")
    spool_max_bytes: int = Field(64 * 1024 * 1024, ge=65536, description="Bounded on-disk spool.")
    spool_segment_bytes: int = Field(4 * 1024 * 1024, ge=4096, description="Spool segment size.")


class SourcesConfig(_Model):
    container_globs: list[str] = Field(
        default_factory=lambda: ["/var/log/pods/*/*/*.log"], description="Container log files (CRI)."
    )
    audit_globs: list[str] = Field(
        default_factory=lambda: ["/var/log/kubernetes/audit/audit.log"], description="Audit log files."
    )
    file_globs: list[str] = Field(
        default_factory=lambda: [
            "/var/log/syslog",
            "/var/log/messages",
            "/var/log/kubelet.log",
            "/var/log/containerd.log",
        ],
        description="Plain node log files.",
    )
    journal_export_globs: list[str] = Field(
        default_factory=list,
        description="Files of `journalctl -o json` lines (journal exports), shipped as source journald.",
    )
    journald: JournaldConfig = Field(default_factory=lambda: JournaldConfig())


class KubernetesConfig(_Model):
    enabled: Literal["auto", "true", "false"] = Field(
        "auto", description="auto: use the API when the in-cluster service account exists."
    )
    api_url: str | None = Field(None, description="Override the API server URL (tests, out-of-cluster).")
    token_file: Path = Field(Path("/var/run/secrets/kubernetes.io/serviceaccount/token"))
    ca_file: Path = Field(Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"))
    deleted_pod_grace_secs: float = Field(300.0, ge=0, description="Keep a deleted pod's metadata this long.")
    watch_timeout_secs: int = Field(300, ge=1, description="Server-side timeout of one watch request.")


class AgentConfig(_Model):
    """Options of ``kubetrail agent``."""

    node_name: str = Field(
        default_factory=lambda: os.environ.get("NODE_NAME") or socket.gethostname(),
        description="This node (defaults to $NODE_NAME, then the host name).",
    )
    data_dir: Path = Field(Path("/var/lib/kubetrail-agent"), description="Checkpoint DB and journald spool.")
    read_from: Literal["head", "tail"] = Field(
        "head", description="Where to start files that exist at the very first start."
    )
    read_bytes: int = Field(
        1024 * 1024, ge=256 * 1024, description="Bytes per read (cut at the last newline)."
    )
    max_line_bytes: int = Field(
        1024 * 1024, ge=1024, description="A line longer than this is shipped in pieces (counted)."
    )
    poll_interval_secs: float = Field(0.25, gt=0, description="Fallback poll when inotify is quiet.")
    rescan_interval_secs: float = Field(10.0, gt=0, description="Full glob rescan (inotify can overflow).")
    rotate_grace_secs: float = Field(5.0, ge=0, description="Keep reading a rotated/deleted file this long.")
    checkpoint_interval_secs: float = Field(
        1.0, gt=0, description="How often acknowledged offsets are saved."
    )
    checkpoint_gc_secs: float = Field(3600.0, ge=0, description="Forget a vanished file's entry after this.")
    shutdown_timeout_secs: float = Field(
        10.0, ge=0, description="On SIGTERM, wait this long for in-flight batches."
    )
    metrics_listen: str | None = Field("0.0.0.0:2021", description="host:port for /metrics and /healthz.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    batch: BatchConfig = Field(default_factory=lambda: BatchConfig())
    sources: SourcesConfig = Field(default_factory=lambda: SourcesConfig())
    kubernetes: KubernetesConfig = Field(default_factory=lambda: KubernetesConfig())
    rate_limit: RateLimitConfig = Field(default_factory=lambda: RateLimitConfig())


def _env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    out = dict(raw)
    for key, value in environ.items():
        if not key.startswith(_ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(_ENV_PREFIX) :].split("__")]
        node = out
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = yaml.safe_load(value) if value != "" else ""
    return out


def load_agent_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read the ``agent`` section of a kubetrail.yaml (``KUBETRAIL_AGENT__*`` overrides apply)."""
    env = os.environ if environ is None else environ
    raw: Any = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError([("(file)", "not found")], source) from None
        except yaml.YAMLError as exc:
            raise ConfigError([("(file)", f"not valid YAML: {exc}")], source) from None
    if not isinstance(raw, dict):
        raise ConfigError([("(top)", "must be a mapping")], source)
    section = raw.get("agent") or {}
    if not isinstance(section, dict):
        raise ConfigError([("agent", "must be a mapping")], source)
    try:
        return AgentConfig.model_validate(_env_overrides(section, env))
    except ValidationError as exc:
        problems = [(".".join(["agent", *map(str, e["loc"])]), e["msg"]) for e in exc.errors()]
        raise ConfigError(problems, source) from None
