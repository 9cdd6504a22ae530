"""Throughput of the ci profile (a benchmark, not a test).

    python benchmarks/suite_bench.py [--adapter torch] [-n 2]

Runs ``conv-conformance run --profile ci`` over every cell and prints the
examples run, the wall time, examples per second, and the harness overhead
ratio: wall time x workers / time spent inside the candidate and the oracle
(1.0 would mean the harness costs nothing).  Targets (README): overhead <= 2,
and the ci profile for ``torch`` over every cell within 5 minutes with -n 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", default="torch")
    parser.add_argument("-n", "--workers", default="2")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--adapter", args.adapter, "-n", args.workers,
                        "--results", str(results)], cwd=tmp, stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        wall = time.perf_counter() - start
        data = json.loads(results.read_text())
    cases = sum(sum(c["counts"].values()) - c["counts"].get("unsupported", 0) for c in data["cells"])
    inside = sum(c["seconds"]["candidate"] + c["seconds"]["oracle"] for c in data["cells"])
    candidate = sum(c["seconds"]["candidate"] for c in data["cells"])
    workers = 2 if args.workers == "auto" else int(args.workers)
    print(f"adapter {args.adapter}, ci profile, {len(data['cells'])} cells, -n {args.workers}")
    print(f"examples run:        {cases}")
    print(f"wall time:           {wall:.1f} s (including start-up)")
    print(f"examples per second: {cases / wall:.1f}")
    print(f"inside candidate:    {candidate:.1f} s; inside the oracle: {inside - candidate:.1f} s")
    print(f"overhead ratio:      {wall * workers / inside:.2f} (wall x workers / time inside candidate + oracle)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
