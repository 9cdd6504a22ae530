"""Campaign throughput: examples per second for 1, 2, ... worker processes sharing one Redis.

    python benchmarks/campaign_bench.py [--workers 1 2] [--seconds 60] [--adapter torch] [--cell GLOB ...]

(default cells: forward/2d/*)

For each worker count it starts a fresh ``redis-server`` (a free loopback port,
nothing persisted), starts that many ``conv-conformance fuzz --campaign``
workers, and measures the campaign's examples per second in the steady state:
from the moment every worker has sent its first heartbeat (start-up, adapter
load and Redis registration done) until the first worker stops, as counted in
Redis (``examples`` per cell, added at the end of each chunk).  It also prints
the whole-run figure (every example over the workers' wall time, start-up
included).  Needs Debian's ``redis-server`` and the ``redis`` client.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(workers: int, seconds: float, adapter: str, cells: list[str], chunk: int) -> dict[str, float]:
    from conformance.campaign import Campaign
    from conformance.supervisor import thread_budget
    from tests.redis_server import redis_server

    with redis_server() as server, tempfile.TemporaryDirectory(prefix="campaign-bench-") as tmp:
        campaign = Campaign(server.url)
        command = [sys.executable, "-m", "conformance.cli", "fuzz", "--campaign", server.url, "--adapter", adapter,
                   "--minutes", str(seconds / 60), "--chunk-examples", str(chunk)]  # fmt: skip
        for cell in cells:
            command += ["--cell", cell]
        started = time.monotonic()
        # Several workers on one host share its cores, as `run -n N` workers do (conformance.supervisor.thread_budget):
        # each sizing its backend's thread pool to the whole machine would oversubscribe it.
        env = {**os.environ, **thread_budget(workers), "PYTHONPATH": str(ROOT)}
        out = subprocess.DEVNULL
        procs = [subprocess.Popen([*command, "--results", f"w{i}.json"], cwd=tmp, stdout=out, stderr=out, env=env)
                 for i in range(workers)]  # fmt: skip
        try:
            while len(campaign.workers()) < workers:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker stopped before every worker had started")
                time.sleep(0.1)
            steady_from, examples_from = time.monotonic(), sum(campaign.examples().values())
            while all(p.poll() is None for p in procs):
                time.sleep(0.1)
            steady_to, examples_to = time.monotonic(), sum(campaign.examples().values())
            for p in procs:
                p.wait(timeout=seconds + 120)
            ended = time.monotonic()
            total = sum(campaign.examples().values())
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    return {
        "workers": workers,
        "startup_seconds": steady_from - started,
        "steady_seconds": steady_to - steady_from,
        "steady_examples": examples_to - examples_from,
        "steady_rate": (examples_to - examples_from) / (steady_to - steady_from),
        "total_examples": total,
        "total_rate": total / (ended - started),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=60.0, help="each worker's --minutes, in seconds")
    parser.add_argument("--adapter", default="torch")
    # One chapter's 2-D cells by default: every worker count then fuzzes the same cells, several chunks each,
    # so the rates compare (over every cell, a minute's run samples a few dozen cells of very different cost).
    parser.add_argument("--cell", action="append", default=[],
                        help="cells of the campaign, repeatable (default: forward/2d/*)")  # fmt: skip
    parser.add_argument("--chunk-examples", type=int, default=100)
    args = parser.parse_args(argv)
    args.cell = args.cell or ["forward/2d/*"]
    print(f"campaign throughput: adapter {args.adapter}, {args.seconds:g} s per worker, chunks of "
          f"{args.chunk_examples} examples, cells {' '.join(args.cell)}; {os.cpu_count()} CPUs")  # fmt: skip
    rows = []
    for n in args.workers:
        row = measure(n, args.seconds, args.adapter, args.cell, args.chunk_examples)
        rows.append(row)
        print(f"{n} worker(s): steady {row['steady_rate']:.1f} examples/s ({row['steady_examples']} examples in "
              f"{row['steady_seconds']:.1f} s, after {row['startup_seconds']:.1f} s start-up); whole run "
              f"{row['total_rate']:.1f} examples/s ({row['total_examples']} examples)", flush=True)  # fmt: skip
    if len(rows) > 1:
        base = rows[0]["steady_rate"]
        print("scaling: " + ", ".join(f"{r['workers']} -> {r['steady_rate'] / base:.2f}x" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
