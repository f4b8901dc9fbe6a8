"""The ``server`` section of ``kubetrail.yaml`` and the option models receivers share.

    server:
      listen: 127.0.0.1:8080          # query API, /metrics, /healthz, /readyz
      tls: {cert_file: ..., key_file: ..., ca_file: ..., client_auth: required}
      tokens_file: /etc/kubetrail/tokens.yaml
      wal: {dir: /var/lib/kubetrail/wal, segment_bytes: 67108864, fsync: true}
      queue_max_bytes: 268435456
      limits: {max_body_bytes: 33554432, max_decompressed_bytes: 134217728, ...}
      rate_limit: {requests_per_sec: 200, burst: 400}

Every option name carries its unit. Receivers take ``listen``, ``tls``, ``limits`` overrides the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubetrail.config import register_section

__all__ = [
    "LimitsConfig",
    "RateLimitConfig",
    "ServerConfig",
    "TLSConfig",
    "WalConfig",
    "parse_listen",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) -> (host, port); port 0 picks a free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {value!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class TLSConfig(_Model):
    """TLS for one listener. ``client_auth: required`` turns it into mTLS (clients need a cert from CA)."""

    cert_file: Path = Field(description="PEM server certificate (chain).")
    key_file: Path = Field(description="PEM private key of the certificate.")
    ca_file: Path | None = Field(None, description="PEM CA bundle that client certificates must chain to.")
    client_auth: Literal["none", "optional", "required"] = Field(
        "none", description="Whether clients must present a certificate signed by ca_file."
    )


class LimitsConfig(_Model):
    """Bounds on what one client may make the server hold or compute."""

    max_body_bytes: int = Field(32 << 20, gt=0, description="Largest HTTP body (declared or read).")
    max_decompressed_bytes: int = Field(128 << 20, gt=0, description="Largest body after zstd/lz4/gzip.")
    max_frame_bytes: int = Field(16 << 20, gt=0, description="Largest forward/syslog frame on a stream.")
    max_array_len: int = Field(1_000_000, gt=0, description="Largest msgpack/JSON array.")
    max_map_len: int = Field(10_000, gt=0, description="Largest msgpack map.")
    max_nesting_depth: int = Field(64, gt=0, description="Deepest msgpack/JSON nesting accepted.")
    idle_timeout_secs: float = Field(300.0, gt=0, description="Close a stream connection idle this long.")
    read_timeout_secs: float = Field(
        30.0, gt=0, description="Close a client that stalls mid-frame this long."
    )


class RateLimitConfig(_Model):
    """A token bucket per client (token name, else address)."""

    requests_per_sec: float = Field(100.0, gt=0, description="Sustained requests (or frames) per second.")
    burst: int = Field(200, gt=0, description="Requests allowed in a burst above the sustained rate.")


class WalConfig(_Model):
    dir: Path | None = Field(None, description="WAL directory (default: <data_dir>/wal).")
    segment_bytes: int = Field(64 << 20, gt=4096, description="Roll to a new segment at this size.")
    fsync: bool = Field(True, description="fsync before acknowledging (never turn off in production).")


class ServerConfig(_Model):
    """Options of ``kubetrail server``."""

    listen: str = Field("127.0.0.1:8080", description="Query API, /metrics, /healthz and /readyz.")
    tls: TLSConfig | None = Field(None, description="TLS for the API listener.")
    tokens_file: Path | None = Field(None, description="YAML file of hashed bearer tokens with roles.")
    wal: WalConfig = Field(default_factory=lambda: WalConfig())
    queue_max_bytes: int = Field(
        256 << 20, gt=0, description="Bytes accepted but not yet stored; above: 429."
    )
    retry_after_secs: float = Field(1.0, gt=0, description="Retry-After sent with 429/503.")
    store_flush_interval_secs: float = Field(
        10.0, gt=0, description="Flush the store, then checkpoint (truncate) the WAL, this often."
    )
    max_batch_bytes: int = Field(8 << 20, gt=0, description="Records the pipeline parses together.")
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig())
    rate_limit: RateLimitConfig | None = Field(None, description="Per-client rate limit (off when unset).")
    shutdown_timeout_secs: float = Field(30.0, gt=0, description="Longest graceful drain on SIGTERM.")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value


register_section("server", ServerConfig)
