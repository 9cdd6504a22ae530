"""Run a mutant through the suite's own chapters on its target cells, and measure how the suite caught it.

:func:`measure` builds a :class:`~conformance.session.ConformanceSession` for the
mutant (in-process, as ``conv-conformance run`` builds one per process), loads the
ci profile, and calls the chapter's own test function for each target cell
(``conformance/suite/test_forward.py::test_forward`` and its siblings) with that
session: the same strategies, runner, oracle, verdict and Hypothesis settings a
real run uses, without pytest collection around them.  The only addition is a
thin watch on the cell's record, which sees every case the chapter records in
order: how many cases ran until the first bad one, when that was, and which
failure was recorded last (the minimal one: Hypothesis replays it last).

The statistics go to a JSON file and a Markdown table (:func:`write_report`);
``python -m tests.mutants.measure STATS.json`` prints the table again, and
``python -m tests.mutants.measure --seeds 20`` measures how often each mutant is
caught over 20 random draws of the ci budget (:func:`detection_rates`).
"""

from __future__ import annotations

import fnmatch
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.cells import Cell, arithmetic_cells
from conformance.data import DataRecipe
from conformance.session import BAD, ConformanceFailure, ConformanceSession, register_profiles
from conformance.spec import DTYPES, ConvSpec, InvalidSpec
from conformance.suite.by_id import run_cell
from conformance.suite.test_invalid import RULES as INVALID_CHAPTER_RULES

#: The adapter every mutant is a broken copy of: it must pass each mutant's minimal failing case.
REFERENCE = "adapters.torch_functional:TorchFunctional"
PROFILE = "conv-conformance-ci"
#: The ci profile's budget and phases, seeded instead of derandomized (see :func:`detection_rates`).
SEEDED_PROFILE = "conv-conformance-ci-seeded"
#: Chapters whose cells are ``Cell``s explored by the chapter's own test function.
_ARITHMETIC = ("forward", "transposed", "backward", "transposed-backward")


def all_cell_ids() -> list[str]:
    """Every cell id of the suite's chapters that a mutant can target (CPU)."""
    ids = [cell.id for chapter in _ARITHMETIC for cell in arithmetic_cells(chapter)]
    ids += [Cell("special", dims, dtype, "any").id for dims in (1, 2, 3) for dtype in DTYPES]
    ids += [Cell("invalid", dims, "float32", rule).id for dims in (1, 2, 3) for rule in INVALID_CHAPTER_RULES]
    return ids


def expand(patterns: tuple[str, ...]) -> list[str]:
    """Cell ids matching the patterns (ids or fnmatch globs), in suite order; a pattern matching nothing is an error."""
    known = all_cell_ids()
    chosen = []
    for pattern in patterns:
        matched = [cid for cid in known if fnmatch.fnmatchcase(cid, pattern)]
        if not matched:
            raise ValueError(f"target cell pattern {pattern!r} matches no cell of the suite")
        chosen += [cid for cid in matched if cid not in chosen]
    return chosen


def baselined_siblings(mutant: type, baseline: Any, adapter: str = "torch") -> list[str]:
    """The cells next to a mutant's targets (same chapter, dims and padding form, another dtype) where one of
    ``adapter``'s in-scope baseline entries could apply: where a too-wide entry would hide the mutant's bug."""
    from conformance.predicates import cell_facts, could_hold

    out = baseline.out_of_scope.get(adapter, {})
    entries = [e for e in baseline.for_adapter(adapter) if e.id not in out]
    siblings = []
    for target in expand(mutant.TARGET_CELLS):
        chapter, dims, _, form = target.split("/")
        for dtype in DTYPES:
            cell = f"{chapter}/{dims}/{dtype}/{form}"
            if cell not in siblings and any(could_hold(e.when, cell_facts(cell)) for e in entries):
                siblings.append(cell)
    return siblings


# ---------------------------------------------------------------- watching


