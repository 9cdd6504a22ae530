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
``$CONV_CONFORMANCE_INTERRUPT_GRACE`` (``"RESEND,KILL"`` in seconds) changes the
two delays, for a CI job whose own kill comes sooner than 30 s, and for tests.

One run at a time writes a results file: the supervisor holds its lock
(:mod:`conformance.runlock`) from before the child starts until the results are
final, and a second run on the same file is refused (exit 2, naming this one's
pid).

pytest's own "usage error" and "no tests collected" (4, 5) are trusted only if the
run's private directory was never made (the plugin makes it once the options are
good, before adapters load): after that, a 4 or 5 is an adapter's ``os._exit``,
and the run is incomplete (3).  A pytest "interrupted" (2) is 130/143 only when
the supervisor itself was signalled; otherwise it came from inside: 3.

Only a supervised run survives an adapter that ends its own process
(``os._exit``) in-process: plain ``pytest --pyargs conformance.suite`` dies with
it, leaving the shards and whatever exit status the adapter chose.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

#: Exit statuses of ``conv-conformance run`` and ``fuzz``.
OK, FAILED, USAGE, INCOMPLETE, SIGINT_EXIT, SIGTERM_EXIT = 0, 1, 2, 3, 130, 143
_CHILD = (
    "import json, sys; sys.path[:] = json.loads(sys.argv.pop(1)); import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)
RESEND_AFTER = 5.0
KILL_AFTER = 30.0
#: Set for the pytest child to the supervisor's pid: the child stops itself if its supervisor dies.
SUPERVISOR_ENV = "CONV_CONFORMANCE_SUPERVISOR"
_POLL = 0.1

# pytest's own exit codes (pytest.ExitCode), without importing pytest into the supervisor.
# pytest's 2, "interrupted", is 130 or 143 only when the supervisor was signalled (see _finalize); without
# that, the interrupt came from inside (an adapter that signals its own process): an unfinished run.
_PYTEST = {0: OK, 1: FAILED, 2: INCOMPLETE, 3: INCOMPLETE, 4: USAGE, 5: USAGE}


#: The thread-count variables the backends' and numpy's thread pools read (OpenMP, OpenBLAS, MKL; PyTorch,
#: oneDNN, ONNX Runtime and XLA's CPU pools follow OMP_NUM_THREADS or their own default of every core).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_budget(workers: int, cpus: int | None = None) -> dict[str, str]:
    """The environment that gives each of ``workers`` parallel processes its share of the cores.

    Every backend sizes its thread pool to the whole machine, so N workers on N cores would run N x N
    threads: on 2 cores PyTorch's float64 backward ran 34 times slower that way than with one thread per
    worker, and the time went to spinning, not to the convolution.  Nothing is set for one worker, nor
    when the user set any of :data:`THREAD_VARIABLES` (their choice wins)."""
    if workers <= 1 or any(name in os.environ for name in THREAD_VARIABLES):
        return {}
    share = str(max(1, (cpus or os.cpu_count() or 1) // workers))
    return dict.fromkeys(THREAD_VARIABLES, share)


def watch_supervisor() -> None:
    """In the supervised child (pytest, a campaign worker): if the supervisor dies, take this process group (this
    process, its xdist workers, whatever adapters started) down rather than run on unwatched, with nobody left
    to write the results (a campaign's lease then expires, and another worker takes the cell)."""
    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if not supervisor.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(supervisor):
            time.sleep(0.5)
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="supervisor-watchdog").start()


def supervise(pytest_args: list[str], results_path: str, context: dict, *, child: str = _CHILD,
              extra_env: dict[str, str] | None = None) -> int:  # fmt: skip
    """Run the suite with ``pytest_args`` (without --results/--run-id, which are added here) and return
    the command's exit status, having made sure ``results_path`` holds this run's results.

    ``child`` is the Python code the child runs (``python -c``); another child than pytest (a campaign worker,
    :mod:`conformance.campaign_worker`) takes the same arguments and exits as pytest would."""
    from conformance.runlock import HELD_ENV, RunLock, RunLocked

    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    results_path = os.path.abspath(results_path)
    try:
        lock = RunLock.acquire(results_path)
    except RunLocked as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return USAGE
    # The child imports exactly what this process would (its sys.path, not the current directory first as
    # `python -m` would put it): from a checkout's root, `-m pytest` would import the checkout's conformance
    # package beside an installed one, and pytest refuses the two copies of the suite's test modules.
    command = [sys.executable, "-c", child, json.dumps(sys.path), *pytest_args, "--results", results_path,
               "--run-id", run_id]  # fmt: skip
    env = {**os.environ, **(extra_env or {}), SUPERVISOR_ENV: str(os.getpid()), HELD_ENV: f"{os.getpid()}:{lock.path}"}
    received: list[int] = []
    first: list[float] = []
    child: subprocess.Popen | None = None

    def on_signal(signum: int, frame: object) -> None:
        if not received:
            first.append(time.monotonic())
            _interrupt(child)
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(command, env=env, start_new_session=True)
        if received:  # a signal that came while the child was starting found no child to forward to
            _interrupt(child)
        _wait(child, first, *_grace())
        # Finalizing is the one thing a second Ctrl-C must not cut short: it is what the first one asked for.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        _kill_group(child)  # before merging: no straggler may write a shard while it is read
        return _finalize(child.returncode, results_path, run_id, received, context)
    finally:
        if child is not None:
            _kill_group(child)
        lock.release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _kill_group(child: subprocess.Popen) -> None:
    """The child's whole process group: stragglers such as xdist workers, and whatever an adapter started."""
    with contextlib.suppress(OSError):
        os.killpg(child.pid, signal.SIGKILL)


def _interrupt(child: subprocess.Popen | None) -> None:
    if child is not None and child.poll() is None:
        with contextlib.suppress(OSError):
            child.send_signal(signal.SIGINT)


def _grace() -> tuple[float, float]:
    """(resend after, kill after) in seconds: the defaults, or ``$CONV_CONFORMANCE_INTERRUPT_GRACE``."""
    import math

    value = os.environ.get("CONV_CONFORMANCE_INTERRUPT_GRACE", "")
    with contextlib.suppress(ValueError):
        resend, kill = (float(part) for part in value.split(","))
        if all(math.isfinite(x) and x > 0 for x in (resend, kill)):
            return resend, kill
    return RESEND_AFTER, KILL_AFTER


def _wait(child: subprocess.Popen, first_signal: list[float], resend_after: float, kill_after: float) -> None:
    resent = False
    while child.poll() is None:
        time.sleep(_POLL)
        if not first_signal:
            continue
        waited = time.monotonic() - first_signal[0]
        if waited > kill_after:
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGKILL)
        elif waited > resend_after and not resent:
            resent = True
            _interrupt(child)


def _finalize(returncode: int, results_path: str, run_id: str, received: list[int], context: dict) -> int:
    """This run's results (the child's, or merged here from its shards) and the exit status."""
    from conformance.faults import describe_exit
    from conformance.results import Results, environment
    from conformance.session import merge_shards

    code = _PYTEST.get(returncode, INCOMPLETE)
    shard_dir = Path(f"{results_path}.shards") / run_id
    written = _own_results(results_path, run_id)
    # pytest's usage error, and nothing ran: the plugin makes the run's directory only once the options are
    # good, just before adapters load.  With the directory there, a 4 or 5 is an adapter's os._exit.
    if code == USAGE and not received and written is None and not shard_dir.exists():
        if returncode == 5:  # pytest's "no tests collected": its own line says only "N deselected"
            print("conv-conformance: no suite test matched the selection (-k, --cell, --adapter): nothing was run or "
                  "written", file=sys.stderr)  # fmt: skip
        return USAGE  # pytest has said why
    if written is None:
        # After an interrupt, a call the group's kill cut short is no crash of the adapter's.
        merged = Results()
        if shard_dir.is_dir():
            merged = merge_shards(shard_dir, None, complete=False, interrupted=bool(received))
        if not merged.environment:
            merged.environment = environment(context.get("profile", "?"), None, {}, context.get("command", ""))
        merged.run_id = run_id
        merged.mark_incomplete(f"the pytest process {describe_exit(returncode)} before the run finished")
        if received:
            merged.mark_incomplete(f"interrupted by {signal.Signals(received[0]).name}")
        merged.finished = None
        merged.write(results_path)
        _remove(shard_dir)
        complete, code = False, INCOMPLETE
    else:
        complete = written.get("complete") is True
    if received:
        return SIGTERM_EXIT if received[0] == signal.SIGTERM else SIGINT_EXIT
    if not complete and code in (OK, FAILED):
        return INCOMPLETE
    return code


def _own_results(results_path: str, run_id: str) -> dict | None:
    """The results file as JSON if this run's child wrote it (its run id), else None.  Read raw, not through
    the schema: the file is the child's, and a field a reader would reject must not make the supervisor
    replace the child's whole results with what the shards (already merged and removed) held."""
    import json

    try:
        data = json.loads(Path(results_path).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("run_id") == run_id else None


def _remove(shard_dir: Path) -> None:
    import shutil

    shutil.rmtree(shard_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        shard_dir.parent.rmdir()


__all__ = ["FAILED", "INCOMPLETE", "OK", "SIGINT_EXIT", "SIGTERM_EXIT", "SUPERVISOR_ENV", "USAGE", "supervise"]
