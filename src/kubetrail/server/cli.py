"""``kubetrail server``: run the server; ``kubetrail server token``: mint a hashed bearer token."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.console import Console

from kubetrail.errors import ConfigError

__all__ = ["register"]

err_console = Console(stderr=True)


def _run(config: Path | None, log_level: str) -> None:
    from kubetrail.config import load_config
    from kubetrail.server.app import run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg, topology = load_config(config)
        try:
            import uvloop

            uvloop.run(run_server(cfg, topology))
        except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
            asyncio.run(run_server(cfg, topology))
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    server_app = typer.Typer(help="Run the kubetrail server.", invoke_without_command=True)

    @server_app.callback()
    def server(
        ctx: typer.Context,
        config: Path | None = typer.Option(None, "-c", "--config", help="kubetrail.yaml"),
        log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error"),
    ) -> None:
        """Accept logs from agents, Fluent Bit/Fluentd, the audit webhook, syslog, OTLP and _bulk."""
        if ctx.invoked_subcommand is None:
            _run(config, log_level)

    @server_app.command("token")
    def token(
        name: str = typer.Option(..., "--name", help="Name shown in logs instead of the secret."),
        role: list[str] = typer.Option(["agent"], "--role", help="agent, admin, hunter or viewer."),
    ) -> None:
        """Print a new random token (give it to the client) and its entry for server.tokens_file."""
        import yaml

        from kubetrail.server.auth import ROLES, generate_token, hash_token

        bad = [r for r in role if r not in ROLES]
        if bad:
            err_console.print(f"[red]unknown role(s) {bad} (one of {', '.join(ROLES)})[/red]")
            raise typer.Exit(code=2)
        secret = generate_token()
        typer.echo(f"token: {secret}")
        typer.echo("tokens_file entry:")
        typer.echo(
            yaml.safe_dump([{"name": name, "hash": hash_token(secret), "roles": role}], sort_keys=False)
        )

    app.add_typer(server_app, name="server")
