"""Where a ci run's time goes, stage by stage (``suite_bench.py --profile-stages``).

Runs the suite in this process (one worker, as an xdist worker runs its share)
with timers wrapped around the functions that make up each stage, and prints
each stage's own time: a stage's timer stops while a nested stage's runs, so
the stages add up to the run.  The timers cost about a microsecond a call; what
they cannot see (Hypothesis's engine between draws and test calls, pytest
between tests) is named for the function that contains it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

#: (stage, what it is), in the order printed
STAGES = (
    ("start-up", "imports, adapter load and probes, collection: until the first test"),
    ("pytest + plugin", "per-test hooks, reports, the session's own bookkeeping between tests"),
    ("strategy construction", "building each cell's Hypothesis strategy (conv_specs, invalid_conv_specs)"),
    ("hypothesis engine", "Hypothesis's engine around the examples: choice tree, mutations, its per-test set-up"),
    ("hypothesis draws", "drawing each example from the strategy (ConvSpec construction included)"),
    ("shrinking", "shrinking unexplained failures (expected failures do not shrink)"),
    ("data recipe", "make_inputs / make_grad_output"),
    ("candidate", "inside the adapter (the time the results file records)"),
    ("call guard", "the adapter call around the adapter: copies, modification check, thread hand-off, watchdog"),
    ("oracle + verdict", "float64 oracle, tolerance, requirement (runner._judge)"),
    ("failure evidence", "repro scripts and heatmaps of failing cases"),
    ("case bookkeeping", "run_case's own work, the session's judge (baseline matching), case attributes"),
    ("shard writes", "the process's results shard, written after every cell"),
)


class StageTimer:
    """Exclusive wall time per stage over nested, main-thread calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._nested: list[float] = []

    def enter(self) -> float:
        self._nested.append(0.0)
        return time.perf_counter()

    def leave(self, stage: str, start: float) -> None:
        elapsed = time.perf_counter() - start
        self.seconds[stage] += elapsed - self._nested.pop()
        if self._nested:
            self._nested[-1] += elapsed

    def wrap(self, stage: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self.enter()
            try:
                return function(*args, **kwargs)
            finally:
                self.leave(stage, start)

        return timed

    def patch(self, monkeypatch: pytest.MonkeyPatch, stage: str, owner: Any, name: str) -> None:
        monkeypatch.setattr(owner, name, self.wrap(stage, getattr(owner, name)))


class _Hooks:
    """When the first test starts, and the test functions (what no stage claims in them is Hypothesis's)."""

    def __init__(self, timer: StageTimer) -> None:
        self.timer = timer
        self.started = time.perf_counter()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        self.timer.seconds["start-up"] = time.perf_counter() - self.started
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Item) -> Any:
        start = self.timer.enter()
        try:
            return (yield)
        finally:
            self.timer.leave("hypothesis engine", start)


def profile_stages(adapter: str = "torch") -> dict[str, Any]:
    """Run the ci suite in-process on ``adapter``; the stage seconds, the wall time and the examples run."""
    from hypothesis.control import BuildContext
    from hypothesis.internal.conjecture.shrinker import Shrinker

    import conformance.coverage
    import conformance.invalid_strategies
    import conformance.runner
    import conformance.strategies
    import conformance.valid_strategies
    from conformance.cli import DEFAULT_BASELINE, SUITE
    from conformance.faults import AdapterCaller
    from conformance.session import ConformanceSession

    timer = StageTimer()
    candidate: list[float] = []
    call = AdapterCaller.call

    def adapter_call(self: Any, method: str, *args: Any) -> Any:
        outcome = call(self, method, *args)
        candidate.append(outcome.seconds)
        return outcome

    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        for module in (conformance.valid_strategies, conformance.invalid_strategies, conformance.strategies):
            for name in ("conv_specs", "invalid_conv_specs"):
                if hasattr(module, name):
                    timer.patch(mp, "strategy construction", module, name)
        timer.patch(mp, "hypothesis draws", BuildContext, "prep_args_kwargs_from_strategies")
        timer.patch(mp, "shrinking", Shrinker, "shrink")
        for name in ("make_inputs", "make_grad_output"):
            timer.patch(mp, "data recipe", conformance.runner, name)
        mp.setattr(AdapterCaller, "call", timer.wrap("call guard", adapter_call))
        timer.patch(mp, "oracle + verdict", conformance.runner, "_judge")
        for name in ("_repro", "heatmap"):
            timer.patch(mp, "failure evidence", conformance.runner, name)
        for owner, name in ((conformance.runner, "run_case"), (conformance.runner, "run_invalid_case"),
                            (ConformanceSession, "judge"), (conformance.coverage, "case_attributes")):  # fmt: skip
            timer.patch(mp, "case bookkeeping", owner, name)
        timer.patch(mp, "shard writes", ConformanceSession, "write_shard")
        results = Path(tmp) / "results.json"
        mp.chdir(tmp)  # as suite_bench runs it: no project's pytest configuration applies
        hooks = _Hooks(timer)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            pytest.main([SUITE, "-p", "no:cacheprovider", "-q", "--conformance-profile", "ci", "--adapter", adapter,
                         "--baseline", DEFAULT_BASELINE, "--results", str(results)], plugins=[hooks])  # fmt: skip
        wall = time.perf_counter() - hooks.started
        data = json.loads(results.read_text())
    stages = dict(timer.seconds)
    stages["candidate"] = sum(candidate)
    stages["call guard"] = stages.get("call guard", 0.0) - stages["candidate"]
    stages["pytest + plugin"] = wall - sum(v for k, v in stages.items() if k != "pytest + plugin")
    examples = sum(sum(c["counts"].values()) - c["counts"].get("unsupported", 0) for c in data["cells"])
    return {"wall": wall, "examples": examples, "stages": stages}


def print_stages(profile: dict[str, Any]) -> None:
    wall, cases = profile["wall"], profile["examples"]
    print(f"stages of one in-process worker: {cases} examples in {wall:.1f} s ({cases / wall:.1f} examples/s)")
    print(f"{'stage':<24}{'seconds':>9}{'share':>8}{'us/example':>12}  what")
    for stage, what in STAGES:
        seconds = profile["stages"].get(stage, 0.0)
        print(f"{stage:<24}{seconds:>9.2f}{100 * seconds / wall:>7.1f}%{1e6 * seconds / max(cases, 1):>12.0f}  {what}")
    harness = wall - profile["stages"].get("candidate", 0.0) - profile["stages"].get("oracle + verdict", 0.0)
    inside = wall - harness
    print(f"overhead ratio of this worker: {wall / inside:.2f} (wall / time inside candidate + oracle)")


__all__ = ["STAGES", "StageTimer", "print_stages", "profile_stages"]


if __name__ == "__main__":
    print_stages(profile_stages())