class _Watch:
    """The chapter's cell record, seen on the way in: every ``add`` goes through unchanged."""

    def __init__(self, record: Any) -> None:
        self._record = record
        self.cases = 0
        self.first_bad: int | None = None
        self.first_bad_at: float | None = None
        self.last_failure: dict[str, Any] | None = None

    def add(self, status: str, *args: Any, **kwargs: Any) -> None:
        self.cases += 1
        if status in BAD:
            if self.first_bad is None:
                self.first_bad, self.first_bad_at = self.cases, time.perf_counter()
            failure = args[1] if len(args) > 1 else kwargs.get("failure")
            if failure is not None:
                self.last_failure = failure
        self._record.add(status, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._record, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in ("cases", "first_bad", "first_bad_at", "last_failure"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._record, name, value)


class _WatchedSession(ConformanceSession):
    """A session whose cells are watched (see :class:`_Watch`); nothing else differs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watches: dict[str, _Watch] = {}

    def open_cell(self, cell_id: str, adapter: str) -> Any:
        watch = _Watch(super().open_cell(cell_id, adapter))
        self.watches[cell_id] = watch
        return watch


# ---------------------------------------------------------------- results


@dataclass
class CellStats:
    """How the suite did on one target cell of one mutant."""

    cell: str
    caught: bool
    outcome: str
    cases: int
    #: Cases run up to and including the first bad one (None: never caught).
    examples_to_failure: int | None
    #: From the first bad case until Hypothesis finished (shrinking and the final replay).
    shrink_seconds: float | None
    seconds: float
    minimal: dict[str, Any] | None = None
    #: The reference adapter's status on the minimal failing case (it must not fail it).
    reference_status: str | None = None
    reference_reason: str = ""
    message: str = ""
    #: The fraction of seeded draws of the ci budget that catch the mutant here (see :func:`detection_rates`).
    detection_rate: float | None = None


@dataclass
class MutantStats:
    name: str
    adapter: str
    bug_class: str
    cells: list[CellStats] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        """Caught by the ci run: at least one target cell failed (as the meta-test demands)."""
        return any(c.caught for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "caught": self.caught}


def _size(spec: ConvSpec) -> dict[str, Any]:
    """Output elements and MACs of a problem; an invalid one may have neither."""
    out: dict[str, Any] = {"descriptor": spec.descriptor()}
    try:
        out["output_elements"] = math.prod(spec.output_shape)
        out["macs"] = spec.macs
    except Exception:  # an invalid problem may not even have an output size
        out["output_elements"] = out["macs"] = None
    return out


def _check_reference(cell_id: str, failure: dict[str, Any]) -> tuple[str, str]:
    """Run the reference adapter on the minimal failing case: ``(status, reason)``."""
    from conformance.faults import AdapterCaller
    from conformance.runner import run_case, run_invalid_case

    spec = ConvSpec.from_dict(failure["spec"])
    with AdapterCaller(REFERENCE, timeout=60.0) as caller:
        if cell_id.startswith("invalid/"):
            try:
                spec.validate()
                rule = "none"
            except InvalidSpec as error:
                rule = error.rule
            result = run_invalid_case(caller, spec, rule)
        else:
            result = run_case(caller, spec, DataRecipe.from_dict(failure["recipe"]), failure["operation"])
    return result.status, result.reason


def measure(mutant: type, adapter: str, *, seeds: int = 0, baseline: Any = None, identity: str | None = None,
            with_reference: bool = True, cells: list[str] | None = None, profile: str = PROFILE,
            targeting: bool = False) -> MutantStats:  # fmt: skip
    """Run the ci profile on each of ``mutant.TARGET_CELLS`` and say how each was caught; with ``seeds``,
    also each cell's :func:`detection_rates` over that many seeded draws of the same budget.

    With a ``baseline`` (a :class:`~conformance.baseline.Baseline`) and an ``identity`` (the adapter name the
    mutant runs as, e.g. "torch"), that adapter's entries are in force: a case an entry explains is not a catch.
    ``cells`` replaces the mutant's target cells; ``profile`` the ci profile (with ``targeting``, each case
    reports its error/bound to Hypothesis, as in the dev and fuzz profiles).
    """
    stats = MutantStats(mutant.name, adapter, mutant.BUG_CLASS)
    stats.cells = _measure_cells(mutant, adapter, profile, with_reference=with_reference, baseline=baseline,
                                 identity=identity, cells=cells, targeting=targeting)  # fmt: skip
    if seeds:
        rates = detection_rates(mutant, adapter, seeds)
        for cell in stats.cells:
            cell.detection_rate = rates[cell.cell]
    return stats


def _ensure_profiles() -> None:
    from hypothesis import Phase, settings
    from hypothesis.errors import InvalidArgument

    try:
        settings.get_profile(SEEDED_PROFILE)
    except InvalidArgument:
        try:
            settings.get_profile(PROFILE)
        except InvalidArgument:  # outside pytest (the plugin registers them): register them here
            register_profiles()
        # The ci budget drawn from a given seed instead of derandomized; detection only, so no shrinking.
        settings.register_profile(SEEDED_PROFILE, parent=settings.get_profile(PROFILE), derandomize=False,
                                  phases=(Phase.explicit, Phase.generate))  # fmt: skip


def _measure_cells(mutant: type, adapter: str, profile: str, *, with_reference: bool = True, baseline: Any = None,
                   identity: str | None = None, cells: list[str] | None = None,
                   targeting: bool = False) -> list[CellStats]:  # fmt: skip
    from hypothesis import settings

    _ensure_profiles()
    previous = settings.get_current_profile_name()
    session = _WatchedSession([adapter], profile="ci", timeout=60.0, baseline=baseline,
                              identities={adapter: identity} if identity else None, targeting=targeting)  # fmt: skip
    name = session.adapter_names[0]  # the declared name (or the identity): what the chapters key cells by
    settings.load_profile(profile)
    try:
        chosen = cells if cells is not None else expand(mutant.TARGET_CELLS)
        return [_measure_cell(session, name, cell_id, with_reference) for cell_id in chosen]
    finally:
        settings.load_profile(previous)
        session.close()


def detection_rates(mutant: type, adapter: str, seeds: int) -> dict[str, float]:
    """Per target cell, the fraction of ``seeds`` seeded draws of the ci budget (15 examples, seeds 0, 1, ...)
    that catch the mutant.

    The ci profile draws one example sequence per cell, derandomized from the source
    text of the chapter's Hypothesis test function: an unrelated edit there draws a new
    sequence, and a mutant caught by most draws but not all may then survive it.  The
    seeded draws do not depend on that text, only on the strategies, so their rate is
    a stable measure of how well the ci budget covers the bug class.
    """
    import hypothesis.core

    saved = hypothesis.core.global_force_seed
    caught: dict[str, int] = dict.fromkeys(expand(mutant.TARGET_CELLS), 0)
    try:
        for seed in range(seeds):
            # What ``pytest --hypothesis-seed`` sets: the seed of every test that is not derandomized.
            hypothesis.core.global_force_seed = seed
            for cell in _measure_cells(mutant, adapter, SEEDED_PROFILE, with_reference=False):
                caught[cell.cell] += int(cell.caught)
    finally:
        hypothesis.core.global_force_seed = saved
    return {cell: n / seeds for cell, n in caught.items()}


def search_profile(max_examples: int, *, targeted: bool, shrink: bool = False) -> str:
    """A profile with the fuzz profile's settings, ``max_examples`` examples, seeded, no database; with or without
    Hypothesis's target phase (and the shrink phase): its name."""
    from hypothesis import Phase, settings

    _ensure_profiles()
    phases = (Phase.explicit, Phase.generate, *((Phase.target,) if targeted else ()),
              *((Phase.shrink,) if shrink else ()))  # fmt: skip
    name = f"conv-conformance-search-{max_examples}-{'targeted' if targeted else 'blind'}{'-shrink' if shrink else ''}"
    settings.register_profile(name, parent=settings.get_profile("conv-conformance-fuzz"), database=None,
                              max_examples=max_examples, derandomize=False, phases=phases)  # fmt: skip
    return name


