"""Store commands: ``search``, ``logs``, ``sql``, ``archive restore``, ``retention run``, ``compact``.

They open the store under ``<data dir>/store`` (``--data-dir``, or ``data_dir`` of ``--config``)
directly: SQLite's WAL mode lets them read while the server writes; rows the server has not yet
flushed (at most its flush interval, 2 s by default) are not visible to another process.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kubetrail.errors import ConfigError, KubetrailError
from kubetrail.store.config import StoreConfig
from kubetrail.store.core import Store, to_ns
from kubetrail.store.engine import QueryRun, sql_literal

__all__ = ["open_store", "register"]

console = Console()
err = Console(stderr=True)
DEFAULT_COLUMNS = ["@timestamp", "kubernetes.namespace", "kubernetes.pod.name", "event.dataset", "message"]

DataDir = typer.Option(None, "--data-dir", help="Server data directory (the store is DATA_DIR/store).")
ConfigFile = typer.Option(None, "--config", help="kubetrail.yaml (for data_dir and the store section).")


def open_store(data_dir: Path | None, config: Path | None) -> Store:
    """The store a command works on, configured like the server's."""
    section = StoreConfig()
    root = data_dir
    if config is not None:
        from kubetrail.config import load_config

        cfg, _ = load_config(config)
        section = cfg.section("store")
        root = root or cfg.data_dir
    root = root or Path("./kubetrail-data")
    return Store(section.path or root / "store", section)


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]{exc}[/red]")
    return typer.Exit(code=2)


def _run_with_progress(run: QueryRun, work: Any) -> Any:
    """Run ``work()`` in a thread; show DuckDB's progress on stderr when it takes a while."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work)
        try:
            return future.result(timeout=0.5)
        except concurrent.futures.TimeoutError:
            pass
        columns = [SpinnerColumn(), TextColumn("searching"), BarColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("search", total=100)
            while not future.done():
                pct = run.progress()
                progress.update(task, completed=max(pct, 0))
                time.sleep(0.1)
        return future.result()


def _print(table: pa.Table, fmt: str) -> None:
    if fmt == "json":
        from kubetrail.outputs.file import encode_ndjson

        for batch in table.to_batches():
            sys.stdout.write(encode_ndjson(batch).decode())
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        flat = table.select(
            [c for c in table.column_names if not pa.types.is_list(table.schema.field(c).type)]
        )
        sink = pa.BufferOutputStream()
        pacsv.write_csv(flat, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
    else:
        cols = [c for c in DEFAULT_COLUMNS if c in table.column_names]
        if len(cols) < 2 or len(table.column_names) <= 8:
            cols = table.column_names
        view = Table(show_lines=False)
        for c in cols:
            view.add_column(c, overflow="fold")
        for row in table.select(cols).to_pylist():
            view.add_row(*["" if row[c] is None else str(row[c]) for c in cols])
        console.print(view)


def search_cmd(
    query: str = typer.Argument("*", help="Hunting query (docs/query.md)."),
    since: str = typer.Option("24h", "--since", help="Start: 24h, 15m, 7d or ISO 8601."),
    until: str | None = typer.Option(None, "--until", help="End (exclusive)."),
    fmt: str = typer.Option("table", "--format", help="table, json (NDJSON) or csv."),
    limit: int = typer.Option(100, "--limit", help="At most this many rows."),
    include_archive: bool = typer.Option(False, "--include-archive", help="Also search the archive tier."),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Search the store with the hunting query language."""
    if fmt not in ("table", "json", "csv"):
        raise _fail(ValueError(f"--format must be table, json or csv, not {fmt!r}"))
    try:
        store = open_store(data_dir, config)
    except ConfigError as exc:
        raise _fail(exc) from None
    try:
        compiled = store.compile_text(query) if query.strip() not in ("", "*") else None
        sql, needles, params = store.compile(compiled)
        lo, hi = store.time_range(compiled, since, until)
        run = store.open_query(store.scan_set(lo, hi, needles, include_archive))  # compiled: trusted
        try:
            table = _run_with_progress(run, lambda: run.table(sql, max_rows=limit, params=params))
        finally:
            run.close()
    except KubetrailError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    _print(table, fmt)
    if fmt == "table":
        more = (
            " (more rows matched; raise --limit)"
            if table.schema.metadata.get(b"kubetrail.truncated") == b"1"
            else ""
        )
        err.print(f"[dim]{table.num_rows} rows{more}[/dim]")


