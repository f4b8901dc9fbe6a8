"""Threat-intelligence feeds and their vectorized matching on every batch.

Feeds: STIX 2.1 bundles (files), TAXII 2.1 collections (taxii2-client), MISP feeds (``manifest.json``
plus one JSON file per event, from a directory or over HTTP), CSV (``type,value`` columns) and plain
text lists (one indicator a line, ``#`` comments). Indicator types kept: ``ipv4-addr`` / ``ipv6-addr``
(exact), ``cidr`` (IPv4 ranges), ``domain-name``, ``image`` (image reference or ``sha256:`` digest)
and ``user-agent``.

Matching, per batch, without a per-event Python loop:

* exact values (IP, user agent, image, domain of ``url.original``) with ``pc.is_in``;
* IPv4 CIDRs: the batch's unique IPv4 addresses become integers (``split`` + casts), merged ranges are
  searched with ``numpy.searchsorted``.

A match fills ``threat.indicator.type``, ``threat.indicator.value`` and ``threat.feed.name`` and
raises one alert per (feed, indicator) in the batch. Feeds reload every ``refresh_secs``; a reload
that fails keeps the previous indicators and logs the error.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.detect.alerts import Alert
from kubetrail.detect.config import FeedConfig, IntelConfig
from kubetrail.detect.rules import LEVEL_SEVERITY

__all__ = ["Indicator", "IntelMatcher", "IntelSet", "load_feed"]

log = logging.getLogger(__name__)
_STIX_VALUE = re.compile(r"\[?\s*([a-z0-9-]+):(value|name|hashes\.'?SHA-256'?)\s*=\s*'((?:[^'\\]|\\.)*)'")
_MISP_TYPES = {
    "ip-src": "ip",
    "ip-dst": "ip",
    "ip-src|port": "ip",
    "ip-dst|port": "ip",
    "domain": "domain-name",
    "hostname": "domain-name",
    "user-agent": "user-agent",
    "url": "url",
    "sha256": "image",
}


@dataclass(frozen=True)
class Indicator:
    type: str  # ipv4-addr, ipv6-addr, cidr, domain-name, image, user-agent
    value: str
    feed: str


def _classify(value: str, hint: str | None = None) -> str | None:
    """Indicator type of a raw value (``hint`` from the feed wins when given)."""
    value = value.strip()
    if not value:
        return None
    if hint in ("ip", "ipv4-addr", "ipv6-addr", "cidr", None):
        try:
            if "/" in value:
                ipaddress.ip_network(value, strict=False)
                return "cidr"
            return (
                "ipv6-addr"
                if ":" in value and ipaddress.ip_address(value).version == 6
                else ("ipv4-addr" if ipaddress.ip_address(value).version == 4 else "ipv6-addr")
            )
        except ValueError:
            if hint in ("ip", "ipv4-addr", "ipv6-addr", "cidr"):
                return None
    if hint:
        return {"domain": "domain-name", "hostname": "domain-name", "url": "domain-name"}.get(hint, hint)
    if value.startswith("sha256:") or "/" in value or ("@" in value and ":" in value):
        return "image"
    if re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", value.lower()):
        return "domain-name"
    return "user-agent"


def _indicator(value: str, feed: str, hint: str | None = None) -> Indicator | None:
    if hint == "url":
        host = re.sub(r"^[a-z]+://", "", value.strip()).split("/")[0].split(":")[0]
        return Indicator("domain-name", host.lower(), feed) if host else None
    kind = _classify(value, hint)
    if kind is None:
        return None
    if kind == "cidr":
        net = ipaddress.ip_network(value.strip(), strict=False)
        if net.num_addresses == 1:
            return Indicator(f"ipv{net.version}-addr", str(net.network_address), feed)
        return Indicator("cidr", str(net), feed)
    if kind == "domain-name":
        return Indicator(kind, value.strip().lower().rstrip("."), feed)
    return Indicator(kind, value.strip(), feed)


# ---- feed readers ---------------------------------------------------------------------------------------
def stix_objects(objects: Iterable[dict[str, Any]], feed: str) -> Iterator[Indicator]:
    """Indicators from STIX 2.1 objects: SCOs (ipv4-addr, domain-name, ...) and indicator patterns."""
    for obj in objects:
        kind = obj.get("type")
        if kind in ("ipv4-addr", "ipv6-addr", "domain-name", "url") and "value" in obj:
            ind = _indicator(str(obj["value"]), feed, "url" if kind == "url" else None)
            if ind:
                yield ind
        elif kind == "indicator" and obj.get("pattern_type", "stix") == "stix":
            if obj.get("revoked"):
                continue
            for typ, _attr, value in _STIX_VALUE.findall(obj.get("pattern", "")):
                value = value.replace("\\'", "'")
                hint = {
                    "ipv4-addr": None,
                    "ipv6-addr": None,
                    "domain-name": "domain-name",
                    "url": "url",
                    "file": "image",
                    "x-container-image": "image",
                    "x-user-agent": "user-agent",
                }.get(typ)
                if typ == "network-traffic" or (hint is None and typ not in ("ipv4-addr", "ipv6-addr")):
                    continue
                ind = _indicator(value, feed, hint)
                if ind:
                    yield ind


def _load_stix(cfg: FeedConfig) -> list[Indicator]:
    import stix2  # type: ignore[import-untyped]

    text = Path(cfg.path).read_text() if cfg.path else httpx.get(str(cfg.url), timeout=30).text
    bundle = stix2.parse(text, allow_custom=True)  # validates the bundle
    objects = [json.loads(o.serialize()) if hasattr(o, "serialize") else o for o in bundle.objects]
    return list(stix_objects(objects, cfg.name))


def _load_taxii(cfg: FeedConfig) -> list[Indicator]:
    from taxii2client.v21 import Collection, as_pages  # type: ignore[import-untyped]

    url = str(cfg.url).rstrip("/") + f"/collections/{cfg.collection}/"
    collection = Collection(url, user=cfg.username, password=cfg.password)
    out: list[Indicator] = []
    for envelope in as_pages(collection.get_objects, per_request=500):
        out += stix_objects(envelope.get("objects", []), cfg.name)
    return out


def _read(base: str, name: str) -> Any:
    if base.startswith(("http://", "https://")):
        resp = httpx.get(base.rstrip("/") + "/" + name, timeout=30)
        resp.raise_for_status()
        return resp.json()
    return json.loads((Path(base) / name).read_text())


def _load_misp(cfg: FeedConfig) -> list[Indicator]:
    base = str(cfg.path or cfg.url)
    manifest = _read(base, "manifest.json")
    out: list[Indicator] = []
    for uuid in manifest:
        try:
            event = _read(base, f"{uuid}.json").get("Event", {})
        except (OSError, ValueError, httpx.HTTPError) as exc:
            log.error("MISP feed %s: event %s unreadable: %s", cfg.name, uuid, exc)
            continue
        attributes = list(event.get("Attribute", []))
        for obj in event.get("Object", []):
            attributes += obj.get("Attribute", [])
        for attr in attributes:
            hint = _MISP_TYPES.get(attr.get("type", ""))
            if hint is None or not attr.get("to_ids", True):
                continue
            value = str(attr.get("value", "")).split("|")[0]
            ind = _indicator(value, cfg.name, hint)
            if ind:
                out.append(ind)
    return out


def _lines(cfg: FeedConfig) -> str:
    if cfg.path:
        return Path(cfg.path).read_text()
    resp = httpx.get(str(cfg.url), timeout=30)
    resp.raise_for_status()
    return resp.text


def _load_csv(cfg: FeedConfig) -> list[Indicator]:
    rows = csv.DictReader(io.StringIO(_lines(cfg)))
    out = []
    for row in rows:
        value = (row.get("value") or row.get("indicator") or "").strip()
        hint = (row.get("type") or cfg.indicator_type or "").strip() or None
        ind = _indicator(value, cfg.name, hint)
        if ind:
            out.append(ind)
    return out


def _load_text(cfg: FeedConfig) -> list[Indicator]:
    out = []
    for line in _lines(cfg).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ind = _indicator(line, cfg.name, cfg.indicator_type)
            if ind:
                out.append(ind)
    return out


_LOADERS = {
    "stix": _load_stix,
    "taxii": _load_taxii,
    "misp": _load_misp,
    "csv": _load_csv,
    "text": _load_text,
}


def load_feed(cfg: FeedConfig) -> list[Indicator]:
    try:
        loader = _LOADERS[cfg.type]
    except KeyError:
        raise ValueError(f"feed {cfg.name}: unknown type {cfg.type!r} ({', '.join(_LOADERS)})") from None
    return loader(cfg)


# ---- matching ---------------------------------------------------------------------------------------------
def ipv4_to_int(ips: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized dotted-quad -> uint32; returns (values, valid mask)."""
    valid = pc.fill_null(pc.match_substring_regex(ips, r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$"), False)
    valid_np = valid.to_numpy(zero_copy_only=False)
    values = np.zeros(len(ips), dtype=np.int64)
    if valid_np.any():
        good = pc.filter(ips, valid)
        parts = pc.list_flatten(pc.split_pattern(good, ".")).cast(pa.int64()).to_numpy().reshape(-1, 4)
        ok = (parts <= 255).all(axis=1)
        nums = (parts[:, 0] << 24) | (parts[:, 1] << 16) | (parts[:, 2] << 8) | parts[:, 3]
        idx = np.flatnonzero(valid_np)
        values[idx] = nums
        valid_np[idx[~ok]] = False
    return values, valid_np


@dataclass
class IntelSet:
    """Indicators by type, ready for vectorized lookups."""

    exact: dict[str, dict[str, Indicator]] = field(default_factory=dict)
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ranges: list[Indicator] = field(default_factory=list)

    @classmethod
    def build(cls, indicators: Iterable[Indicator]) -> IntelSet:
        out = cls()
        spans: list[tuple[int, int, Indicator]] = []
        for ind in indicators:
            if ind.type == "cidr":
                net = ipaddress.ip_network(ind.value)
                if net.version == 4:
                    spans.append((int(net.network_address), int(net.broadcast_address), ind))
                continue
            kind = "ip" if ind.type in ("ipv4-addr", "ipv6-addr") else ind.type
            out.exact.setdefault(kind, {})[ind.value.lower() if kind != "ip" else ind.value] = ind
        spans.sort(key=lambda s: (s[0], -s[1]))
        merged: list[tuple[int, int, Indicator]] = []
        for start, end, ind in spans:  # drop ranges nested in the previous one: searchsorted needs disjoint
            if merged and start <= merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end, merged[-1][2])
                continue
            merged.append((start, end, ind))
        out.starts = np.array([s for s, _, _ in merged], np.int64)
        out.ends = np.array([e for _, e, _ in merged], np.int64)
        out.ranges = [i for _, _, i in merged]
        return out

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.exact.values()) + len(self.ranges)


