"""The pytest plugin (entry point ``pytest11: conv_conformance``): options, profiles, results.

A thin plugin in the manner of pytest-randomly and pytest-xdist: options in one
group, parsers that raise ``pytest.UsageError``, profiles registered in
``pytest_configure`` (nothing happens on import), heavy imports deferred into
hooks, the real work in :mod:`conformance.session` and :mod:`conformance.runner`.

A run that did not finish is never complete.  The plugin knows what was
selected (the collected items; under pytest-xdist, what each worker collected)
and what finished (an item whose teardown was reported by a live process); a
worker that died, an adapter that could not be run, a process that died in an
adapter call (its watchdog record, see :mod:`conformance.watchdog`) or an
interrupt each leave ``"complete": false`` with the reason, and the exit status
becomes 3 (:data:`INCOMPLETE`) where it would have been 0 or 1.  SIGTERM is
treated as Ctrl-C.  Shards live in a directory private to the run, named by a
run id (``--run-id``, which ``conv-conformance run`` sets), and are removed
once merged; one run at a time may write a results file (:mod:`conformance.runlock`).
A run that ran nothing because of bad usage (a bad ``-k``, or one that selects
nothing) writes no results file: it must not replace a good one with nothing.

Plain ``pytest --pyargs conformance.suite --adapter ...`` gets all of this
except one thing: an adapter that ends the process itself (``os._exit`` at
import, in ``__init__`` or in a call, in-process) takes pytest with it, so
nothing is left to write the results or choose the exit status.  Only the
supervised ``conv-conformance run`` (:mod:`conformance.supervisor`) catches
that, or ``--isolate``, where the adapter lives in a worker process.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import sys
import threading
import uuid
from pathlib import Path

import pytest

from conformance.session import PROFILES
from conformance.supervisor import SUPERVISOR_ENV, watch_supervisor  # SUPERVISOR_ENV: set by ``conv-conformance run``

_SESSION_KEY = pytest.StashKey["object"]()
_RUN_KEY = pytest.StashKey["object"]()
#: The exit status of a run that did not finish (the same number as pytest's internal error, which is one).
INCOMPLETE = 3
#: The most examples per cell a run may ask for: a bigger budget never finishes, it only looks like it might.
MAX_EXAMPLES = 1_000_000


def _seconds(value: str, option: str = "--case-timeout") -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise pytest.UsageError(f"{option}={value!r}, but should be a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise pytest.UsageError(f"{option}={value!r}, but should be a positive, finite number")
    return seconds


def _timeout(value: str) -> float:
    return _seconds(value, "--case-timeout")


def _startup_timeout(value: str) -> float:
    return _seconds(value, "--startup-timeout")


def _minutes(value: str) -> float:
    return _seconds(value, "--time-budget")


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise pytest.UsageError(f"--max-examples={value!r}, but should be a positive whole number")
    if n > MAX_EXAMPLES:
        raise pytest.UsageError(f"--max-examples={value!r} is too large to finish: at most {MAX_EXAMPLES:,} per cell")
    return n


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conv-conformance", "convolution conformance")
    group.addoption("--adapter", action="append", default=None, metavar="NAME",
                    help="adapter under test (repeatable): a built-in, an entry point, or module:Class")  # fmt: skip
    group.addoption("--conformance-profile", choices=PROFILES, default="ci",
                    help="ci: derandomized, fixed budget, no database; dev; fuzz: long, database on")  # fmt: skip
    group.addoption("--baseline", metavar="FILE", default=None,
                    help="known discrepancies: a baseline file of per-case entries (or an earlier results file)")
    group.addoption("--cell", action="append", default=None, metavar="GLOB",
                    help="run only the cells whose id matches (repeatable), e.g. 'backward/1d/*'")  # fmt: skip
    group.addoption("--results", metavar="FILE", default=None, help="write the results file here")
    group.addoption("--isolate", action="store_true", default=False,
                    help="run the whole adapter in a child process, so a crash is recorded, not fatal")  # fmt: skip
    group.addoption("--time-budget", type=_minutes, default=None, metavar="MINUTES",
                    help="stop exploring once this much time has passed (cells left are listed as not reached)")
    group.addoption("--case-timeout", type=_timeout, default=60.0, metavar="SECONDS",
                    help="a candidate call taking longer is recorded as hung")  # fmt: skip
    group.addoption("--startup-timeout", type=_startup_timeout, default=300.0, metavar="SECONDS",
                    help="with --isolate: loading the adapter in its worker process taking longer is hung")
    group.addoption("--max-examples", type=_positive, default=None, metavar="N",
                    help="examples per cell, instead of the profile's")  # fmt: skip
    group.addoption("--run-id", default=None, metavar="ID", help="name of this run's private shard directory "
                    "(conv-conformance run sets it; default: a fresh one)")  # fmt: skip


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_worker(config) and bool(getattr(config.option, "numprocesses", None))


def _uses_suite(config: pytest.Config) -> bool:
    return bool(config.getoption("--adapter")) or config.getoption("--results") is not None


class _Run:
    """What the controller (or the single process) knows about the run as a whole: a plugin object,
    registered in ``pytest_configure``, that sees every test's reports (a worker's included)."""

    def __init__(self, results_path: str | None) -> None:
        self.results_path = results_path
        self.selected: set[str] = set()
        self.finished: set[str] = set()
        self.dead_workers: list[str] = []
        self.signal: int | None = None
        #: the run's final results (merged), for the terminal summary
        self.final = None
        self.lock = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected.update(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        self.selected.update(ids)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        if error:
            self.dead_workers.append(f"worker {node.gateway.id} died: {str(error).strip().splitlines()[-1]}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # A crashed worker's item arrives with when="???": it never finished.
        if report.when == "teardown":
            self.finished.add(report.nodeid)


def _results_path(config: pytest.Config) -> str | None:
    """``--results`` as an absolute path, checked before any adapter is loaded (a usage error, not a traceback
    after the run): an adapter that changes directory cannot move it."""
    results = config.getoption("--results")
    if results is None:
        return None
    if not results.strip():
        raise pytest.UsageError("--results is empty: give the results file's path")
    path = os.path.abspath(results)
    from conformance.results import same_file, unwritable

    why = unwritable(path)
    if why:
        raise pytest.UsageError(f"--results={results!r} {why}")
    baseline = config.getoption("--baseline")
    if baseline and same_file(baseline, path):
        raise pytest.UsageError(f"--results={results!r} is the --baseline file: the run would overwrite its baseline")
    return path


def pytest_configure(config: pytest.Config) -> None:
    from hypothesis import settings

    from conformance.baseline import Baseline, read_baseline
    from conformance.faults import AdapterLoadError
    from conformance.session import ConformanceSession, DuplicateAdapterName, register_profiles

    config.addinivalue_line("markers", "conformance: a conv-conformance suite test")
    register_profiles()
    if not _uses_suite(config):
        return
    results = _results_path(config)
    profile = f"conv-conformance-{config.getoption('--conformance-profile')}"
    if config.getoption("--max-examples"):
        settings.register_profile(f"{profile}-n", parent=settings.get_profile(profile),
                                  max_examples=config.getoption("--max-examples"))  # fmt: skip
        profile += "-n"
    settings.load_profile(profile)
    baseline = Baseline()
    if config.getoption("--baseline"):
        try:
            baseline = read_baseline(config.getoption("--baseline"))
        except (ValueError, RecursionError) as error:
            raise pytest.UsageError(str(error)) from None
    if _is_worker(config):
        run_id, shard_dir = config.workerinput["conformance_run_id"], config.workerinput["conformance_shard_dir"]
        shard = config.workerinput["workerid"]
    else:
        run_id = config.getoption("--run-id") or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shard_dir = f"{results}.shards{os.sep}{run_id}" if results else None
        shard = "main"
        config.stash[_RUN_KEY] = _Run(results)
        config.pluginmanager.register(config.stash[_RUN_KEY], "conv-conformance-run")
        _lock_results(config, results)
        _install_signal_handlers(config)
        watch_supervisor()
        if shard_dir is not None:
            # Made before any adapter loads: its existence tells the supervisor that the options were good and
            # the run began, so a child that then exits 4 or 5 (an adapter's os._exit) is not taken for
            # pytest's own usage error.  Removed again below if the adapter cannot even be loaded.
            os.makedirs(shard_dir, exist_ok=True)
    try:
        state = ConformanceSession(
            config.getoption("--adapter") or ["torch"],
            profile=config.getoption("--conformance-profile"),
            shard_dir=shard_dir,
            shard_name=shard,
            run_id=run_id,
            baseline=baseline,
            timeout=config.getoption("--case-timeout"),
            startup_timeout=config.getoption("--startup-timeout"),
            isolate=config.getoption("--isolate"),
            command=shlex.join(sys.argv),
            time_budget=config.getoption("--time-budget"),
            seed=_seed(config),
            max_examples=settings().max_examples,
        )
    except DuplicateAdapterName as error:
        if not _is_worker(config) and shard_dir is not None:
            _remove_shards(Path(shard_dir))
        _unlock(config)
        raise pytest.UsageError(f"--adapter: {error}") from None
    except (AdapterLoadError, SystemExit) as error:
        # SystemExit: an adapter module that calls sys.exit() as it is imported cannot be loaded either.
        if not _is_worker(config) and shard_dir is not None:
            _remove_shards(Path(shard_dir))
        _unlock(config)
        if isinstance(error, SystemExit):
            raise pytest.UsageError(f"--adapter: loading an adapter called sys.exit({error.code!r})") from None
        # One line (the first of the message); the frames only with -v.
        text = str(error) if config.getoption("verbose") > 0 else str(error).splitlines()[0]
        raise pytest.UsageError(f"--adapter: {text}") from None
    config.stash[_SESSION_KEY] = state
    if _is_xdist_controller(config):
        state.close()  # the controller runs no tests: its isolated workers (if any) go now


def _lock_results(config: pytest.Config, results: str | None) -> None:
    """Refuse to run if another live run is writing this results file (one line naming its pid); the lock is
    held until pytest_unconfigure, after the results are written.  Under ``conv-conformance run`` the
    supervisor holds it for us."""
    from conformance.runlock import RunLock, RunLocked, held_for_us

    if results is None or held_for_us(results):
        return
    try:
        config.stash[_RUN_KEY].lock = RunLock.acquire(results)
    except RunLocked as error:
        raise pytest.UsageError(str(error)) from None


def _unlock(config: pytest.Config) -> None:
    run = config.stash.get(_RUN_KEY, None)
    if run is not None and run.lock is not None:
        run.lock.release()


def pytest_unconfigure(config: pytest.Config) -> None:
    _unlock(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: every worker writes its shard into this run's private directory."""
    state = node.config.stash.get(_SESSION_KEY, None)
    if state is not None:
        node.workerinput["conformance_run_id"] = state.results.run_id
        node.workerinput["conformance_shard_dir"] = None if state.shard_dir is None else str(state.shard_dir)


