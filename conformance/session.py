"""The state of one conformance run: adapters, profile, baseline, and the results being gathered.

The pytest plugin creates one :class:`ConformanceSession` per process (each
pytest-xdist worker has its own and writes its own shard); the suite's test
modules call :meth:`ConformanceSession.explore` once per (cell, adapter).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.baseline import BAD, Baseline, BaselineError, Entry, read_baseline
from conformance.results import Results, ResultsError, environment, merge, read

PROFILES = ("ci", "dev", "fuzz")
#: Profiles whose search is targeted: each case tells Hypothesis how close it came to its bound (see :func:`aim`).
TARGETED_PROFILES = ("dev", "fuzz")
#: ``hypothesis.target`` needs a finite score; past this error/bound ratio a case has failed long before.
_TARGET_CAP = 1e6
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
    # Said outright, not inherited: a profile's unset settings come from the profile loaded when it is
    # registered, and under CI=true (GitHub Actions, GitLab, ...) that is Hypothesis's own "ci" profile,
    # derandomized and without a database: dev and fuzz would then draw the same examples every time and
    # neither replay nor keep what they found.
    random_draws: dict[str, Any] = {"derandomize": False, "phases": tuple(Phase)}
    settings.register_profile(
        "conv-conformance-dev", max_examples=60, database=DirectoryBasedExampleDatabase(database_dir), **common,
        **random_draws,
    )  # fmt: skip
    settings.register_profile(
        "conv-conformance-fuzz", max_examples=2_000, database=DirectoryBasedExampleDatabase(database_dir),
        **common, **random_draws,
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


def aim(result: Any) -> None:
    """Report a case's closeness to failing to Hypothesis (``hypothesis.target``), so its target phase climbs
    toward precision bugs instead of sampling blindly.

    Three scores, each climbed on its own: the worst element's error/bound ratio and the share of elements
    near their bound (a bug whose error grows with the problem shows in both before it crosses the bound),
    and the reduction length (products per output element).  The last is there because the first two alone
    lead away from where precision bugs live: a correct backend's error/bound is largest on the shortest
    sums (the bound grows like ``K`` while rounding errors grow like ``sqrt(K)``), and a kernel that goes
    wrong only past some length (a blocked or split reduction, a fast path for big problems) scores like
    a correct one until the search gets there.  A case with no verdict reports nothing.
    """
    from hypothesis import target

    ratio = result.ratio
    if ratio is None or math.isnan(ratio):
        return
    target(min(ratio, _TARGET_CAP), label="worst error/bound")
    target(result.near_bound, label="share of elements near their bound")
    target(math.log2(1 + result.reduction_length), label="log2 products per output element")


class ConformanceFailure(AssertionError):
    """Raised inside a Hypothesis example so that it shrinks; carries the case."""


class DuplicateAdapterName(ValueError):
    """Two adapters of one run declare the same name: their results, test ids and baseline entries would mix."""


class ConformanceSession:
    """One process's run: its adapter callers, its results, and its shard in the run's private directory.

    ``shard_dir`` is private to the run (``<results>.shards/<run id>/``, an absolute
    path made before any adapter loads, so an adapter that changes directory cannot
    scatter shards, and two runs on one results file never read each other's);
    this process writes ``<shard_name>.json`` there after every cell, and its
    in-process watchdog's record ``<shard_name>.inflight`` (see :mod:`conformance.watchdog`).
    Each adapter is asked once for its name, capabilities and versions: one that
    cannot load is a usage error (:class:`~conformance.faults.AdapterLoadError`,
    raised from here); one that loads but cannot be run is kept in
    ``broken`` and in the results' ``adapter_errors``, and its cells are not run.

    An adapter is known by its declared ``name`` (results, test ids and baseline
    entries use it), so a team that wraps or re-registers an adapter keeps its
    baseline; ``adapters`` are the load specs given to ``--adapter``, and
    ``identities`` may map a spec to the name to use instead (the mutant
    meta-test runs each mutant as "torch").  An adapter that declares no name is
    known by its spec; two with one name are refused (:class:`DuplicateAdapterName`).
    """

    def __init__(
        self,
        adapters: list[str],
        *,
        profile: str = "ci",
        shard_dir: str | os.PathLike | None = None,
        shard_name: str = "main",
        run_id: str | None = None,
        baseline: Baseline | None = None,
        timeout: float | None = 60.0,
        startup_timeout: float | None = 300.0,
        isolate: bool = False,
        command: str = "",
        time_budget: float | None = None,
        seed: str | None = None,
        max_examples: int | None = None,
        identities: dict[str, str] | None = None,
        targeting: bool | None = None,
    ) -> None:
        from conformance.faults import AdapterBroken, AdapterCaller

        self.profile = profile
        #: whether each case reports its error/bound to Hypothesis (default: the dev and fuzz profiles); the
        #: search uses it only where the settings' phases include ``Phase.target``
        self.targeting = profile in TARGETED_PROFILES if targeting is None else targeting
        self.baseline = baseline if baseline is not None else Baseline()
        self.shard_dir = Path(shard_dir) if shard_dir is not None else None
        self.shard_name = shard_name
        watchdog = self.shard_dir / f"{shard_name}.inflight" if self.shard_dir is not None else None
        #: declared name -> caller, and declared name -> the spec it was loaded from
        self.callers: dict[str, AdapterCaller] = {}
        self.adapter_specs: dict[str, str] = {}
        self.broken: dict[str, AdapterBroken] = {}
        backends = {}
        for i, spec in enumerate(adapters):
            caller = AdapterCaller(spec, timeout=timeout, isolate=isolate, startup_timeout=startup_timeout,
                                   watchdog=None if watchdog is None else f"{watchdog}.{i}")  # fmt: skip
            try:
                info = caller.info()  # AdapterLoadError propagates: a usage error
                name, versions, broken = (identities or {}).get(spec) or info.name or spec, info.versions, None
            except AdapterBroken as error:
                name, versions, broken = (identities or {}).get(spec) or spec, {"error": error.message[:500]}, error
            if name in self.callers:
                for other in [*self.callers.values(), caller]:
                    other.close()
                raise DuplicateAdapterName(
                    f"adapters {self.adapter_specs[name]!r} and {spec!r} both declare the name {name!r}: "
                    "results and baseline entries are keyed by it, so one run takes one adapter of each name"
                )
            self.callers[name], self.adapter_specs[name], backends[name] = caller, spec, versions
            if broken is not None:
                self.broken[name] = broken
            caller.context.update(adapter=name)
        #: the adapters' declared names, in the order given
        self.adapter_names = list(self.callers)
        self.results = Results(environment(profile, seed, backends, command))
        self.results.environment["adapters"] = dict(self.adapter_specs)
        # What each adapter declared (dtypes, devices, precision in words): a scoreboard shows it per backend.
        self.results.environment["capabilities"] = {
            name: caller.capabilities.declared() for name, caller in self.callers.items() if name not in self.broken
        }  # fmt: skip
        for name in self.adapter_names:
            self.baseline.scope_for(name, backends[name], self.results.environment)
        self.results.run_id = run_id
        for name, broken in self.broken.items():
            self.results.adapter_errors[name] = {"status": broken.status, "message": broken.message}
            self.results.mark_incomplete(f"adapter {name} could not be run ({broken.status}): its cells were not run")
        if max_examples is not None:
            self.results.environment["max_examples"] = max_examples
        self.seen_cells: set[tuple[str, str]] = set()
        #: set by the plugin's SIGINT/SIGTERM handler: an interrupt swallowed on its way (in a garbage-collector
        #: callback, by a backend) is raised again at the next example, so one Ctrl-C always stops the run
        self.stop_signal: int | None = None
        self.deadline = time.monotonic() + 60 * time_budget if time_budget else math.inf
        self._cell_started: dict[tuple[str, str], float] = {}

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    # ------------------------------------------------------------ running

    def capabilities(self, adapter: str):
        return self.callers[adapter].capabilities

    def check_interrupted(self) -> None:
        """Raise KeyboardInterrupt again if the run was interrupted and the first one went astray."""
        if self.stop_signal is not None:
            raise KeyboardInterrupt("interrupted earlier (the first interrupt was swallowed)")

    def not_reached(self, cell_id: str, adapter: str) -> None:
        """A cell the time budget left out: listed, never counted as run."""
        key = f"{adapter}: {cell_id}"
        if key not in self.results.not_reached:
            self.results.not_reached.append(key)

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
        budget_cut: list[bool] = []

        @given(case=strategy)
        def example(case):
            self.check_interrupted()
            if self.out_of_time:
                budget_cut.append(True)
                return  # the budget is spent: the remaining examples finish at once, unrecorded
            spec, recipe = case
            result = run_case(caller, spec, recipe, cell.operation, evidence=False)
            if self.targeting:
                aim(result)

            def failure() -> dict[str, Any]:
                return result.add_evidence().to_dict()

            def message() -> str:
                text = f"{result.status}: {adapter}.conv({spec.descriptor()}) [{recipe.describe()}]\n{result.reason}"
                return text + ("\nstandalone repro script kept in the results file" if result.repro else "")

            self.judge(record, result.status, ratio=result.ratio,
                       failure=result.to_dict() if result.status in BAD else None, evidence=failure,
                       seconds=(result.seconds_candidate, result.seconds_oracle),
                       attributes=case_attributes(spec, recipe, cell.operation), message=message)  # fmt: skip

        try:
            reproducible(example, cell.id)()
        except KeyboardInterrupt:
            self.cut_short(cell.id, adapter, "the run was interrupted")
            raise
        finally:
            if budget_cut:
                self.cut_short(cell.id, adapter, "the time budget was spent", budget=True)
            self.finish_cell(record)
            self.write_shard()

    def judge(
        self,
        record: Any,
        status: str,
        *,
        ratio: float | None = None,
        failure: dict[str, Any] | None = None,
        seconds: tuple[float, float] = (0.0, 0.0),
        attributes: dict[str, str] | None = None,
        message: str | Callable[[], str] = "",
        evidence: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """Record one case of ``record``'s cell; raise :class:`ConformanceFailure` (Hypothesis shrinks it) when it
        failed and no baseline entry explains it.

        An explained failure is recorded as ``expected`` and does not stop the cell: its exploration goes on,
        so a different bug in the same cell is still found, and shrinking only ever follows unexplained ones.
        ``evidence``, when given, returns ``failure`` completed with what costs to make (the repro script):
        it is called only for a failure the results keep, every unexplained one and the explained ones kept
        as examples.  ``message`` may be a function, called only when the failure is raised.
        """
        self.results.changed(record)
        if status in BAD and failure is not None:
            entries = self.baseline.explain(record.cell, record.adapter, failure)
            if entries:
                ids = [entry.id for entry in entries]
                if evidence is not None and record.keeps_example(ids):
                    failure = evidence()
                record.add("expected", ratio, None, seconds, attributes)
                record.explain(ids, failure)
                return
            if evidence is not None:
                failure = evidence()
        record.add(status, ratio, failure, seconds, attributes)
        if status in BAD:
            self._first_failure(record)
            text = message() if callable(message) else message
            raise ConformanceFailure(text or f"{status}: {failure.get('reason', '') if failure else ''}")

    def _first_failure(self, record: Any) -> None:
        """Detection statistics: examples until the cell's first unexplained failure, and when it came."""
        if "examples_to_first_failure" not in record.detection:
            record.detection["examples_to_first_failure"] = sum(record.counts.values())
            record.detection["seconds_to_first_failure"] = time.monotonic() - self._cell_started.get(
                (record.cell, record.adapter), time.monotonic())

    def finish_cell(self, record: Any) -> None:
        """Shrink time: from the first unexplained failure until Hypothesis let go of the cell."""
        started = self._cell_started.pop((record.cell, record.adapter), None)
        found = record.detection.get("seconds_to_first_failure")
        if started is not None and found is not None and "shrink_seconds" not in record.detection:
            record.detection["shrink_seconds"] = max(0.0, time.monotonic() - started - found)

    def cut_short(self, cell_id: str, adapter: str, why: str, *, budget: bool = False) -> None:
        """A cell whose exploration stopped early (an interrupt, the time budget): one with no case recorded
        was not run, and must not stay in the results, where zero cases would read as "unsupported" (or, for
        a baselined cell, "unexpected pass"); one with some cases says that it was cut short."""
        if (cell_id, adapter) not in self.results.cells:
            return
        record = self.results.cell(cell_id, adapter)
        cases = sum(record.counts.values())
        if cases == 0:
            del self.results.cells[(cell_id, adapter)]
            self.seen_cells.discard((cell_id, adapter))
            if budget:
                self.not_reached(cell_id, adapter)
        elif not any(note.startswith("cut short") for note in record.notes):
            record.notes.append(f"cut short: {why} after {cases} case(s)")

    def open_cell(self, cell_id: str, adapter: str) -> Any:
        """The cell's record, marked as run and as expected to fail where the baseline says so."""
        record = self.results.cell(cell_id, adapter)
        self.seen_cells.add((cell_id, adapter))
        self._cell_started.setdefault((cell_id, adapter), time.monotonic())
        # What the in-process watchdog records if this process dies in one of the cell's calls.
        self.callers[adapter].context.update(cell=cell_id, adapter=adapter)
        return record

    def record_unsupported(self, cell: Any, adapter: str, reason: str) -> None:
        record = self.results.cell(cell.id, adapter)
        self.seen_cells.add((cell.id, adapter))
        record.add("unsupported")
        if reason not in record.notes:
            record.notes.append(reason)
        self.write_shard()

    # ------------------------------------------------------------ results

    def shard_path(self) -> Path | None:
        return None if self.shard_dir is None else self.shard_dir / f"{self.shard_name}.json"

    def write_shard(self, complete: bool = False) -> None:
        path = self.shard_path()
        if path is None:
            return
        self.results.complete = complete and not self.results.incomplete_reasons
        self.results.write_shard(path)

    def close(self) -> None:
        for caller in self.callers.values():
            caller.close()


def merge_shards(
    shard_dir: str | os.PathLike, environment: dict[str, Any] | None, complete: bool, interrupted: bool = False
) -> Results:
    """Join a run's shards; a dead process's shard still counts, and the call it died in is recorded.

    A process that died in an adapter call (its watchdog's in-flight record says
    so) adds one case to that cell: ``hung`` when the watchdog ended it (a call
    that held the GIL past its timeout), ``crashed`` otherwise; the run is then
    incomplete, since that cell's exploration was cut short.  In an ``interrupted``
    run a process may have been ended by the interrupt itself (an xdist worker
    stopped mid-call, a child killed after ignoring Ctrl-C): such a call is no
    verdict on the adapter, so it is only named among the reasons, never counted
    as crashed.
    """
    from conformance.watchdog import read_inflight

    shard_dir = Path(shard_dir)
    parts = []
    for shard in sorted(shard_dir.glob("*.json")):
        try:
            parts.append(read(shard))
        except ResultsError as error:
            warnings.warn(f"skipping unreadable results shard {shard}: {error}", stacklevel=1)
    merged = merge(parts, environment)
    merged.complete = complete and all(p.complete for p in parts) and not merged.incomplete_reasons
    for inflight in sorted(shard_dir.glob("*.inflight*")):
        if inflight.name.endswith(".traceback"):
            continue
        record = read_inflight(inflight)
        if record is not None:
            _record_death(merged, record, interrupted)
    return merged


def _record_death(results: Results, record: dict[str, Any], interrupted: bool = False) -> None:
    context = record["context"]
    cell, adapter = context.get("cell", "unknown cell"), context.get("adapter", "unknown adapter")
    status = "hung" if record["watchdog_fired"] else "crashed"
    call = f"{adapter}.{record.get('method')} on {context.get('descriptor', 'an unknown problem')}"
    if interrupted and status == "crashed":
        results.mark_incomplete(f"interrupted during a call of {call} (cell {cell}; not counted as a case)")
        return
    if status == "hung":
        what = f"a call of {call} held the GIL past its {record.get('timeout')} s timeout: the watchdog ended it"
    else:
        what = f"the process died in a call of {call}"
    failure = {"descriptor": context.get("descriptor", ""), "operation": context.get("operation", ""),
               "status": status, "reason": f"{what}\n{record['traceback']}".strip()}  # fmt: skip
    results.cell(cell, adapter).add(status, failure=failure)
    results.mark_incomplete(f"{what} (cell {cell})")


__all__ = [
    "BAD",
    "PROFILES",
    "TARGETED_PROFILES",
    "Baseline",
    "BaselineError",
    "ConformanceFailure",
    "ConformanceSession",
    "DuplicateAdapterName",
    "Entry",
    "aim",
    "merge_shards",
    "read_baseline",
    "register_profiles",
    "reproducible",
]
