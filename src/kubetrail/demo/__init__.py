"""``kubetrail demo``: the end-to-end walk-through, one clear step after another.

At this stage the demo simulates a cluster (3 nodes, 15 minutes of activity with scripted attacks)
and prints what was written per layer and the attack ground truth. Later parts add steps (agent ->
server -> store -> hunt -> detections): write a ``step_*(ctx)`` function and append it to ``STEPS``.
Each step reads what earlier steps left in ``ctx`` and adds its own results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from kubetrail.simulate import SimulationOptions, SimulationReport, simulate_batch

__all__ = ["STEPS", "DemoContext", "register", "run_demo", "step_ground_truth", "step_simulate"]


@dataclass
class DemoContext:
    """What the steps share: where the demo writes, how to print, and each step's results."""

    root: Path  # the demo's directory; the simulated cluster is in ``root / "cluster"``
    console: Console
    options: SimulationOptions
    simulation: SimulationReport | None = None
    results: dict[str, Any] = field(default_factory=dict)  # step name -> whatever it wants to hand on

    @property
    def cluster_root(self) -> Path:
        return self.root / "cluster"


def step_simulate(ctx: DemoContext) -> None:
    """Write the cluster's logs: container, node, control-plane and audit layers."""
    from kubetrail.simulate.cli import layer_table

    ctx.simulation = simulate_batch(ctx.cluster_root, ctx.options)
    ctx.console.print(layer_table(ctx.simulation))
    sim = ctx.simulation
    ctx.console.print(f"{sim.lines:,} lines, {sim.bytes / 1e6:,.1f} MB in {sim.seconds:.1f} s")


def step_ground_truth(ctx: DemoContext) -> None:
    """Show the scripted attacks the later steps must find (``truth.jsonl``)."""
    from kubetrail.simulate.cli import truth_table

    if ctx.simulation is None:
        raise RuntimeError("step_simulate must run before step_ground_truth")
    ctx.console.print(truth_table(ctx.simulation))
    ctx.results["truth"] = [a.to_json() for a in ctx.simulation.attacks]


Step = Callable[[DemoContext], None]
STEPS: list[tuple[str, Step]] = [
    ("simulate a cluster", step_simulate),
    ("attack ground truth", step_ground_truth),
]


def _pipeline_steps() -> list[tuple[str, Step]]:
    """agent -> server -> store -> hunt -> detections (``kubetrail.demo.steps``), when installed."""
    try:
        from kubetrail.demo.steps import PIPELINE_STEPS
    except ImportError as exc:
        print(f"demo: pipeline steps unavailable ({exc}); simulating only")
        return []
    return list(PIPELINE_STEPS)


STEPS += _pipeline_steps()


def run_demo(ctx: DemoContext, steps: list[tuple[str, Step]] | None = None) -> DemoContext:
    """Run the steps in order; a step that fails is reported and the steps after it are skipped."""
    total = time.perf_counter()
    try:
        for number, (title, step) in enumerate(steps or STEPS, start=1):
            ctx.console.rule(f"[bold]{number}. {title}")
            started = time.perf_counter()
            try:
                step(ctx)
            except Exception as exc:  # every part reports its own failure; the demo says where it stopped
                ctx.console.print(f"[red]step {number} ({title}) failed: {type(exc).__name__}: {exc}[/red]")
                ctx.results["failed"] = f"{number}. {title}"
                break
            ctx.results.setdefault("timings", {})[title] = time.perf_counter() - started
            ctx.console.print(f"[dim]{title}: {time.perf_counter() - started:.1f} s[/dim]")
    finally:
        stop = getattr(sys.modules.get("kubetrail.demo.steps"), "stop_all", None)
        if stop is not None:
            stop(ctx)  # no server or agent outlives the demo
    ctx.console.print(f"[dim]demo: {time.perf_counter() - total:.1f} s[/dim]")
    return ctx


def minutes_ago(minutes: float) -> str:
    """The cluster's logs are as recent as a live cluster's: node logs without a year (syslog, klog)
    get the year nearest their receive time, so a fixed past start would date them a year off."""
    at = datetime.now(UTC) - timedelta(minutes=minutes)
    return at.strftime("%Y-%m-%dT%H:%M:00Z")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        root: Path = typer.Option(Path("demo-data"), "--root", help="Directory the demo writes into."),
        nodes: int = typer.Option(3, help="Simulated nodes."),
        minutes: float = typer.Option(15.0, help="Minutes of simulated activity."),
        seed: int = typer.Option(1, help="Simulation seed."),
        start: str | None = typer.Option(
            None, help="Time of the first simulated event (ISO-8601, UTC); default: MINUTES ago."
        ),
    ) -> None:
        """Run the end-to-end demo on a simulated cluster."""
        root.mkdir(parents=True, exist_ok=True)
        start = start or minutes_ago(minutes)
        options = SimulationOptions(nodes=nodes, hours=minutes / 60, seed=seed, start=start)
        # piped (CI logs, make demo | tee) rich would fall back to 80 columns and cut the tables
        console = Console() if sys.stdout.isatty() else Console(width=150)
        ctx = run_demo(DemoContext(root=root, console=console, options=options))
        if "failed" in ctx.results:
            raise typer.Exit(1)