def _install_signal_handlers(config: pytest.Config) -> None:
    """SIGTERM (what CI runners and ``timeout`` send) stops the run as Ctrl-C does; both are remembered, so
    that an interrupt swallowed on its way (in a garbage-collector callback, say) is raised again at the
    next test or example."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        run = config.stash.get(_RUN_KEY, None)
        if run is not None and run.signal is None:
            run.signal = signum
        state = config.stash.get(_SESSION_KEY, None)
        if state is not None and state.stop_signal is None:
            state.stop_signal = signum  # the session raises it again at its next example
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def interrupted(config: pytest.Config) -> bool:
    run = config.stash.get(_RUN_KEY, None)
    return run is not None and run.signal is not None


def _seed(config: pytest.Config) -> str | None:
    """None for the derandomized ci profile; else Hypothesis's --hypothesis-seed, or 'random'."""
    if config.getoption("--conformance-profile") == "ci":
        return None
    seed = config.getoption("hypothesis_seed", None)
    return "random" if seed is None else str(seed)


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
        state = metafunc.config.stash.get(_SESSION_KEY, None)
        # Declared names: a wrapped or re-registered adapter keeps its test ids and baseline entries.
        names = state.adapter_names if state is not None else (metafunc.config.getoption("--adapter") or ["torch"])
        metafunc.parametrize("adapter_name", names, ids=names)