def search_cost(mutant: type, adapter: str, *, seeds: int, max_examples: int, targeted: bool,
                cells: list[str] | None = None) -> dict[str, list[int | None]]:  # fmt: skip
    """Per target cell, the examples each of ``seeds`` seeded searches of ``max_examples`` examples ran until
    its first failure (None: not caught), with the fuzz profile's phases, targeted or blind.

    Both searches report every case's error/bound to Hypothesis (``conformance.session.aim``); only the
    targeted one has ``Phase.target``, in which Hypothesis mutates the best-scoring cases to climb the score.
    Hypothesis starts that phase after half the examples (under 1,000) or after 200 (from 1,000 on).
    """
    import hypothesis.core

    profile = search_profile(max_examples, targeted=targeted)
    chosen = cells if cells is not None else expand(mutant.TARGET_CELLS)
    found: dict[str, list[int | None]] = {cell: [] for cell in chosen}
    saved = hypothesis.core.global_force_seed
    try:
        for seed in range(seeds):
            hypothesis.core.global_force_seed = seed
            for cell in _measure_cells(mutant, adapter, profile, with_reference=False, cells=chosen, targeting=True):
                found[cell.cell].append(cell.examples_to_failure)
    finally:
        hypothesis.core.global_force_seed = saved
    return found


