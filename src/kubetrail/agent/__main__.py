"""``python -m kubetrail.agent -c kubetrail.yaml``: the agent without the full CLI's imports."""

from __future__ import annotations

import argparse
import sys

from kubetrail.agent.config import load_agent_config
from kubetrail.agent.metrics import setup_logging
from kubetrail.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubetrail agent", description="Ship this node's logs.")
    parser.add_argument("-c", "--config", help="kubetrail.yaml (its 'agent' section)")
    args = parser.parse_args(argv)
    try:
        cfg = load_agent_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    from kubetrail.agent.app import run_agent

    run_agent(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
