"""``kubetrail simulate``: write a simulated cluster's logs (batch) or append to them at a rate (live)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from kubetrail.simulate.options import DEFAULT_START, SimulationOptions
from kubetrail.simulate.report import LAYERS, SimulationReport

__all__ = ["print_report", "register"]


def print_report(report: SimulationReport, console: Console) -> None:
    """Per-layer files / lines / bytes, then the attack ground truth."""
    table = Table(title=f"Simulated cluster under {report.root}")
    for col in ("layer", "files", "lines", "bytes", "avg line"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer in LAYERS:
        s = report.layers[layer]
        table.add_row(
            layer,
            f"{s.files:,}",
            f"{s.lines:,}",
            f"{s.bytes:,}",
            f"{s.bytes / s.lines:.0f} B" if s.lines else "-",
        )
    table.add_row(
        "total",
        f"{report.files:,}",
        f"{report.lines:,}",
        f"{report.bytes:,}",
        f"{report.bytes / report.lines:.0f} B" if report.lines else "-",
        style="bold",
    )
    console.print(table)
    if report.seconds:
        console.print(
            f"{report.lines / report.seconds:,.0f} lines/s, {report.bytes / report.seconds / 1e6:,.1f} MB/s "
            f"({report.seconds:.2f} s)"
        )
    if not report.attacks:
        return
    truth = Table(title=f"Attack ground truth ({report.root / 'truth.jsonl'})")
    for col in ("id", "time", "attack", "technique", "layers", "who / from", "where", "evidence"):
        truth.add_column(col)
    for a in report.attacks:
        where = "/".join(x for x in (a.namespace, a.pod) if x) or "-"
        evidence = f"{len(a.audit_ids)} audit ids, {len(a.seq_ids)} lines" + (
            f", streams {','.join(a.streams)}" if a.streams else ""
        )
        truth.add_row(
            a.id,
            a.time[11:19],
            a.name,
            a.technique,
            ",".join(a.layers),
            f"{a.user or '-'} / {a.source_ip or '-'}",
            where,
            evidence,
        )
    console.print(truth)


def _run_live(
    root: Path,
    options: SimulationOptions,
    rate: float,
    duration: float,
    containers: int,
    audit_rate: float,
    as_json: bool,
) -> None:
    import signal

    from kubetrail.simulate.live import LiveOptions, LiveSimulator

    sim = LiveSimulator(root, options, LiveOptions(rate=rate, containers=containers, audit_rate=audit_rate))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sim.stop())
    try:
        report = sim.run(duration or None)
    except FileExistsError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(orjson.dumps(report.manifest() | {"seconds": report.seconds}).decode())
    else:
        print_report(report, Console())


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        root: Path = typer.Option(..., "--root", help="Directory to write the cluster's node trees into."),
        nodes: int = typer.Option(3, help="Nodes (node 0 is the control plane)."),
        hours: float = typer.Option(0.25, help="Hours of simulated activity (batch mode)."),
        seed: int = typer.Option(1, help="Seed; same seed and options give a byte-identical tree."),
        start: str = typer.Option(DEFAULT_START, help="Time of the first event (ISO-8601, UTC)."),
        docker_nodes: int = typer.Option(0, help="Worker nodes that use docker json-file logs."),
        lines_per_node_s: float = typer.Option(40.0, help="Container log lines per node per second."),
        audit_events_per_node_s: float = typer.Option(
            6.0, help="Background audit events per node per second."
        ),
        rotate_bytes: int = typer.Option(10 * 1024 * 1024, help="Container log rotation size (kubelet)."),
        rotate_keep: int = typer.Option(5, help="Container log files kept, current included (kubelet)."),
        copytruncate: bool = typer.Option(False, "--copytruncate", help="Rotate by copy + truncate."),
        audit_rotate_bytes: int = typer.Option(
            100 * 1024 * 1024, help="Audit log rotation size (kube-apiserver)."
        ),
        audit_keep: int = typer.Option(10, help="Rotated audit logs kept."),
        audit_compress: bool = typer.Option(False, "--audit-compress", help="Gzip rotated audit logs."),
        no_attacks: bool = typer.Option(False, "--no-attacks", help="Background activity only."),
        live: bool = typer.Option(False, "--live", help="Append at --rate with rotation instead of batch."),
        rate: float = typer.Option(5000.0, help="Live: container lines per second (all containers)."),
        duration: float = typer.Option(0.0, help="Live: seconds to run (0 = until SIGINT/SIGTERM)."),
        containers: int = typer.Option(50, help="Live: containers appended to."),
        audit_rate: float = typer.Option(200.0, help="Live: audit events per second."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    ) -> None:
        """Simulate a cluster's logs: container, node, control-plane and audit layers, with attacks."""
        from kubetrail.simulate.batch import simulate_batch

        options = SimulationOptions(
            nodes=nodes,
            hours=hours,
            seed=seed,
            start=start,
            docker_nodes=docker_nodes,
            lines_per_node_s=lines_per_node_s,
            audit_events_per_node_s=audit_events_per_node_s,
            rotate_bytes=rotate_bytes,
            rotate_keep=rotate_keep,
            copytruncate=copytruncate,
            audit_rotate_bytes=audit_rotate_bytes,
            audit_keep=audit_keep,
            audit_compress=audit_compress,
            attacks=not no_attacks,
        )
        if live:
            _run_live(root, options, rate, duration, containers, audit_rate, as_json)
            return
        try:
            report = simulate_batch(root, options)
        except FileExistsError as exc:
            Console(stderr=True).print(f"[red]{exc}[/red]")
            raise typer.Exit(code=2) from None
        if as_json:
            typer.echo(orjson.dumps(report.manifest() | {"seconds": report.seconds}).decode())
        else:
            print_report(report, Console())
