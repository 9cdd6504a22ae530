#!/usr/bin/env python3
"""False-alarm soak: many examples against correct backends; any failure not already known is reported.

    python benchmarks/soak.py                       # torch, torch-nn, onnxruntime; 200 examples per cell
    python benchmarks/soak.py --examples-per-cell 50 --adapter torch

The suite's own cells cover what a soak must: every dtype (float64, float32,
float16, bfloat16), the layouts (contiguous, channels_last, strided views),
transposed and backward, special values.  This runs them with the dev profile
(random examples from ``--seed``, the Hypothesis database on, so anything found
replays), ``--examples-per-cell`` each, and sorts every failure:

* in a cell the built-in baseline lists (``conformance/baselines/
  known-discrepancies.json``: real backend bugs, each explained): *known*;
* anywhere else: a **false-alarm candidate**, which is fixed at its root (the
  precision model or the verdict), never by widening a tolerance.

Exit status 0 when no false-alarm candidate was found, 1 otherwise.  Not part
of CI: it takes tens of minutes.  Numbers go in the README's "How we know it
works".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.cli import DEFAULT_BASELINE  # noqa: E402
from conformance.cli import main as cli_main  # noqa: E402
from conformance.results import read  # noqa: E402
from conformance.session import BAD  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", action="append", help="default: torch, torch-nn, onnxruntime")
    parser.add_argument("--examples-per-cell", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("-n", "--workers", default="auto")
    parser.add_argument("--results", default="soak-results.json")
    parser.add_argument("--report", default="soak-report.html")
    parser.add_argument("-k", dest="select", help="only the cells matching this pytest -k expression")
    parser.add_argument("--isolate", action="store_true", help="adapter calls in a child process (slower)")
    args = parser.parse_args(argv)
    adapters = args.adapter or ["torch", "torch-nn", "onnxruntime"]

    command = ["run", "--profile", "dev", "--max-examples", str(args.examples_per_cell), "--seed", str(args.seed),
               "--results", args.results, "--report", args.report, "-n", args.workers]  # fmt: skip
    if args.isolate:
        command.append("--isolate")
    if args.select:
        command += ["-k", args.select]
    for adapter in adapters:
        command += ["--adapter", adapter]
    start = time.perf_counter()
    code = cli_main(command)
    seconds = time.perf_counter() - start
    if code not in (0, 1):
        print(f"soak: the run itself failed (exit {code})", file=sys.stderr)
        return code

    results = read(args.results)
    judged = known = 0
    alarms = []
    for (cell, adapter), record in sorted(results.cells.items()):
        judged += sum(n for status, n in record.counts.items() if status != "unsupported")
        # Matched per case: a known bug explains its own failing cases only, never the rest of its cell.
        known += record.counts.get("expected", 0)
        if record.status in BAD:
            alarms.append((cell, adapter, record))
    entries = (results.baseline or {}).get("entries") or []
    print(f"\nsoak: {judged:,} examples on {', '.join(adapters)} in {seconds / 60:.1f} min "
          f"(seed {args.seed}, {args.examples_per_cell} per cell, {len(results.cells)} cells)")  # fmt: skip
    print(f"  failing cases a baseline entry explains ({DEFAULT_BASELINE}): {known:,}, by "
          f"{sum(1 for e in entries if e.get('state') == 'explained')} of {len(entries)} entries")  # fmt: skip
    print(f"  cells with a failure no entry explains: {len(alarms)} false-alarm candidate(s)")
    for cell, adapter, record in alarms:
        failure = record.failures[-1] if record.failures else {}
        print(f"  FALSE ALARM? {adapter} {cell}: {failure.get('descriptor', '')}\n      {failure.get('reason', '')}")
    print(f"  results: {args.results}, report: {args.report}")
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
