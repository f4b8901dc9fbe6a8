"""``kubetrail agent -c kubetrail.yaml``.

The command replaces the CLI process with ``python -m kubetrail.agent`` (exec): the agent then runs
without the CLI's and the server's imports, which keeps the DaemonSet's memory small.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    from kubetrail.agent.config import AgentConfig
    from kubetrail.config import register_section

    register_section("agent", AgentConfig)

    @app.command("agent")
    def agent(
        config: Path | None = typer.Option(None, "-c", "--config", help="kubetrail.yaml to read."),
    ) -> None:
        """Run the node agent: tail this node's logs and ship them to the server."""
        argv = [sys.executable, "-m", "kubetrail.agent"]
        if config is not None:
            argv += ["-c", str(config)]
        os.execv(sys.executable, argv)
