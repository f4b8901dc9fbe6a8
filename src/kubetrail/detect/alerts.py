"""Alerts: stored in SQLite with the ids of the events that matched, deduplicated, with a status.

An alert is keyed by (rule id, group key). The group key is what makes two matches "the same
incident": the acting user, namespace, pod or source address for detections, the group-by values
for correlations. While an alert for the same key is open and its last match is within the rule's
suppression window, new matches are merged into it (count, last seen, event ids — capped) instead of
raising another alert. Status moves open -> acknowledged -> closed; a closed alert is never merged
into, so a recurrence after closing raises a new one.

Delivery: every NEW alert goes to the log (``kubetrail.alerts`` logger) and, when configured, to a
webhook as JSON (httpx, retried with backoff on connection errors and 5xx).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["STATUSES", "Alert", "AlertStore", "LogSink", "WebhookSink"]

STATUSES = ("open", "acknowledged", "closed")
MAX_EVENT_IDS = 1000
log = logging.getLogger("kubetrail.alerts")


@dataclass
class Alert:
    rule_id: str
    rule_title: str
    level: str
    severity: int
    group_key: dict[str, Any]
    event_ids: list[str]
    first_seen: str  # ISO 8601 UTC
    last_seen: str
    count: int = 1
    tags: list[str] = field(default_factory=list)
    kind: str = "detection"  # detection, correlation or intel
    status: str = "open"
    id: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def key_hash(self) -> str:
        raw = json.dumps([self.rule_id, self.group_key], sort_keys=True, default=str)
        return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY,
  rule_id TEXT NOT NULL,
  rule_title TEXT NOT NULL,
  level TEXT NOT NULL,
  severity INTEGER NOT NULL,
  kind TEXT NOT NULL,
  key_hash TEXT NOT NULL,
  group_key TEXT NOT NULL,
  tags TEXT NOT NULL,
  status TEXT NOT NULL,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  last_seen_epoch REAL NOT NULL,
  count INTEGER NOT NULL,
  event_ids TEXT NOT NULL,
  details TEXT NOT NULL,
  updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_key ON alerts (rule_id, key_hash, status);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status, severity);
"""


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class AlertStore:
    """SQLite-backed alert store (``:memory:`` for tests)."""

    def __init__(self, path: str | Path = ":memory:", suppress_secs: float = 3600.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.suppress_secs = suppress_secs
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def record(self, alert: Alert, suppress_secs: float | None = None) -> tuple[Alert, bool]:
        """Store ``alert`` or merge it into the open one for the same rule and key; True when new."""
        window = self.suppress_secs if suppress_secs is None else suppress_secs
        key_hash = alert.key_hash()
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT * FROM alerts WHERE rule_id = ? AND key_hash = ? AND status != 'closed' "
                "ORDER BY last_seen_epoch DESC LIMIT 1",
                (alert.rule_id, key_hash),
            ).fetchone()
            if row is not None and _epoch(alert.first_seen) - row["last_seen_epoch"] <= window:
                ids = json.loads(row["event_ids"])
                seen = set(ids)
                ids += [i for i in alert.event_ids if i not in seen][: max(0, MAX_EVENT_IDS - len(ids))]
                last = max(row["last_seen"], alert.last_seen)
                count = row["count"] + alert.count
                self._db.execute(
                    "UPDATE alerts SET last_seen = ?, last_seen_epoch = ?, count = ?, event_ids = ?, "
                    "updated = ? WHERE id = ?",
                    (last, _epoch(last), count, json.dumps(ids), time.time(), row["id"]),
                )
                merged = self._from_row(row)
                merged.last_seen, merged.count, merged.event_ids = last, count, ids
                return merged, False
            alert.id = alert.id or f"{key_hash}-{int(_epoch(alert.first_seen) * 1000)}"
            self._db.execute(
                "INSERT OR REPLACE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    alert.id,
                    alert.rule_id,
                    alert.rule_title,
                    alert.level,
                    alert.severity,
                    alert.kind,
                    key_hash,
                    json.dumps(alert.group_key, default=str),
                    json.dumps(alert.tags),
                    alert.status,
                    alert.first_seen,
                    alert.last_seen,
                    _epoch(alert.last_seen),
                    alert.count,
                    json.dumps(alert.event_ids[:MAX_EVENT_IDS]),
                    json.dumps(alert.details, default=str),
                    time.time(),
                ),
            )
            return alert, True

    def set_status(self, alert_id: str, status: str) -> bool:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        with self._lock, self._db:
            cur = self._db.execute(
                "UPDATE alerts SET status = ?, updated = ? WHERE id = ? OR id LIKE ?",
                (status, time.time(), alert_id, alert_id + "%"),
            )
            return cur.rowcount > 0

    def list(
        self, status: str | None = None, min_severity: int = 0, rule_id: str | None = None, limit: int = 100
    ) -> list[Alert]:
        sql = "SELECT * FROM alerts WHERE severity >= ?"
        args: list[Any] = [min_severity]
        if status:
            sql += " AND status = ?"
            args.append(status)
        if rule_id:
            sql += " AND rule_id = ?"
            args.append(rule_id)
        sql += " ORDER BY last_seen_epoch DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            return [self._from_row(r) for r in self._db.execute(sql, args).fetchall()]

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return self._from_row(row) if row else None

    @staticmethod
    def _from_row(row: sqlite3.Row) -> Alert:
        return Alert(
            rule_id=row["rule_id"],
            rule_title=row["rule_title"],
            level=row["level"],
            severity=row["severity"],
            group_key=json.loads(row["group_key"]),
            event_ids=json.loads(row["event_ids"]),
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            count=row["count"],
            tags=json.loads(row["tags"]),
            kind=row["kind"],
            status=row["status"],
            id=row["id"],
            details=json.loads(row["details"]),
        )

    def close(self) -> None:
        self._db.close()


class LogSink:
    """New alerts as one structured log line each."""

    def deliver(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            log.warning(
                "ALERT %s [%s] %s key=%s events=%d id=%s",
                a.rule_id,
                a.level,
                a.rule_title,
                json.dumps(a.group_key, default=str),
                a.count,
                a.id,
            )


class WebhookSink:
    """New alerts POSTed as JSON (one request per batch of alerts), retried with backoff."""

    def __init__(
        self, url: str, retries: int = 3, backoff_secs: float = 0.5, timeout_secs: float = 5.0
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff_secs = backoff_secs
        self.timeout_secs = timeout_secs
        self.failed = 0

    def deliver(self, alerts: Sequence[Alert]) -> bool:
        if not alerts:
            return True
        body = {"alerts": [a.to_dict() for a in alerts]}
        for attempt in range(self.retries + 1):
            try:
                resp = httpx.post(self.url, json=body, timeout=self.timeout_secs)
                if resp.status_code < 500:
                    if resp.status_code >= 400:
                        log.error("webhook %s refused alerts: HTTP %d", self.url, resp.status_code)
                        self.failed += len(alerts)
                        return False
                    return True
            except httpx.HTTPError as exc:
                log.warning("webhook %s attempt %d failed: %s", self.url, attempt + 1, exc)
            if attempt < self.retries:
                time.sleep(self.backoff_secs * (2**attempt))
        self.failed += len(alerts)
        log.error(
            "webhook %s: %d alerts not delivered after %d attempts", self.url, len(alerts), self.retries + 1
        )
        return False