# column -> indicator kinds matched against it, and how the column value is normalised
_TARGETS: tuple[tuple[str, str], ...] = (
    ("source.ip", "ip"),
    ("user_agent.original", "user-agent"),
    ("container.image.name", "image"),
    ("url.original", "domain-name"),
)


class IntelMatcher:
    """Loaded feeds, refreshed on schedule, matched against each batch."""

    def __init__(self, config: IntelConfig, clock: Any = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.intel = IntelSet()
        self.loaded_at: float | None = None
        self.errors: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        indicators: list[Indicator] = []
        failed = False
        for feed in self.config.feeds:
            try:
                indicators += load_feed(feed)
                self.errors.pop(feed.name, None)
            except Exception as exc:  # a broken feed must not stop detection
                failed = True
                self.errors[feed.name] = f"{type(exc).__name__}: {exc}"
                log.error("intel feed %s failed to load: %s", feed.name, exc)
        if indicators or not failed or self.loaded_at is None:
            self.intel = IntelSet.build(indicators)
        self.loaded_at = self._clock()

    def maybe_refresh(self) -> None:
        if self.loaded_at is None or self._clock() - self.loaded_at >= self.config.refresh_secs:
            self.refresh()

    def _column_hits(self, batch: pa.RecordBatch) -> list[tuple[np.ndarray, list[Indicator | None]]]:
        hits = []
        for column, kind in _TARGETS:
            idx = batch.schema.get_field_index(column)
            if idx < 0:
                continue
            values = batch.column(idx)
            if kind == "domain-name":
                values = pc.utf8_lower(
                    pc.extract_regex(values, r"^(?:[a-zA-Z]+://)?(?P<h>[^/:?#]+)").field("h")
                )
            table = self.intel.exact.get(kind, {})
            if table:
                lookup = values if kind == "ip" else pc.utf8_lower(values)
                keys = pa.array(list(table), pa.string())
                mask = pc.fill_null(pc.is_in(lookup, value_set=keys), False).to_numpy(zero_copy_only=False)
                if kind == "image":  # digests: match the sha256 part of name@sha256:...
                    digest = pc.extract_regex(lookup, r"@(?P<d>sha256:[0-9a-f]+)").field("d")
                    dmask = pc.fill_null(pc.is_in(digest, value_set=keys), False).to_numpy(
                        zero_copy_only=False
                    )
                    rows = np.flatnonzero(mask | dmask)
                    py = lookup.take(pa.array(rows)).to_pylist()
                    dig = digest.take(pa.array(rows)).to_pylist()
                    hits.append(
                        (rows, [table.get(v) or table.get(d or "") for v, d in zip(py, dig, strict=True)])
                    )
                else:
                    rows = np.flatnonzero(mask)
                    hits.append((rows, [table[v] for v in lookup.take(pa.array(rows)).to_pylist()]))
            if kind == "ip" and len(self.intel.starts):
                nums, valid = ipv4_to_int(values)
                pos = np.searchsorted(self.intel.starts, nums, side="right") - 1
                inside = valid & (pos >= 0) & (nums <= self.intel.ends[np.clip(pos, 0, None)])
                rows = np.flatnonzero(inside)
                hits.append((rows, [self.intel.ranges[p] for p in pos[rows]]))
        return hits

    def match(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[Alert]]:
        """Enrich matching rows with ``threat.*`` and return one alert per (feed, indicator)."""
        self.maybe_refresh()
        if batch.num_rows == 0 or self.intel.size == 0:
            return batch, []
        found: dict[int, Indicator] = {}
        for rows, inds in self._column_hits(batch):
            for row, ind in zip(rows.tolist(), inds, strict=True):
                if ind is not None:
                    found.setdefault(row, ind)
        if not found:
            return batch, []
        rows = np.fromiter(found, dtype=np.int64)
        matched = [found[r] for r in rows.tolist()]
        out = batch
        for name, values in (
            ("threat.indicator.type", [i.type for i in matched]),
            ("threat.indicator.value", [i.value for i in matched]),
            ("threat.feed.name", [i.feed for i in matched]),
        ):
            full = np.full(batch.num_rows, None, dtype=object)
            full[rows] = values
            idx = out.schema.get_field_index(name)
            col = pc.coalesce(out.column(idx), pa.array(full.tolist(), pa.string()))
            out = out.set_column(idx, out.schema.field(idx), col)
        return out, self._alerts(batch, rows, matched)

    def _alerts(self, batch: pa.RecordBatch, rows: np.ndarray, inds: list[Indicator]) -> list[Alert]:
        ids = batch.column("event.id").take(pa.array(rows)).to_pylist()
        ts = batch.column("@timestamp").take(pa.array(rows)).to_pylist()
        grouped: dict[tuple[str, str, str], list[tuple[str, Any]]] = {}
        for ind, event_id, when in zip(inds, ids, ts, strict=True):
            grouped.setdefault((ind.feed, ind.type, ind.value), []).append((event_id or "", when))
        level = self.config.level
        out = []
        for (feed, kind, value), events in grouped.items():
            times = [t for _, t in events if t is not None] or [datetime.now(UTC)]
            out.append(
                Alert(
                    rule_id=f"intel:{feed}",
                    rule_title=f"Threat intelligence match ({feed}): {kind} {value}",
                    level=level,
                    severity=LEVEL_SEVERITY.get(level, 4),
                    group_key={"threat.feed.name": feed, "threat.indicator.value": value},
                    event_ids=[e for e, _ in events],
                    first_seen=min(times).isoformat().replace("+00:00", "Z"),
                    last_seen=max(times).isoformat().replace("+00:00", "Z"),
                    count=len(events),
                    tags=["attack.command-and-control"],
                    kind="intel",
                    details={"indicator_type": kind},
                )
            )
        return out