def sql_cmd(
    text: str = typer.Argument(..., help="One read-only SELECT over the `logs` view."),
    since: str | None = typer.Option(None, "--since", help="Limit `logs` to rows since (24h, ISO)."),
    until: str | None = typer.Option(None, "--until", help="... and before."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    limit: int = typer.Option(1000, "--limit"),
    include_archive: bool = typer.Option(False, "--include-archive"),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Run read-only SQL (DuckDB dialect) over the `logs` view."""
    store = open_store(data_dir, config)
    try:
        table = store.sql(text, since=since, until=until, limit=limit, include_archive=include_archive)
    except KubetrailError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    _print(table, fmt)


def logs_sql(namespace: str, pod: str, container: str | None, previous: bool, after_ns: int | None) -> str:
    """The query behind ``kubetrail logs`` (a pod's container lines in file order)."""
    conds = [
        f'"kubernetes.namespace" = {sql_literal(namespace)}',
        f'"kubernetes.pod.name" = {sql_literal(pod)}',
        "\"event.dataset\" = 'container'",
    ]
    if container:
        conds.append(f'"kubernetes.container.name" = {sql_literal(container)}')
    where = " AND ".join(conds)
    restart = 'max("kubernetes.container.restart_count")' + (" - 1" if previous else "")
    after = (
        f' AND "@timestamp" > make_timestamp_ns({after_ns})::TIMESTAMPTZ_NS' if after_ns is not None else ""
    )
    return (
        f"WITH pod AS (SELECT * FROM logs WHERE {where}), "
        f"which AS (SELECT {restart} AS rc FROM pod) "
        f'SELECT "@timestamp", message, "event.id" FROM pod '
        'WHERE coalesce("kubernetes.container.restart_count", 0) = coalesce((SELECT rc FROM which), 0)'
        f"{after} "
        f'ORDER BY "@timestamp", "log.offset"'
    )


def logs_cmd(
    pod: str = typer.Argument(..., help="Pod name (also of pods that no longer exist)."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    container: str | None = typer.Option(None, "-c", "--container"),
    previous: bool = typer.Option(False, "-p", "--previous", help="Lines of the previous restart."),
    since: str | None = typer.Option(None, "--since", help="Only lines newer than this (1h, ISO)."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep polling for new lines."),
    poll_secs: float = typer.Option(1.0, "--poll-secs", hidden=True),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """kubectl logs, served from the store."""
    after = to_ns(since)
    seen: set[str] = set()
    while True:
        store = open_store(data_dir, config)
        try:
            run = store.open_query(store.scan_set(since=after))
            try:
                sql = logs_sql(namespace, pod, container, previous, None if after is None else after - 1)
                table = run.table(sql, max_rows=store.config.limits.max_rows)
            finally:
                run.close()
        except KubetrailError as exc:
            raise _fail(exc) from None
        finally:
            store.close()
        for row in table.to_pylist():
            if row["event.id"] in seen:
                continue
            seen.add(row["event.id"])
            sys.stdout.write((row["message"] or "") + "\n")
        sys.stdout.flush()
        if not follow:
            return
        if table.num_rows:
            after = int(table.column("@timestamp").cast(pa.int64())[-1].as_py())
        time.sleep(poll_secs)


archive_app = typer.Typer(help="The archive tier (object storage).", no_args_is_help=True)
retention_app = typer.Typer(help="Retention, legal holds and compaction.", no_args_is_help=True)


@archive_app.command("restore")
def archive_restore(
    since: str = typer.Option(..., "--since", help="Restore archived segments overlapping [since, until)."),
    until: str | None = typer.Option(None, "--until"),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Bring archived segments back to the hot tier."""
    store = open_store(data_dir, config)
    try:
        restored = store.archive.restore(since=since, until=until)
    except KubetrailError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    console.print(f"restored {len(restored)} segments ({sum(s.rows for s in restored)} rows)")


@archive_app.command("list")
def archive_list(data_dir: Path | None = DataDir, config: Path | None = ConfigFile) -> None:
    """List archived segments."""
    store = open_store(data_dir, config)
    try:
        for seg in store.catalog.segments(tiers=("archive",)):
            console.print(
                f"{seg.id}  {seg.partition}  rows={seg.rows}  bytes={seg.bytes}  key={seg.archive_key}"
            )
    finally:
        store.close()


@retention_app.command("run")
def retention_run(data_dir: Path | None = DataDir, config: Path | None = ConfigFile) -> None:
    """Enforce retention now (policies, size caps, archive) and compact small segments."""
    from kubetrail.store.retention import compact, enforce

    store = open_store(data_dir, config)
    try:
        report = enforce(store)
        merged = compact(store)
    except KubetrailError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    console.print(
        f"deleted {report.deleted_rows} rows ({report.deleted_segments} segments), "
        f"archived {report.archived_rows} rows ({report.archived_segments} segments), "
        f"rewrote {report.rewritten_segments}, compacted {merged}, purged {report.purged_files} files"
    )


@retention_app.command("hold")
def retention_hold(
    reason: str = typer.Argument(..., help="Why (case number)."),
    namespace: str | None = typer.Option(None, "-n", "--namespace"),
    dataset: str | None = typer.Option(None, "--dataset"),
    since: str | None = typer.Option(None, "--since"),
    until: str | None = typer.Option(None, "--until"),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Place a legal hold: covered rows are never deleted until it is released."""
    store = open_store(data_dir, config)
    try:
        hold_id = store.catalog.add_hold(reason, namespace, dataset, None, to_ns(since), to_ns(until))
    finally:
        store.close()
    console.print(f"hold {hold_id} placed")


@retention_app.command("release")
def retention_release(
    hold_id: int = typer.Argument(...), data_dir: Path | None = DataDir, config: Path | None = ConfigFile
) -> None:
    """Release a legal hold."""
    store = open_store(data_dir, config)
    try:
        ok = store.catalog.remove_hold(hold_id)
    finally:
        store.close()
    if not ok:
        raise _fail(KeyError(f"no hold {hold_id}"))
    console.print(f"hold {hold_id} released")


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
    app.command("sql")(sql_cmd)
    app.command("logs")(logs_cmd)
    app.add_typer(archive_app, name="archive")
    app.add_typer(retention_app, name="retention")
