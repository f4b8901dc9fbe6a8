"""The ``store`` section of ``kubetrail.yaml``: segments, query limits, retention, archive."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kubetrail.config import register_section

__all__ = [
    "ArchiveConfig",
    "CompactionConfig",
    "QueryLimits",
    "RetentionConfig",
    "RetentionPolicy",
    "StoreConfig",
]

DEFAULT_SORT = ["event.dataset", "kubernetes.namespace", "kubernetes.pod.name", "@timestamp"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryLimits(_Model):
    """Limits every search and SQL query runs under."""

    timeout_secs: float = Field(60.0, gt=0, description="A query running longer is interrupted.")
    max_rows: int = Field(100_000, gt=0, description="At most this many rows are returned.")
    memory_limit: str = Field("2GB", description="DuckDB memory_limit for a query.")
    threads: int | None = Field(None, ge=1, description="DuckDB threads (default: all cores).")


class RetentionPolicy(_Model):
    """How long rows of a dataset and/or namespace are kept (nulls match anything)."""

    dataset: str | None = Field(None, description="event.dataset this policy applies to.")
    namespace: str | None = Field(None, description="kubernetes.namespace this policy applies to.")
    max_age_days: float | None = Field(None, gt=0, description="Rows older than this are deleted.")
    max_bytes: int | None = Field(None, gt=0, description="Oldest rows go once the scope exceeds this.")


class RetentionConfig(_Model):
    """Retention of the hot tier; the first matching policy (most specific first) wins."""

    policies: list[RetentionPolicy] = Field(default_factory=list)
    default_max_age_days: float | None = Field(30.0, gt=0, description="For rows no policy matches.")
    max_total_bytes: int | None = Field(None, gt=0, description="Cap on the hot tier's size.")
    interval_secs: float = Field(3600.0, gt=0, description="How often the server enforces retention.")


class CompactionConfig(_Model):
    """Merging of small segments of the same hour."""

    small_segment_bytes: int = Field(32 << 20, gt=0, description="Segments below this are merged.")
    target_segment_bytes: int = Field(256 << 20, gt=0, description="Merged segments stay below this.")
    min_age_secs: float = Field(300.0, ge=0, description="Only partitions this old are compacted.")
    interval_secs: float = Field(300.0, gt=0, description="How often compaction runs.")
    zstd_level: int = Field(
        9, ge=1, le=22, description="zstd level of merged segments (cold data: smaller, written once)."
    )
    text_zstd_level: int = Field(
        12, ge=1, le=22, description="zstd level of message/attributes in merged segments (-1 %, 1.4x time)."
    )
    threads: int = Field(
        1, ge=1, le=16, description="Hour partitions merged at once (each holds its hour's rows in memory)."
    )


class ArchiveConfig(_Model):
    """The archive tier: segments move to object storage and stay searchable on request."""

    enabled: bool = Field(False, description="Move segments to the archive tier.")
    url: str = Field(
        "", description="file:///dir or s3://bucket/prefix; empty = <store path>/archive (a local directory)."
    )
    after_days: float | None = Field(None, gt=0, description="Hot segments older than this are archived.")
    before_delete: bool = Field(True, description="Archive instead of deleting whole expired segments.")
    max_age_days: float | None = Field(None, gt=0, description="Archived segments older than this go.")
    endpoint: str | None = Field(None, description="S3-compatible endpoint URL.")
    region: str = Field("us-east-1", description="S3 region.")
    access_key_id: str | None = Field(None, description="S3 access key (or AWS_* environment).")
    secret_access_key: str | None = Field(None, description="S3 secret key.")
    allow_http: bool = Field(False, description="Allow a plain-HTTP endpoint (tests, local MinIO).")
    cache_dir: Path | None = Field(None, description="Where archived segments are cached for reading.")


class StoreConfig(_Model):
    """The embedded store: Parquet segments, a SQLite catalog, an in-memory tail."""

    path: Path | None = Field(None, description="Store root (default: <data_dir>/store).")
    flush_max_rows: int = Field(1_000_000, gt=0, description="The tail is flushed at this many rows.")
    flush_max_age_secs: float = Field(60.0, gt=0, description="... or when its oldest row is this old.")
    sort_by: list[str] = Field(default_factory=lambda: list(DEFAULT_SORT), description="Row order.")
    zstd_level: int = Field(3, ge=1, le=22, description="Parquet zstd compression level.")
    row_group_rows: int = Field(16_384, gt=0, description="Parquet row group size (the unit DuckDB skips).")
    bloom_bits_per_key: int = Field(
        16,
        ge=4,
        le=32,
        description="Token index bits per distinct token of a block (16: ~0.1 % false positives).",
    )
    index_block_rows: int = Field(
        16_384, ge=64, description="Rows per token-index block (a needle search reads only matching blocks)."
    )
    codec: bool = Field(
        True,
        description="Store values other columns of the row hold once (kubetrail.store.codec); "
        "false: every column as is, for Parquet readers other than kubetrail.",
    )
    dedup_cache_hours: int = Field(48, ge=1, description="Hour partitions whose event ids stay in memory.")
    delete_grace_secs: float = Field(60.0, ge=0, description="Superseded files live this long.")
    auto_maintenance: bool = Field(
        True, description="Run retention and compaction in a background thread when due (after flushes)."
    )
    limits: QueryLimits = Field(default_factory=lambda: QueryLimits())
    retention: RetentionConfig = Field(default_factory=lambda: RetentionConfig())
    compaction: CompactionConfig = Field(default_factory=lambda: CompactionConfig())
    archive: ArchiveConfig = Field(default_factory=lambda: ArchiveConfig())


register_section("store", StoreConfig)
