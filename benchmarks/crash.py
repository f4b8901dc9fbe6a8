"""Crash test, long form: kill -9 the real server repeatedly under load from concurrent agents.

Prints lost and duplicated counts (both must be 0) with the acknowledged volume and the resends the
kills caused. ``--quick``: 2 kills (the CI test runs 3); full: 10 kills with 4 clients.
The harness is ``tests/server/crash_harness.py`` (shared with ``tests/server/test_crash.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server.crash_harness import run_crash_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kills", type=int, default=None)
    args = parser.parse_args()
    kills = args.kills if args.kills is not None else (2 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="kt-crash-") as workdir:
        result = run_crash_test(Path(workdir), kills=kills, clients=4)
    out = {"benchmark": "crash", "mode": "quick" if args.quick else "full", **dataclasses.asdict(result)}
    out["acked_events"] = out.pop("acked")
    out["stored_events"] = out.pop("stored")
    out["lost_events"] = out.pop("lost")
    out["duplicated_events"] = out.pop("duplicated")
    out["elapsed_s"] = out.pop("seconds")
    print(json.dumps(out))
    if result.lost or result.duplicated:
        sys.exit(1)


if __name__ == "__main__":
    main()
