"""``kubetrail simulate``: write a simulated cluster's logs (batch) or append to them at a rate (live)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer
from rich.console import Console
from rich.table import Table

from kubetrail.simulate.options import DEFAULT_START, SimulationOptions
from kubetrail.simulate.report import LAYERS, SimulationReport

if TYPE_CHECKING:
    from kubetrail.simulate.live import LiveOptions

__all__ = ["layer_table", "print_report", "register", "truth_table"]


def layer_table(report: SimulationReport) -> Table:
    """Files, lines and bytes per layer (container, node, controlplane, audit)."""
    table = Table(title=f"Simulated cluster under {report.root}")
    for col in ("layer", "files", "lines", "bytes", "avg line"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer in LAYERS:
        s = report.layers[layer]
        avg = f"{s.bytes / s.lines:.0f} B" if s.lines else "-"
        table.add_row(layer, f"{s.files:,}", f"{s.lines:,}", f"{s.bytes:,}", avg)
    avg = f"{report.bytes / report.lines:.0f} B" if report.lines else "-"
    table.add_row("total", f"{report.files:,}", f"{report.lines:,}", f"{report.bytes:,}", avg, style="bold")
    return table


def truth_table(report: SimulationReport) -> Table:
    """The scripted attacks: when, what, ATT&CK technique, layers and how many evidence lines."""
    table = Table(title=f"Attack ground truth ({report.root / 'truth.jsonl'})")
    table.add_column("id")
    table.add_column("time", no_wrap=True)
    table.add_column("attack", no_wrap=True)
    table.add_column("ATT&CK", no_wrap=True)
    table.add_column("layers", no_wrap=True)
    table.add_column("ids", justify="right")
    table.add_column("lines", justify="right")
    for a in report.attacks:
        table.add_row(
            a.id,
            a.time[11:19],
            a.name,
            a.technique,
            ",".join(a.layers),
            str(len(a.audit_ids)),
            str(len(a.seq_ids)) + ("+" if a.streams else ""),
        )
    return table


def print_report(report: SimulationReport, console: Console) -> None:
    """Per-layer files / lines / bytes, the speed, then the attack ground truth."""
    console.print(layer_table(report))
    if report.seconds:
        console.print(
            f"{report.lines / report.seconds:,.0f} lines/s, {report.bytes / report.seconds / 1e6:,.1f} MB/s "
            f"({report.seconds:.2f} s)"
        )
    if report.attacks:
        console.print(truth_table(report))


def _run_live(
    root: Path, options: SimulationOptions, live: LiveOptions, duration: float, as_json: bool
) -> None:
    import signal

    from kubetrail.simulate.live import LiveSimulator

    sim = LiveSimulator(root, options, live)
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
        attack_window: float = typer.Option(
            0.0,
            help="Live: play the scripted attacks over the first N seconds (0 = none); truth.jsonl grows.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
        workers: int = typer.Option(1, help="Batch: worker processes (same output, less wall time)."),
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
            from kubetrail.simulate.live import LiveOptions

            live_options = LiveOptions(
                rate=rate, containers=containers, audit_rate=audit_rate, attack_window_s=attack_window
            )
            _run_live(root, options, live_options, duration, as_json)
            return
        try:
            report = simulate_batch(root, options, workers=workers)
        except FileExistsError as exc:
            Console(stderr=True).print(f"[red]{exc}[/red]")
            raise typer.Exit(code=2) from None
        if as_json:
            typer.echo(orjson.dumps(report.manifest() | {"seconds": report.seconds}).decode())
        else:
            print_report(report, Console())
