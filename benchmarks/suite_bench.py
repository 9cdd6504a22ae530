"""Throughput of the ci profile (a benchmark, not a test).

    python benchmarks/suite_bench.py [--adapter torch] [-n 2]

Runs ``conv-conformance run --profile ci`` over every cell and prints the
examples run, the wall time, examples per second, and the harness overhead
ratio: wall time x workers / time spent inside the candidate and the oracle
(1.0 would mean the harness costs nothing).  Targets (README): overhead <= 2,
and the ci profile for ``torch`` over every cell within 5 minutes with -n 2.

It also prices the guard around every candidate call (``--guard-cases N``): the
adapter's own copies of its inputs, the bit-for-bit check that it did not write
into them, and the copy of what it returned.  Those run outside the time
measured "inside the candidate", so they are timed here on the problems the ci
strategies draw (the same MAC budget), and scaled to the run's example count.

``--profile-stages`` then runs the suite once more in this process (one worker)
with a timer on every stage of an example (see ``stages.py``) and prints where
the time goes: start-up, pytest, strategy construction, Hypothesis's engine and
draws, shrinking, the data recipe, the candidate, the call guard, the oracle and
verdict, failure evidence, case bookkeeping and shard writes.
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
    parser.add_argument("--guard-cases", type=int, default=2000, help="problems drawn to price the call guard")
    parser.add_argument("--profile-stages", action="store_true", help="also print where a worker's time goes")
    parser.add_argument("--stages-only", action="store_true", help="only the stage breakdown (no -n run)")
    args = parser.parse_args(argv)
    if not args.stages_only:
        suite_throughput(args)
    if args.profile_stages or args.stages_only:
        from stages import print_stages, profile_stages  # beside this script

        print()
        print_stages(profile_stages(args.adapter))
    return 0


def suite_throughput(args: argparse.Namespace) -> None:
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
    per_case = guard_seconds_per_case(args.guard_cases)
    guard = per_case * cases
    print(f"call guard:          {1e6 * per_case:.1f} us per case (copies in, modification check, copy out), "
          f"{guard:.2f} s over {cases} cases = {100 * guard / (wall * workers):.2f} % of the worker time")


def guard_seconds_per_case(n: int) -> float:
    """Mean time of the guard conformance.faults puts around an in-process call, over ``n`` ci-sized cases."""
    import numpy as np
    from hypothesis import HealthCheck, given, settings

    from conformance.calls import detached, modified_inputs, own_copies
    from conformance.data import make_grad_output, make_inputs
    from conformance.strategies import conv_cases

    timings: list[float] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=conv_cases(max_macs=20_000))
    def price(case):
        spec, recipe = case
        x, w, b = make_inputs(spec, recipe)
        args = (spec, x, w, b, make_grad_output(spec, recipe))
        output = np.zeros(spec.output_shape)  # what a forward returns
        start = time.perf_counter()
        given_args = own_copies(args)
        modified_inputs("backward", args, given_args)
        detached(output)
        timings.append(time.perf_counter() - start)

    price()
    return sum(timings) / max(len(timings), 1)


if __name__ == "__main__":
    sys.exit(main())