def _measure_cell(session: _WatchedSession, adapter: str, cell_id: str, with_reference: bool) -> CellStats:
    import pytest

    start = time.perf_counter()
    message = ""
    try:
        run_cell(session, adapter, cell_id)
    except ConformanceFailure as failure:
        message = str(failure)
    except pytest.skip.Exception as skipped:
        message = f"skipped: {skipped}"
    except pytest.xfail.Exception as explained:  # every failure the cell had, a baseline entry explained
        message = f"expected failure: {explained}"
    end = time.perf_counter()
    watch = session.watches.get(cell_id)
    record = session.results.cell(cell_id, adapter)
    caught = watch is not None and watch.first_bad is not None
    stats = CellStats(
        cell=cell_id, caught=caught, outcome=record.outcome, cases=watch.cases if watch else 0,
        examples_to_failure=watch.first_bad if caught else None,
        shrink_seconds=end - watch.first_bad_at if caught and watch.first_bad_at else None,
        seconds=end - start, message=message.splitlines()[0] if message else "",
    )  # fmt: skip
    if caught and watch.last_failure is not None:
        failure = watch.last_failure
        spec = ConvSpec.from_dict(failure["spec"])
        stats.minimal = {**_size(spec), "status": failure.get("status"), "reason": failure.get("reason", "")[:300],
                         "recipe": failure.get("recipe")}  # fmt: skip
        if with_reference:
            stats.reference_status, stats.reference_reason = _check_reference(cell_id, failure)
    return stats


# ---------------------------------------------------------------- report


def summary(mutants: list[dict[str, Any]]) -> dict[str, Any]:
    """Kill rate; examples-to-detection, shrink time and minimal size over every (mutant, cell) pair
    caught; the seeded catch rate over every pair measured."""
    cells = [c for m in mutants for c in m["cells"]]
    caught = [c for c in cells if c["caught"]]
    examples = [c["examples_to_failure"] for c in caught]
    shrink = [c["shrink_seconds"] for c in caught if c["shrink_seconds"] is not None]
    macs = [c["minimal"]["macs"] for c in caught if c.get("minimal") and c["minimal"]["macs"] is not None]
    rates = [c["detection_rate"] for c in cells if c.get("detection_rate") is not None]
    return {
        "mutants": len(mutants),
        "mutants_caught": sum(1 for m in mutants if m["caught"]),
        "kill_rate": sum(1 for m in mutants if m["caught"]) / len(mutants) if mutants else None,
        "cells": len(cells),
        "cells_caught": len(caught),
        "median_examples_to_failure": statistics.median(examples) if examples else None,
        "worst_examples_to_failure": max(examples) if examples else None,
        "median_shrink_seconds": statistics.median(shrink) if shrink else None,
        "worst_shrink_seconds": max(shrink) if shrink else None,
        "median_minimal_macs": statistics.median(macs) if macs else None,
        "worst_minimal_macs": max(macs) if macs else None,
        "median_seeded_catch_rate": statistics.median(rates) if rates else None,
        "worst_seeded_catch_rate": min(rates) if rates else None,
    }


