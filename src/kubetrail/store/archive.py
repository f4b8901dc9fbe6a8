"""The archive tier: segments in object storage, still in the catalog and searchable on request.

Why obstore: one small, well-kept client (Rust ``object_store``) for a local directory and any
S3-compatible service, so the local default and S3 are the same code path. Archived objects keep
the hot tier's Hive layout (``segments/dt=YYYY-MM-DD/hour=HH/<id>.parquet``), so Athena, Trino or
Spark read the bucket as is. A search with ``include_archive=True`` downloads the selected
archived segments (after time and token pruning) into a local cache and reads them there.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetrail.errors import StorageError
from kubetrail.store.catalog import SegmentInfo
from kubetrail.store.config import ArchiveConfig

if TYPE_CHECKING:
    from kubetrail.store.core import Store

__all__ = ["Archive", "open_object_store"]


def open_object_store(cfg: ArchiveConfig, store_root: Path) -> Any:
    """An obstore store for ``cfg.url`` (empty: ``<store root>/archive``)."""
    from obstore.store import LocalStore, S3Store

    url = cfg.url or (store_root / "archive").as_uri()
    if url.startswith("file://"):
        path = Path(url[len("file://") :])
        path.mkdir(parents=True, exist_ok=True)
        return LocalStore(str(path), mkdir=True)
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        options: dict[str, Any] = {"region": cfg.region}
        if cfg.endpoint:
            options["endpoint"] = cfg.endpoint
            options["virtual_hosted_style_request"] = False
        if cfg.access_key_id:
            options["access_key_id"] = cfg.access_key_id
        if cfg.secret_access_key:
            options["secret_access_key"] = cfg.secret_access_key
        if cfg.allow_http:
            options["client_options"] = {"allow_http": True}
        return S3Store(bucket, prefix=prefix or None, **options)
    raise StorageError(f"unsupported archive url {url!r} (use file:///dir or s3://bucket/prefix)")


class Archive:
    """Moves segments between the hot tier (local files) and object storage."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cfg = store.config.archive
        self.objects = open_object_store(self.cfg, store.root)
        self.cache_dir = (self.cfg.cache_dir or store.root / "archive-cache").resolve()

    def archive_segment(self, seg: SegmentInfo) -> None:
        """Upload a hot segment, switch its catalog row to the archive tier, delete the local file."""
        import obstore

        if seg.tier != "hot":
            return
        local = self.store.root / seg.path
        try:
            obstore.put(self.objects, seg.path, local.read_bytes())
        except Exception as exc:  # obstore raises its own error types per backend
            raise StorageError(f"cannot archive segment: {exc}", segment=seg.id, path=seg.path) from None
        self.store.catalog.set_tier(seg.id, "archive", seg.path, seg.path)
        local.unlink(missing_ok=True)

    def local_copy(self, seg: SegmentInfo) -> Path:
        """A readable local copy of an archived segment (downloaded once into the cache)."""
        import obstore

        dest = self.cache_dir / seg.path
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = bytes(obstore.get(self.objects, seg.archive_key or seg.path).bytes())
        except Exception as exc:
            raise StorageError(f"cannot read archived segment: {exc}", segment=seg.id) from None
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")  # concurrent searches may both fetch
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        return dest

    def restore_segment(self, seg: SegmentInfo) -> None:
        """Bring an archived segment back to the hot tier (and remove it from the archive)."""
        import obstore

        if seg.tier != "archive":
            return
        cached = self.local_copy(seg)
        dest = self.store.root / seg.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(cached.read_bytes())
        os.replace(tmp, dest)
        self.store.catalog.set_tier(seg.id, "hot", seg.path, None)
        cached.unlink(missing_ok=True)
        try:
            obstore.delete(self.objects, seg.archive_key or seg.path)
        except Exception as exc:
            raise StorageError(
                f"restored, but cannot delete the archived copy: {exc}", segment=seg.id
            ) from None

    def delete_segment(self, seg: SegmentInfo) -> None:
        """Remove an archived segment for good (retention of the archive tier)."""
        import obstore

        try:
            obstore.delete(self.objects, seg.archive_key or seg.path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StorageError(f"cannot delete archived segment: {exc}", segment=seg.id) from None
        (self.cache_dir / seg.path).unlink(missing_ok=True)
        with self.store.catalog.transaction() as db:
            self.store.catalog.mark_deleted(db, [seg.id], time.time_ns())
        self.store.catalog.purge([seg.id])

    def restore(self, since: Any = None, until: Any = None) -> list[SegmentInfo]:
        """Restore every archived segment overlapping [since, until)."""
        from kubetrail.store.core import to_ns

        segments = self.store.catalog.segments(to_ns(since), to_ns(until), tiers=("archive",))
        for seg in segments:
            self.restore_segment(seg)
        return segments
