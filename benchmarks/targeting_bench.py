"""Examples to the first failure, with and without targeted search (a benchmark, not a test).

    PYTHONPATH=. python benchmarks/targeting_bench.py [--seeds 10] [--max-examples 1000] [--mutant NAME]

For each near-threshold mutant (``tests.mutants.TARGETED_MUTANTS``: an error of a
few times the bound on some problems only) and each of its target cells, it runs
``--seeds`` seeded searches of ``--max-examples`` examples with the fuzz profile's
settings (no database, no shrinking), once with Hypothesis's target phase and once
without, and prints how many examples each search ran until its first failure.
Every case reports its worst error/bound ratio and its share of elements near the
bound (``conformance.session.aim``) in both; only the targeted search climbs them.
Hypothesis starts climbing after 200 examples (for budgets of 1,000 and more), so
the two searches are the same sequence until then.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _summary(found: list[int | None], budget: int) -> str:
    caught = [n for n in found if n is not None]
    if not caught:
        return f"caught 0/{len(found)}"
    mean = statistics.mean(n if n is not None else budget for n in found)
    return f"caught {len(caught)}/{len(found)}, median {statistics.median(caught):g}, mean {mean:.0f} (miss={budget})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-examples", type=int, default=1000)
    parser.add_argument("--mutant", action="append", help="only this mutant (name; repeatable)")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore")
    from tests.mutants import TARGETED_MUTANTS, adapter_ref
    from tests.mutants.measure import search_cost

    print(f"{args.seeds} seeded searches of {args.max_examples} examples per cell (fuzz profile settings)")
    for mutant in TARGETED_MUTANTS:
        if args.mutant and mutant.name not in args.mutant:
            continue
        for targeted in (False, True):
            start = time.perf_counter()
            found = search_cost(mutant, adapter_ref(mutant), seeds=args.seeds, max_examples=args.max_examples,
                                targeted=targeted)  # fmt: skip
            took = time.perf_counter() - start
            for cell, runs in found.items():
                runs_text = " ".join("-" if n is None else str(n) for n in runs)
                print(f"{mutant.name}  {cell}  {'targeted' if targeted else 'blind   '}  "
                      f"{_summary(runs, args.max_examples)}  [{runs_text}]", flush=True)  # fmt: skip
            print(f"  ({took:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
