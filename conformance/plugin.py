"""The pytest plugin (entry point ``pytest11: conv_conformance``): options, profiles, results.

A thin plugin in the manner of pytest-randomly and pytest-xdist: options in one
group with one prefix-free set of names, profiles registered in
``pytest_configure`` (nothing happens on import), heavy imports deferred into
hooks, the real work in :mod:`conformance.session` and :mod:`conformance.runner`.

Under pytest-xdist each worker writes its own shard of the results after every
cell; the controller merges them at the end, so a worker that dies loses at most
the cell it was running.  An interrupted run (Ctrl-C) still writes what it has,
marked ``"complete": false``.
"""

from __future__ import annotations

import shlex
import sys
import warnings
from pathlib import Path

import pytest

from conformance.session import PROFILES

_SESSION_KEY = pytest.StashKey["object"]()


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise pytest.UsageError(f"--case-timeout={value!r}, but should be a number of seconds") from None
    if seconds <= 0:
        raise pytest.UsageError(f"--case-timeout={value!r}, but should be positive")
    return seconds


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conv-conformance", "convolution conformance")
    group.addoption("--adapter", action="append", default=None, metavar="NAME",
                    help="adapter under test (repeatable): a built-in, an entry point, or module:Class")  # fmt: skip
    group.addoption("--conformance-profile", choices=PROFILES, default="ci",
                    help="ci: derandomized, fixed budget, no database; dev; fuzz: long, database on")  # fmt: skip
    group.addoption("--baseline", metavar="FILE", default=None,
                    help="expected failures by cell id (a baseline file, or an earlier results file)")  # fmt: skip
    group.addoption("--results", metavar="FILE", default=None, help="write the results file here")
    group.addoption("--isolate", action="store_true", default=False,
                    help="run adapter calls in a child process, so a crash is recorded, not fatal")  # fmt: skip
    group.addoption("--time-budget", type=float, default=None, metavar="MINUTES",
                    help="stop exploring once this much time has passed (cells left are skipped)")  # fmt: skip
    group.addoption("--case-timeout", type=_timeout, default=60.0, metavar="SECONDS",
                    help="a candidate call taking longer is recorded as hung")  # fmt: skip
    group.addoption("--max-examples", type=_positive, default=None, metavar="N",
                    help="examples per cell, instead of the profile's")  # fmt: skip


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise pytest.UsageError(f"--max-examples={value!r}, but should be a positive whole number")
    return n


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _uses_suite(config: pytest.Config) -> bool:
    return bool(config.getoption("--adapter")) or bool(config.getoption("--results"))


def pytest_configure(config: pytest.Config) -> None:
    from hypothesis import settings

    from conformance.baseline import read_baseline
    from conformance.session import ConformanceSession, register_profiles

    config.addinivalue_line("markers", "conformance: a conv-conformance suite test")
    register_profiles()
    if not _uses_suite(config):
        return
    profile = f"conv-conformance-{config.getoption('--conformance-profile')}"
    if config.getoption("--max-examples"):
        settings.register_profile(f"{profile}-n", parent=settings.get_profile(profile),
                                  max_examples=config.getoption("--max-examples"))  # fmt: skip
        profile += "-n"
    settings.load_profile(profile)
    baseline = {}
    if config.getoption("--baseline"):
        try:
            baseline = read_baseline(config.getoption("--baseline"))
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
    adapters = config.getoption("--adapter") or ["torch"]
    try:
        from adapters.registry import load_adapter

        for name in adapters:
            load_adapter(name)
    except (ValueError, ImportError) as error:
        raise pytest.UsageError(f"--adapter: {error}") from None
    results = config.getoption("--results")
    shard = config.workerinput["workerid"] if _is_worker(config) else ("main" if results else None)
    if results and not _is_worker(config):
        _clear_shards(results)
    config.stash[_SESSION_KEY] = ConformanceSession(
        adapters,
        profile=config.getoption("--conformance-profile"),
        results_path=results,
        shard_name=shard,
        baseline=baseline,
        timeout=config.getoption("--case-timeout"),
        isolate=config.getoption("--isolate"),
        command=shlex.join(sys.argv),
        time_budget=config.getoption("--time-budget"),
        seed=_seed(config),
        max_examples=settings().max_examples,
    )


def _seed(config: pytest.Config) -> str | None:
    """None for the derandomized ci profile; else Hypothesis's --hypothesis-seed, or 'random'."""
    if config.getoption("--conformance-profile") == "ci":
        return None
    seed = config.getoption("hypothesis_seed", None)
    return "random" if seed is None else str(seed)


def _clear_shards(results: str) -> None:
    shard_dir = Path(f"{results}.shards")
    if shard_dir.is_dir():
        for old in shard_dir.glob("*.json"):
            old.unlink()


def session_of(config: pytest.Config):
    try:
        return config.stash[_SESSION_KEY]
    except KeyError:
        raise pytest.UsageError("the conformance suite needs --adapter (and optionally --results)") from None


@pytest.fixture
def conformance(request: pytest.FixtureRequest):
    """The run's :class:`~conformance.session.ConformanceSession`."""
    return session_of(request.config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "adapter_name" in metafunc.fixturenames:
        names = metafunc.config.getoption("--adapter") or ["torch"]
        metafunc.parametrize("adapter_name", names, ids=names)


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        return []
    lines = [f"conv-conformance: profile {session.profile}, adapters {', '.join(session.adapter_names)}"]
    for name, versions in session.results.environment.get("backends", {}).items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from conformance.baseline import matches_any
    from conformance.results import now
    from conformance.session import merge_shards

    state = session.config.stash.get(_SESSION_KEY, None)
    if state is None:
        return
    complete = exitstatus not in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
    state.write_shard(complete=complete)
    if not _is_worker(session.config):
        ran = state.seen_cells
        if state.results_path:
            merged = merge_shards(state.results_path, state.results.environment, complete)
            merged.finished = now()
            merged.write(state.results_path)
            ran = set(merged.cells)
        for cell, adapter in state.baseline:
            if adapter in state.adapter_names and not matches_any(cell, adapter, ran):
                warnings.warn(f"baseline entry matches no cell that ran: {cell} [{adapter}]", stacklevel=1)
    state.close()


__all__ = ["conformance", "session_of"]
