"""The state of one conformance run: adapters, profile, baseline, and the results being gathered.

The pytest plugin creates one :class:`ConformanceSession` per process (each
pytest-xdist worker has its own and writes its own shard); the suite's test
modules call :meth:`ConformanceSession.explore` once per (cell, adapter).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.baseline import BaselineEntry, BaselineError, expected_failure, matches_any, read_baseline
from conformance.results import Results, ResultsError, environment, merge, read

PROFILES = ("ci", "dev", "fuzz")
BAD = ("failed", "error", "crashed", "hung")
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def register_profiles(database_dir: str = ".hypothesis/conv-conformance") -> None:
    """ci: derandomized, fixed budget, no database; dev: moderate, database on; fuzz: long, database on."""
    common: dict[str, Any] = {
        "deadline": None,
        "suppress_health_check": _QUIET,
        "print_blob": True,
        # One minimal failure per cell: the cell is the unit of the report.
        "report_multiple_bugs": False,
    }
    settings.register_profile(
        "conv-conformance-ci", max_examples=15, derandomize=True, database=None, **common,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )  # fmt: skip
    settings.register_profile(
        "conv-conformance-dev", max_examples=60, database=DirectoryBasedExampleDatabase(database_dir), **common
    )
    settings.register_profile(
        "conv-conformance-fuzz", max_examples=2_000, database=DirectoryBasedExampleDatabase(database_dir),
        **common,
    )  # fmt: skip


def reproducible(test: Any, cell_id: str) -> Any:
    """Under a derandomized profile (ci), seed ``test`` from its cell id alone.

    Hypothesis derandomizes from a digest of the test function's source, which
    is one inner function shared by every cell of a chapter: any edit to it
    would draw new examples in every cell, so a bug the ci run caught yesterday
    could slip through after an unrelated refactor.  Seeded by cell id, a cell's
    examples change only when its strategy does.
    """
    from hypothesis import seed

    if not settings.default.derandomize:
        return test
    digest = hashlib.sha256(cell_id.encode()).digest()
    return seed(int.from_bytes(digest[:8], "big"))(test)


class ConformanceFailure(AssertionError):
    """Raised inside a Hypothesis example so that it shrinks; carries the case."""


class ConformanceSession:
    def __init__(
        self,
        adapters: list[str],
        *,
        profile: str = "ci",
        results_path: str | None = None,
        shard_name: str | None = None,
        baseline: dict[tuple[str, str], BaselineEntry] | None = None,
        timeout: float | None = 60.0,
        isolate: bool = False,
        command: str = "",
        time_budget: float | None = None,
        seed: str | None = None,
        max_examples: int | None = None,
    ) -> None:
        from conformance.faults import AdapterCaller

        self.adapter_names = adapters
        self.profile = profile
        self.baseline = baseline or {}
        self.callers = {name: AdapterCaller(name, timeout=timeout, isolate=isolate) for name in adapters}
        backends = {name: _versions(caller) for name, caller in self.callers.items()}
        self.results = Results(environment(profile, seed, backends, command))
        if max_examples is not None:
            self.results.environment["max_examples"] = max_examples
        self.results_path = results_path
        self.shard_name = shard_name
        self.seen_cells: set[tuple[str, str]] = set()
        self.deadline = time.monotonic() + 60 * time_budget if time_budget else math.inf

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    # ------------------------------------------------------------ running

    def capabilities(self, adapter: str):
        return self.callers[adapter].adapter.capabilities()

    def explore(self, cell: Any, adapter: str, strategy: Any) -> None:
        """Run Hypothesis over ``strategy`` for one cell on one adapter, recording every case.

        Raises the minimal failure (a :class:`ConformanceFailure`) when the cell
        fails; the caller turns a baselined failure into an expected failure.
        """
        from hypothesis import given

        from conformance.coverage import case_attributes
        from conformance.runner import run_case

        record = self.open_cell(cell.id, adapter)
        caller = self.callers[adapter]

        @given(case=strategy)
        def example(case):
            if self.out_of_time:
                return  # the budget is spent: the remaining examples finish at once, unrecorded
            spec, recipe = case
            result = run_case(caller, spec, recipe, cell.operation)
            failure = result.to_dict() if result.status in BAD else None
            record.add(result.status, result.ratio, failure, (result.seconds_candidate, result.seconds_oracle),
                       case_attributes(spec, recipe, cell.operation))  # fmt: skip
            if result.status in BAD:
                message = f"{result.status}: {adapter}.conv({spec.descriptor()}) [{recipe.describe()}]\n{result.reason}"
                if result.repro:
                    message += "\nstandalone repro script kept in the results file"
                raise ConformanceFailure(message)

        try:
            reproducible(example, cell.id)()
        finally:
            self.write_shard()

    def open_cell(self, cell_id: str, adapter: str) -> Any:
        """The cell's record, marked as run and as expected to fail where the baseline says so."""
        record = self.results.cell(cell_id, adapter)
        self.seen_cells.add((cell_id, adapter))
        record.expected_failure = self.expected(cell_id, adapter) is not None
        return record

    def expected(self, cell_id: str, adapter: str) -> BaselineEntry | None:
        return expected_failure(self.baseline, cell_id, adapter)

    def record_unsupported(self, cell: Any, adapter: str, reason: str) -> None:
        record = self.results.cell(cell.id, adapter)
        self.seen_cells.add((cell.id, adapter))
        record.add("unsupported")
        if reason not in record.notes:
            record.notes.append(reason)
        self.write_shard()

    # ------------------------------------------------------------ results

    def shard_path(self) -> Path | None:
        if not self.results_path:
            return None
        if self.shard_name is None:
            return Path(self.results_path)
        return Path(f"{self.results_path}.shards") / f"{self.shard_name}.json"

    def write_shard(self, complete: bool = False) -> None:
        path = self.shard_path()
        if path is None:
            return
        self.results.complete = complete
        self.results.write(path)

    def close(self) -> None:
        for caller in self.callers.values():
            caller.close()


def merge_shards(results_path: str, environment: dict[str, Any] | None, complete: bool) -> Results:
    """Join the workers' shards into ``results_path``; a shard of a dead worker still counts."""
    shard_dir = Path(f"{results_path}.shards")
    parts = []
    for shard in sorted(shard_dir.glob("*.json")):
        try:
            parts.append(read(shard))
        except ResultsError as error:
            warnings.warn(f"skipping unreadable results shard {shard}: {error}", stacklevel=1)
    merged = merge(parts, environment)
    merged.complete = complete and all(p.complete for p in parts)
    return merged


def _versions(caller: Any) -> dict[str, str]:
    try:
        return dict(caller.adapter.versions())
    except Exception as error:  # an adapter's versions() is untrusted code too
        return {"error": f"{type(error).__name__}: {error}"}


__all__ = [
    "BAD",
    "PROFILES",
    "BaselineEntry",
    "BaselineError",
    "ConformanceFailure",
    "ConformanceSession",
    "expected_failure",
    "matches_any",
    "merge_shards",
    "read_baseline",
    "register_profiles",
    "reproducible",
]