def table(mutants: list[dict[str, Any]], *, with_summary: bool = True) -> str:
    """A Markdown table, one row per (mutant, target cell), and the summary line."""
    lines = [
        "| mutant | cell | caught | examples to failure | shrink s | minimal problem | out elems | MACs "
        "| seeded catch rate |",
        "|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for m in sorted(mutants, key=lambda m: m["name"]):
        for c in m["cells"]:
            minimal = c.get("minimal") or {}
            shrink = f"{c['shrink_seconds']:.2f}" if c["shrink_seconds"] is not None else "-"
            rate = c.get("detection_rate")
            lines.append(
                f"| {m['name']} | {c['cell']} | {'yes' if c['caught'] else 'NO'} | "
                f"{c['examples_to_failure'] if c['examples_to_failure'] is not None else '-'} | {shrink} | "
                f"`{minimal.get('descriptor', '-')}` | {minimal.get('output_elements', '-')} | "
                f"{minimal.get('macs', '-')} | {'-' if rate is None else f'{rate:.0%}'} |"
            )
    s = summary(mutants)
    if with_summary and s["mutants"]:
        lines += [
            "",
            f"Kill rate {s['mutants_caught']}/{s['mutants']} mutants ({s['cells_caught']}/{s['cells']} target cells); "
            f"examples to first failure: median {s['median_examples_to_failure']}, worst "
            f"{s['worst_examples_to_failure']}; shrink time: median {_seconds(s['median_shrink_seconds'])}, worst "
            f"{_seconds(s['worst_shrink_seconds'])}; minimal problem MACs: median {s['median_minimal_macs']}, "
            f"worst {s['worst_minimal_macs']}"
            + (
                f"; seeded catch rate: median {s['median_seeded_catch_rate']:.0%}, worst "
                f"{s['worst_seeded_catch_rate']:.0%}."
                if s["median_seeded_catch_rate"] is not None
                else "."
            ),
        ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def write_report(path: Path, mutants: list[dict[str, Any]]) -> None:
    """``path`` (JSON: every mutant's stats and the summary) and ``path`` with ``.md`` (the table)."""
    data = {"profile": PROFILE, "mutants": sorted(mutants, key=lambda m: m["name"]), "summary": summary(mutants)}
    _replace(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    _replace(path.with_suffix(".md"), table(mutants) + "\n")


def _replace(path: Path, text: str) -> None:
    # Readers (another worker, a README script) never see half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.mutants.measure", description=__doc__.split("\n")[0])
    parser.add_argument("stats", nargs="?", help="a statistics file written by tests/test_mutants.py: print its table")
    parser.add_argument("--seeds", type=int, default=0, help="instead: detection rate of each mutant over N seeds")
    parser.add_argument("--mutant", action="append", help="with --seeds: only this mutant (name; repeatable)")
    args = parser.parse_args(argv)
    if args.seeds > 0:
        from tests.mutants import MUTANTS, adapter_ref

        for mutant in MUTANTS:
            if args.mutant and mutant.name not in args.mutant:
                continue
            rates = detection_rates(mutant, adapter_ref(mutant), args.seeds)
            print(mutant.name, "  ".join(f"{cell}: {rate:.0%}" for cell, rate in rates.items()), flush=True)
        return 0
    if not args.stats:
        parser.error("give a statistics file, or --seeds N")
    data = json.loads(Path(args.stats).read_text())
    print(table(data["mutants"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["REFERENCE", "CellStats", "MutantStats", "all_cell_ids", "detection_rates", "expand", "measure",
           "search_cost", "search_profile", "summary", "table", "write_report"]  # fmt: skip