def cell_id_of(item: pytest.Item) -> str | None:
    """The conformance cell a collected test explores: its module's ``cell_of(params)``, or None."""
    cell_of = getattr(getattr(item, "module", None), "cell_of", None)
    callspec = getattr(item, "callspec", None)
    if cell_of is None or callspec is None:
        return None
    return str(cell_of(callspec.params))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--cell GLOB``: keep the suite's tests whose cell id matches a glob (anchored, unlike ``-k``:
    ``backward/1d/*`` is not ``transposed-backward/1d/*``); tests that explore no cell are left alone."""
    import fnmatch

    patterns = config.getoption("--cell")
    if not patterns:
        return
    keep, drop, used = [], [], set()
    for item in items:
        cell = cell_id_of(item)
        matched = [p for p in patterns if cell is not None and fnmatch.fnmatchcase(cell, p)]
        used.update(matched)
        (drop if cell is not None and not matched else keep).append(item)
    unused = [p for p in patterns if p not in used]
    if unused and not _is_worker(config) and any(cell_id_of(i) for i in items):
        raise pytest.UsageError(f"--cell {unused[0]!r} matches no cell of the suite (cell ids look like "
                                "'forward/2d/float32/same'; globs: *, ?, [...])")  # fmt: skip
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_setup(item: pytest.Item) -> None:
    if interrupted(item.config):
        raise KeyboardInterrupt("interrupted earlier")  # the first one was swallowed somewhere
    state = item.config.stash.get(_SESSION_KEY, None)
    callspec = getattr(item, "callspec", None)
    if state is None or callspec is None:
        return
    broken = state.broken.get(callspec.params.get("adapter_name"))
    if broken is not None:
        pytest.skip(f"adapter cannot be run ({broken.status}): {broken.message.splitlines()[0]}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        return []
    lines = [f"conv-conformance: profile {session.profile}, adapters {', '.join(session.adapter_names)}"]
    for name, versions in session.results.environment.get("backends", {}).items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_SESSION_KEY, None)
    if state is None:
        return
    # Writing the results is the one thing a second Ctrl-C must not cut short.
    previous = _ignore_signals()
    try:
        _finish(session, state, exitstatus)
    finally:
        state.close()
        _restore_signals(previous)


def _finish(session: pytest.Session, state, exitstatus: int) -> None:
    from conformance.results import now
    from conformance.session import merge_shards

    if exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED) and not state.seen_cells:
        # A bad -k, or one that selects nothing: bad usage, and nothing ran.  Writing an empty results file
        # would replace a good one with nothing; the run's directory goes, so the supervisor knows it too.
        if not _is_worker(session.config) and state.shard_dir is not None:
            _remove_shards(state.shard_dir)
        return
    stopped = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR) or interrupted(
        session.config
    )
    state.write_shard(complete=not stopped)
    if _is_worker(session.config):
        return
    run = session.config.stash[_RUN_KEY]
    merged = None
    if state.shard_dir is not None:
        merged = merge_shards(state.shard_dir, state.results.environment, complete=not stopped, interrupted=stopped)
        merged.run_id = state.results.run_id
        for name, error in state.results.adapter_errors.items():
            merged.adapter_errors[name] = error
        for reason in state.results.incomplete_reasons:
            merged.mark_incomplete(reason)
    final = merged if merged is not None else state.results
    if state.baseline:
        final.baseline = state.baseline.summary(final, state.adapter_names)
    reasons = _incomplete_reasons(run, stopped)
    if merged is not None:
        for reason in reasons:
            merged.mark_incomplete(reason)
        merged.complete = not merged.incomplete_reasons
        merged.finished = now()
        merged.write(run.results_path)
        _remove_shards(state.shard_dir)
    complete = not reasons and not (merged.incomplete_reasons if merged else state.results.incomplete_reasons)
    run.final = final
    if interrupted(session.config) and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        # The interrupt was swallowed and the last test finished anyway: still an interrupted run.
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    elif not complete and not stopped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = INCOMPLETE


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Say why a run is incomplete, which adapters could not be run, and what a time budget left out: a skip
    line per test is easy to miss."""
    run = config.stash.get(_RUN_KEY, None)
    final = getattr(run, "final", None)
    if final is None:
        return
    from conformance.results import summary_lines

    for line in summary_lines(final):
        terminalreporter.write_line(line, red=line.startswith("INCOMPLETE") or line.startswith("  adapter"))


def _incomplete_reasons(run: _Run, stopped: bool) -> list[str]:
    reasons = []
    if run.signal is not None:
        reasons.append(f"interrupted by {signal.Signals(run.signal).name}")
    elif stopped:
        reasons.append("interrupted")
    reasons += run.dead_workers
    missing = run.selected - run.finished
    if missing and not stopped:
        first = sorted(missing)[0]
        reasons.append(f"{len(missing)} of {len(run.selected)} selected tests did not finish (e.g. {first})")
    return reasons


def _remove_shards(shard_dir: Path) -> None:
    """The run's shards are merged: its private directory goes, and the shards directory if it is empty."""
    shutil.rmtree(shard_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        shard_dir.parent.rmdir()


def _ignore_signals() -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


__all__ = ["INCOMPLETE", "MAX_EXAMPLES", "SUPERVISOR_ENV", "cell_id_of", "conformance", "interrupted", "session_of"]
