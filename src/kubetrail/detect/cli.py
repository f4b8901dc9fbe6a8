"""``kubetrail alerts``, ``kubetrail hunt`` and ``kubetrail rules`` commands."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from kubetrail.detect.rules import RuleSet

__all__ = ["register"]

console = Console()
err = Console(stderr=True)
alerts_app = typer.Typer(help="List and triage alerts.", no_args_is_help=True)
rules_app = typer.Typer(help="Check and test detection rules.", no_args_is_help=True)
DEFAULT_DB = Path("kubetrail-data/alerts.sqlite")
DEFAULT_TESTS = Path("tests/detect/rules")


def _report(ruleset: RuleSet) -> None:
    """Disabled rules, and Sigma filters that do not apply (the rules still run, unfiltered)."""
    for e in ruleset.errors:
        err.print(f"[red]DISABLED[/red] {e.rule_id} ({e.path}) {e.stage}: {e.error}")
    for issue in ruleset.filter_issues:
        err.print(f"[yellow]FILTER NOT APPLIED[/yellow] {issue.kind}: {issue.error}")


def _since_ns(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not m:
        raise typer.BadParameter("use a duration like 90m, 24h, 30d")
    secs = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return time.time_ns() - secs * 1_000_000_000


@alerts_app.command("list")
def alerts_list(
    db: Path = typer.Option(DEFAULT_DB, "--db", help="Alert store (SQLite)."),
    status: str | None = typer.Option(None, help="open, acknowledged or closed."),
    min_severity: int = typer.Option(0, help="1 informational ... 5 critical."),
    limit: int = typer.Option(50),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show alerts, newest first."""
    from kubetrail.detect.alerts import AlertStore

    store = AlertStore(db)
    alerts = store.list(status=status, min_severity=min_severity, limit=limit)
    if as_json:
        for a in alerts:
            console.print_json(json.dumps(a.to_dict(), default=str))
        return
    table = Table("id", "status", "level", "rule", "key", "events", "last seen")
    for a in alerts:
        key = ", ".join(f"{k}={v}" for k, v in a.group_key.items())
        table.add_row(a.id, a.status, a.level, a.rule_title, key, str(a.count), a.last_seen)
    console.print(table)


def _set(alert_id: str, db: Path, status: str) -> None:
    from kubetrail.detect.alerts import AlertStore

    if not AlertStore(db).set_status(alert_id, status):
        err.print(f"[red]no alert {alert_id}[/red]")
        raise typer.Exit(1)
    console.print(f"{alert_id}: {status}")


@alerts_app.command("ack")
def alerts_ack(alert_id: str, db: Path = typer.Option(DEFAULT_DB, "--db")) -> None:
    """Mark an alert acknowledged (someone is on it)."""
    _set(alert_id, db, "acknowledged")


@alerts_app.command("close")
def alerts_close(alert_id: str, db: Path = typer.Option(DEFAULT_DB, "--db")) -> None:
    """Close an alert; a recurrence raises a new one."""
    _set(alert_id, db, "closed")


@rules_app.command("test")
def rules_test(
    rules: list[Path] = typer.Argument(None, help="Rule files or directories (default: rules/)."),
    tests: Path = typer.Option(DEFAULT_TESTS, help="Directory of <rule-name>.yml test files."),
) -> None:
    """Run each rule's true (match) and false (no_match) test events."""
    from kubetrail.detect.rules import load_rules
    from kubetrail.detect.testing import run_rule_test

    ruleset = load_rules(rules or [Path("rules")])
    failed = 0
    _report(ruleset)
    for test_file in sorted(tests.glob("*.yml")):
        res = run_rule_test(test_file, ruleset)
        mark = "[green]ok[/green]  " if res.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {res.rule} ({res.cases} events) {'; '.join(res.failures)}")
        failed += not res.ok
    if failed or ruleset.errors or any(i.kind == "compile" for i in ruleset.filter_issues):
        raise typer.Exit(1)


