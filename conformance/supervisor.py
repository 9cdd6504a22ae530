"""The supervised run behind ``conv-conformance run`` and ``fuzz``: pytest in a child process, watched.

The command's own process never imports an adapter.  It starts the suite
(``python -m pytest ...``) as the leader of a new process group, and whatever
happens there (an adapter calls ``os._exit(0)`` at import, in ``__init__`` or in
``forward``; a segfault; the in-process watchdog ends a hung call; the
out-of-memory killer) it finalizes the run itself: if the child did not write
this run's results file (told apart by the run id it was given), the
supervisor merges the run's shards, records why the run is incomplete, writes
the results, and the exit status is never 0.  At the end the whole process
group goes, so nothing an adapter started outlives the run.

Signals: SIGINT and SIGTERM to the supervisor both reach the child as one
SIGINT (the child writes what it gathered, marked incomplete).  A child still
running :data:`RESEND_AFTER` seconds later gets another (an interrupt can be
swallowed in a garbage-collector callback, or by a backend); one still running
:data:`KILL_AFTER` seconds later is killed with its group, and the supervisor
writes the results from the shards.  A terminal's Ctrl-C reaches the supervisor
only (the child is in its own group), so one press is one interrupt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

#: Exit statuses of ``conv-conformance run`` and ``fuzz``.
OK, FAILED, USAGE, INCOMPLETE, SIGINT_EXIT, SIGTERM_EXIT = 0, 1, 2, 3, 130, 143
RESEND_AFTER = 5.0
KILL_AFTER = 30.0
_POLL = 0.1

# pytest's own exit codes (pytest.ExitCode), without importing pytest into the supervisor.
_PYTEST = {0: OK, 1: FAILED, 2: SIGINT_EXIT, 3: INCOMPLETE, 4: USAGE, 5: USAGE}


def supervise(pytest_args: list[str], results_path: str, context: dict) -> int:
    """Run the suite with ``pytest_args`` (without --results/--run-id, which are added here) and return
    the command's exit status, having made sure ``results_path`` holds this run's results."""
    from conformance.plugin import SUPERVISOR_ENV

    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    results_path = os.path.abspath(results_path)
    command = [sys.executable, "-m", "pytest", *pytest_args, "--results", results_path, "--run-id", run_id]
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    received: list[int] = []

    first: list[float] = []

    def on_signal(signum: int, frame: object) -> None:
        if not received:
            first.append(time.monotonic())
            if child is not None and child.poll() is None:
                with contextlib.suppress(OSError):
                    child.send_signal(signal.SIGINT)
        received.append(signum)

    child = None
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(command, env=env, start_new_session=True)
        _wait(child, first)
    finally:
        if child is not None:
            with contextlib.suppress(OSError):  # stragglers: xdist workers, whatever an adapter started
                os.killpg(child.pid, signal.SIGKILL)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _finalize(child.returncode, results_path, run_id, received, context)


def _wait(child: subprocess.Popen, first_signal: list[float]) -> None:
    resent = False
    while child.poll() is None:
        time.sleep(_POLL)
        if not first_signal:
            continue
        waited = time.monotonic() - first_signal[0]
        if waited > KILL_AFTER:
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGKILL)
        elif waited > RESEND_AFTER and not resent:
            resent = True
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGINT)


def _finalize(returncode: int, results_path: str, run_id: str, received: list[int], context: dict) -> int:
    """This run's results (the child's, or merged here from its shards) and the exit status."""
    from conformance.faults import describe_exit
    from conformance.results import Results, ResultsError, environment, read
    from conformance.session import merge_shards

    code = _PYTEST.get(returncode, INCOMPLETE)
    if code == USAGE and not received:
        return USAGE  # nothing ran; pytest has said why
    results = None
    with contextlib.suppress(ResultsError, RecursionError):
        results = read(results_path)
    if results is None or results.run_id != run_id:
        shard_dir = Path(f"{results_path}.shards") / run_id
        merged = merge_shards(shard_dir, None, complete=False) if shard_dir.is_dir() else Results()
        if not merged.environment:
            merged.environment = environment(context.get("profile", "?"), None, {}, context.get("command", ""))
        merged.run_id = run_id
        merged.mark_incomplete(f"the pytest process {describe_exit(returncode)} before the run finished")
        if received:
            merged.mark_incomplete(f"interrupted by {signal.Signals(received[0]).name}")
        merged.finished = None
        merged.write(results_path)
        _remove(shard_dir)
        results = merged
        code = INCOMPLETE
    if received:
        return SIGTERM_EXIT if received[0] == signal.SIGTERM else SIGINT_EXIT
    if not results.complete and code in (OK, FAILED):
        return INCOMPLETE
    return code


def _remove(shard_dir: Path) -> None:
    import shutil

    shutil.rmtree(shard_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        shard_dir.parent.rmdir()


__all__ = ["FAILED", "INCOMPLETE", "OK", "SIGINT_EXIT", "SIGTERM_EXIT", "USAGE", "supervise"]
