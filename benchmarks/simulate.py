"""Simulator benchmark: batch mode as a load generator (the issue's target is >= 200k lines/s).

    python benchmarks/simulate.py [--quick]

Full: 10 nodes x 1 hour (~2.3 M lines, ~0.8 GB); quick: 3 nodes x 30 min (~0.3 M lines). Prints one JSON
object: lines/s and MB/s over wall time, and lines per CPU-second (the machine is shared, so wall time
includes waiting for a core; ``cpu_seconds`` counts this process only, so with ``--workers`` > 1 use the
wall figures). The tree is written under $TMPDIR and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (< 50 s)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (same output)")
    args = parser.parse_args()

    import pyarrow as pa

    from kubetrail.simulate import SimulationOptions, simulate_batch

    pa.array(["warm-up"])  # pyarrow's first list conversion imports pandas: not the simulator's cost
    options = SimulationOptions(nodes=3, hours=0.5) if args.quick else SimulationOptions(nodes=10, hours=1.0)
    tmp = Path(tempfile.mkdtemp(prefix="kubetrail-bench-simulate-"))
    try:
        cpu = time.process_time()
        report = simulate_batch(tmp / "cluster", options, workers=args.workers)
        cpu = time.process_time() - cpu
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "lines_per_s": round(report.lines / report.seconds),
                "mb_per_s": round(report.bytes / report.seconds / 1e6, 1),
                "lines": report.lines,
                "bytes": report.bytes,
                "seconds": round(report.seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "lines_per_cpu_s": round(report.lines / cpu),
                "container_lines_per_s": round(
                    (report.layers["container"].lines + report.layers["controlplane"].lines) / report.seconds
                ),
                "avg_container_line_bytes": round(
                    report.layers["container"].bytes / report.layers["container"].lines
                ),
                "workers": args.workers,
                "nodes": options.nodes,
                "hours": options.hours,
            }
        )
    )


if __name__ == "__main__":
    main()