@rules_app.command("list")
def rules_list(rules: list[Path] = typer.Argument(None)) -> None:
    """Compile rules and list them with their level, tags and errors."""
    from kubetrail.detect.rules import load_rules

    ruleset = load_rules(rules or [Path("rules")])
    table = Table("name", "level", "kind", "tags")
    for r in ruleset.rules:
        kind = "detection" if r.alert else "building block"
        kind += f" + {len(r.filters)} filter(s)" if r.filters else ""
        table.add_row(r.name or r.id, r.level, kind, " ".join(r.tags))
    for c in ruleset.correlations:
        table.add_row(c.name or c.id, c.level, f"correlation ({c.type})", " ".join(c.tags))
    console.print(table)
    _report(ruleset)


def hunt_cmd(
    rules: list[Path] = typer.Option([Path("rules")], "--rules", help="Rule files or directories."),
    since: str = typer.Option("30d", help="How far back: 90m, 24h, 30d."),
    store_path: Path | None = typer.Option(None, "--store", help="Store root (default <data_dir>/store)."),
    parquet: str | None = typer.Option(None, help="Hunt Parquet files (glob) instead of the store."),
    db: Path | None = typer.Option(None, "--db", help="Also record the alerts in this alert store."),
) -> None:
    """Retro-hunt: run rules over stored history, with progress."""
    import duckdb
    from rich.progress import Progress

    from kubetrail.detect.hunt import hunt, store_relations
    from kubetrail.detect.rules import load_rules

    ruleset = load_rules(rules)
    _report(ruleset)
    since_ns = _since_ns(since)
    close = None
    relation: str | dict[str, str] = "logs"
    if parquet:
        import glob

        from kubetrail.store.engine import segment_scan_sql

        files = sorted(glob.glob(parquet, recursive=True))
        if not files:
            err.print(f"[red]no Parquet files match {parquet!r}[/red]")
            raise typer.Exit(2)
        con = duckdb.connect()
        since_sql = f"\"@timestamp\" >= (make_timestamp_ns({since_ns}) AT TIME ZONE 'UTC')"
        con.execute(f"CREATE VIEW logs AS {segment_scan_sql(files, ' WHERE ' + since_sql)}")
    else:
        from kubetrail.store import Store

        store = Store(store_path or Path("kubetrail-data/store"))
        scan = store.scan_set(since=since_ns)
        run = store.open_query(scan)
        con, close = run.con, store.close
        # only segments holding a dataset some rule reads are scanned for it (the catalog knows)
        segments = store.catalog.segments(since_ns, None, ("hot",))
        datasets_of = {str(store.root / seg.path): seg.datasets for seg in segments}
        relation = store_relations(con, ruleset, scan.files, datasets_of, scan.time_filter())
    with Progress(console=err) as bar:
        task = bar.add_task("hunting", total=len(ruleset.rules) + len(ruleset.correlations))

        def step(done: int, total: int, title: str) -> None:
            bar.update(task, completed=done, total=total, description=title[:40])

        result = hunt(con, relation, ruleset, progress=step)
    if close:
        close()
    store_alerts = None
    if db:
        from kubetrail.detect.alerts import AlertStore

        store_alerts = AlertStore(db)
    table = Table("level", "rule", "key", "events", "first seen", "last seen")
    for a in sorted(result.alerts, key=lambda a: (-a.severity, a.first_seen)):
        if store_alerts:
            store_alerts.record(a)
        key = ", ".join(f"{k}={v}" for k, v in a.group_key.items())
        table.add_row(a.level, a.rule_title, key, str(a.count), a.first_seen, a.last_seen)
    console.print(table)
    console.print(f"{len(result.alerts)} alerts, {result.matched_events} matching events")
    for rid, error in result.errors:
        err.print(f"[red]rule {rid} failed[/red]: {error}")


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(rules_app, name="rules")
    app.command("hunt")(hunt_cmd)
