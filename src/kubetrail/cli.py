"""The ``kubetrail`` command. Each part adds its commands from its own ``cli`` module as it lands."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.console import Console

from kubetrail import __version__
from kubetrail.errors import ConfigError

app = typer.Typer(
    name="kubetrail",
    help="Kubernetes logging pipeline built for security threat hunting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check and explain kubetrail.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console()
err_console = Console(stderr=True)

# Modules with a ``register(app: typer.Typer) -> None`` that adds a part's commands.
COMMAND_MODULES: tuple[str, ...] = (
    "kubetrail.server.cli",
    "kubetrail.simulate.cli",
    "kubetrail.demo",
    "kubetrail.detect.cli",
    "kubetrail.store.cli",
    "kubetrail.agent.cli",
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        console.print(f"kubetrail {__version__}")
        raise typer.Exit()


@config_app.command("check")
def config_check(file: Path = typer.Argument(..., help="kubetrail.yaml to validate.")) -> None:
    """Validate FILE (with KUBETRAIL_* environment overrides) and list what it builds."""
    from kubetrail.config import load_config

    try:
        cfg, topology = load_config(file)
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    console.print(f"[green]ok[/green] {file}: cluster {cfg.cluster.name!r}")
    for kind in ("receivers", "transforms", "outputs"):
        for name, component in getattr(topology, kind).items():
            console.print(f"  {kind[:-1]:<9} {name:<20} type={component.type_name}")


def _register_parts() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(app)


_register_parts()


def main() -> None:
    app()
