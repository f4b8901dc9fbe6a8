"""The ``detect`` section of ``kubetrail.yaml`` (also the options of the ``detect`` transform)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from kubetrail.detect.pipeline import DEFAULT_CLUSTER_NETWORKS, DEFAULT_TRUSTED_REGISTRIES

__all__ = ["DEFAULT_GROUP_BY", "DetectConfig", "FeedConfig", "GeoIPConfig", "IntelConfig"]

DEFAULT_GROUP_BY: tuple[str, ...] = (
    "user.name",
    "kubernetes.namespace",
    "kubernetes.pod.name",
    "container.image.name",
)


class GeoIPConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Fill source.geo.* and source.as.* from source.ip.")
    mmdb_path: str | None = Field(None, description="MaxMind GeoLite2/GeoIP2 City or Country .mmdb.")
    asn_mmdb_path: str | None = Field(None, description="MaxMind ASN .mmdb (autonomous system).")


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Written to threat.feed.name.")
    type: str = Field(description="stix, taxii, misp, csv or text.")
    path: str | None = Field(None, description="Local file or directory.")
    url: str | None = Field(None, description="HTTP(S) URL (MISP feed base, TAXII API root, file).")
    collection: str | None = Field(None, description="TAXII collection id.")
    indicator_type: str | None = Field(
        None,
        description="Type of text/csv feeds without a type column: ipv4-addr, cidr, domain-name, image, ...",
    )
    username: str | None = None
    password: str | None = None


class IntelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feeds: list[FeedConfig] = Field(default_factory=list)
    refresh_secs: float = Field(3600.0, description="How often feeds are reloaded.")
    level: str = Field("high", description="Level of intel-match alerts.")


class DetectConfig(BaseModel):
    """Options of streaming detection."""

    model_config = ConfigDict(extra="forbid")
    rules: list[str] = Field(default_factory=lambda: ["rules"], description="Rule files or directories.")
    disabled_rules: list[str] = Field(default_factory=list, description="Rule ids or names to skip.")
    filters: list[str] = Field(
        default_factory=list,
        description="More Sigma filter files or directories (filters under `rules` are always loaded).",
    )
    cluster_networks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CLUSTER_NETWORKS),
        description="CIDRs of nodes, pods and services (the %cluster_networks% placeholder).",
    )
    trusted_registries: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRUSTED_REGISTRIES),
        description="Registries images may come from (the %untrusted_image% placeholder).",
    )
    mode: str = Field("union", description="Query shape: union (filter per rule) or project.")
    threads: int | None = Field(None, description="DuckDB threads for rule evaluation (default: all).")
    group_by: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GROUP_BY), description="Columns that form an alert's group key."
    )
    suppress_secs: float = Field(3600.0, description="Matches for an open alert within this window merge.")
    alerts_db: str | None = Field(
        None, description="SQLite file of alerts (default <data_dir>/alerts.sqlite)."
    )
    webhook_url: str | None = Field(None, description="POST new alerts here as JSON.")
    webhook_retries: int = 3
    correlation_max_keys: int = Field(100_000, description="Bound of correlation state (group keys).")
    geoip: GeoIPConfig = Field(default_factory=lambda: GeoIPConfig())
    intel: IntelConfig = Field(default_factory=lambda: IntelConfig())
