"""Alert store: dedup/suppression per rule+key+window, status, webhook delivery with retries, CLI."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

from typer.testing import CliRunner

from kubetrail.detect.alerts import Alert, AlertStore, WebhookSink


def alert(
    first: str = "2026-11-27T12:00:00Z", last: str | None = None, user: str = "mallory", ids=("e1",)
) -> Alert:
    return Alert("r1", "Rule one", "high", 4, {"user.name": user}, list(ids), first, last or first, len(ids))


def test_merges_within_window_and_splits_after() -> None:
    store = AlertStore(suppress_secs=600)
    a, new = store.record(alert(ids=("e1",)))
    assert new
    b, new2 = store.record(alert("2026-11-27T12:05:00Z", ids=("e2", "e1")))
    assert not new2 and b.id == a.id and b.count == 3 and b.event_ids == ["e1", "e2"]
    _, new3 = store.record(alert("2026-11-27T13:00:00Z", ids=("e3",)))
    assert new3  # outside the window: a new alert
    _, other = store.record(alert(user="eve", ids=("e4",)))
    assert other  # another group key
    assert len(store.list()) == 3


def test_status_and_closed_alerts_are_not_merged_into(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.sqlite")
    a, _ = store.record(alert())
    assert store.set_status(a.id, "acknowledged")
    assert store.list(status="acknowledged")[0].id == a.id
    store.set_status(a.id, "closed")
    _, new = store.record(alert("2026-11-27T12:01:00Z", ids=("e9",)))
    assert new
    assert not store.set_status("nope", "closed")


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[Any]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_retries_then_delivers() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Hook.received.clear()
        _Hook.fail_first = 2
        sink = WebhookSink(f"http://127.0.0.1:{server.server_port}/hook", retries=3, backoff_secs=0.01)
        assert sink.deliver([alert()])
        assert _Hook.received[0]["alerts"][0]["rule_id"] == "r1"
        _Hook.fail_first = 10
        assert not WebhookSink(
            f"http://127.0.0.1:{server.server_port}/", retries=1, backoff_secs=0.01
        ).deliver([alert()])
    finally:
        server.shutdown()
        server.server_close()


def test_cli_list_ack_close(tmp_path: Path) -> None:
    from kubetrail.cli import app

    db = tmp_path / "alerts.sqlite"
    a, _ = AlertStore(db).record(alert())
    runner = CliRunner()
    out = runner.invoke(app, ["alerts", "list", "--db", str(db)])
    assert out.exit_code == 0 and "Rule one" in out.output
    assert runner.invoke(app, ["alerts", "ack", a.id, "--db", str(db)]).exit_code == 0
    assert AlertStore(db).get(a.id).status == "acknowledged"  # type: ignore[union-attr]
    assert runner.invoke(app, ["alerts", "close", a.id, "--db", str(db)]).exit_code == 0
    assert AlertStore(db).get(a.id).status == "closed"  # type: ignore[union-attr]
    assert runner.invoke(app, ["alerts", "close", "missing", "--db", str(db)]).exit_code == 1
