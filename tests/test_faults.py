"""AdapterCaller: each way a backend can misbehave ends in its Outcome, in-process and isolated.

The faulty adapters are in :mod:`tests.faulty_adapters`; those that hang or take
their process down do so only on a batched problem, so one caller can show that
it recovers on the next, unbatched, one.  Timeouts are a second or so to keep
this module fast; the slack allowed above them covers a loaded CI machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conformance import oracle, tolerance
from conformance.faults import AdapterCaller, AdapterLoadError, Outcome, describe_exit
from conformance.formats import is_representable
from conformance.spec import ConvSpec
from tests import faulty_adapters

ROOT = Path(__file__).resolve().parent.parent
SPEC = ConvSpec(2, 3, (6, 5), (3, 2), padding=((1, 0), (0, 1)), dtype="float16")
BATCHED = SPEC.replace(batch=2)  # the problem the process-level faults fire on
SLACK = 1.5  # seconds allowed beyond a timeout before the caller must have answered


def ref(name: str) -> str:
    return f"tests.faulty_adapters:{name}"


def args(spec: ConvSpec = SPEC) -> tuple:
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, spec.input_shape).astype(np.float64)
    w = rng.integers(-2, 3, spec.weight_shape).astype(np.float64)
    return spec, x, w, np.arange(spec.out_channels, dtype=np.float64)


@pytest.fixture
def release():
    """Sets tests.faulty_adapters.RELEASE at the end, so that an in-process spinning call stops burning CPU."""
    faulty_adapters.RELEASE.clear()
    yield faulty_adapters.RELEASE
    faulty_adapters.RELEASE.set()


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it no longer runs)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


MODES = [pytest.param(False, id="in-process"), pytest.param(True, id="isolated")]


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("isolate", MODES)
def test_correct_adapter_answers_ok(isolate):
    with AdapterCaller(ref("Correct"), timeout=5, isolate=isolate) as caller:
        outcome = caller.call("forward", *args())
        assert outcome.status == "ok" and outcome.ok and outcome.message == ""
        np.testing.assert_allclose(outcome.value, oracle.forward(*args()), rtol=1e-12)
        grads = caller.call("backward", *args(), np.ones(SPEC.output_shape))
        assert grads.status == "ok" and len(grads.value) == 3
        if isolate:
            pid = caller.worker_pid
            assert caller.call("forward", *args()).ok and caller.worker_pid == pid  # one persistent worker
        assert caller.info().name == "numpy-correct"  # isolated, described by the worker, not loaded here


@pytest.mark.parametrize(
    ("isolate", "timeout"),
    [(False, None), (False, 5.0), (True, 5.0)],
    ids=["in-process-direct", "in-process-worker-thread", "isolated"],
)
def test_exception_is_an_error_with_its_frames(isolate, timeout):
    with AdapterCaller(ref("Raises"), timeout=timeout, isolate=isolate) as caller:
        outcome = caller.call("forward", *args())
        assert outcome.status == "error"
        first, *frames = outcome.message.splitlines()
        assert first == "RuntimeError: simulated kernel failure"
        # innermost last, and the call machinery's own frames left out
        assert frames[-1].endswith("in candidate") and "faults.py" not in outcome.message
        assert any("faulty_adapters.py" in f for f in frames)
        assert caller.call("forward", *args()).status == "error"  # and the caller goes on


@pytest.mark.parametrize("isolate", MODES)
def test_wrong_values_come_back_ok_and_untouched_for_the_verdict(isolate):
    """Shape, dtype and NaN faults are the verdict's business: the caller hands them over as returned."""
    spec, x, w, b = args()
    expected, mag = oracle.forward(spec, x, w, b), oracle.magnitude(spec, x, w, b)
    precision = tolerance.default_precision(spec.dtype)

    def verdict(value):
        return tolerance.check(value, expected, mag, inputs=(x, w, b), reduction_length=spec.reduction_length,
                               precision=precision, bias=True)  # fmt: skip

    with AdapterCaller(ref("WrongShape"), timeout=5, isolate=isolate) as caller:
        outcome = caller.call("forward", spec, x, w, b)
        assert outcome.ok and outcome.value.shape == (*spec.output_shape[:-1], spec.output_shape[-1] - 1)
        assert verdict(outcome.value).reason.startswith("shape mismatch")
    with AdapterCaller(ref("WrongDtype"), timeout=5, isolate=isolate) as caller:
        outcome = caller.call("forward", spec, x, w, b)
        assert outcome.ok and outcome.value.dtype == np.float64
        assert not is_representable(outcome.value, "float16")  # the runner's format check catches it
    with AdapterCaller(ref("AllNaN"), timeout=5, isolate=isolate) as caller:
        outcome = caller.call("forward", spec, x, w, b)
        assert outcome.ok and np.isnan(outcome.value).all()
        assert verdict(outcome.value).status == "failed"


def test_an_answer_that_cannot_cross_the_process_boundary_is_an_error():
    with AdapterCaller(ref("Unpicklable"), timeout=5, isolate=True) as caller:
        outcome = caller.call("forward", *args())
        assert outcome.status == "error" and "cannot be sent to the parent" in outcome.message
        pid = caller.worker_pid
        assert caller.call("backward", *args(), np.ones(SPEC.output_shape)).ok and caller.worker_pid == pid


def test_unknown_method_and_closed_caller_raise():
    caller = AdapterCaller(ref("Correct"))
    with pytest.raises(ValueError, match="method='conv'"):
        caller.call("conv", *args())
    caller.close()
    with pytest.raises(RuntimeError, match="closed"):
        caller.call("forward", *args())
    with pytest.raises(ValueError, match="timeout=0"):
        AdapterCaller(ref("Correct"), timeout=0)


@pytest.mark.parametrize("isolate", MODES)
def test_an_adapter_that_cannot_load_is_a_usage_error(isolate):
    with AdapterCaller(ref("FailsToLoad"), timeout=5, isolate=isolate) as caller:
        with pytest.raises(AdapterLoadError, match=r"libconv\.so: cannot open shared object file"):
            caller.call("forward", *args())
        assert caller.worker_pid is None


# ------------------------------------------------------------------ hangs


def test_in_process_hang_is_reported_and_later_calls_refused_until_it_returns(release):
    with AdapterCaller(ref("Spins"), timeout=1.0) as caller:
        start = time.monotonic()
        hung = caller.call("forward", *args(BATCHED))
        assert hung.status == "hung" and "1 s timeout" in hung.message
        assert time.monotonic() - start < 1.0 + SLACK
        # The spinning thread cannot be killed: the next call is refused at once rather than queued.
        start = time.monotonic()
        refused = caller.call("forward", *args())
        assert refused.status == "hung" and refused.message.startswith("not run: an earlier forward call")
        assert "isolate=True" in refused.message and time.monotonic() - start < 0.5
        # Once the stuck call returns, the caller serves again.
        release.set()
        assert wait_until(lambda: caller.call("forward", *args()).ok)


def test_in_process_sleeping_hang(release):
    with AdapterCaller(ref("Sleeps"), timeout=1.0) as caller:
        start = time.monotonic()
        assert caller.call("forward", *args(BATCHED)).status == "hung"
        assert time.monotonic() - start < 1.0 + SLACK


@pytest.mark.parametrize("name", ["Sleeps", "Spins"])
def test_isolated_hang_is_killed_within_the_timeout_and_the_caller_recovers(name):
    with AdapterCaller(ref(name), timeout=1.0, isolate=True) as caller:
        assert caller.call("forward", *args()).ok  # started: start-up is not part of the timed call
        pid = caller.worker_pid
        start = time.monotonic()
        hung = caller.call("forward", *args(BATCHED))
        assert hung.status == "hung", hung
        assert time.monotonic() - start < 1.0 + SLACK
        assert f"pid {pid}" in hung.message and "killed" in hung.message
        assert gone(pid) and caller.worker_pid is None
        recovered = caller.call("forward", *args())
        assert recovered.ok and caller.worker_pid not in (None, pid)


def test_isolated_start_up_does_not_count_against_the_call_timeout():
    # SlowStart takes 1.5 s to load, longer than the 1 s call timeout.
    with AdapterCaller(ref("SlowStart"), timeout=1.0, isolate=True) as caller:
        outcome = caller.call("forward", *args())
        assert outcome.ok and outcome.seconds < 1.0
    with AdapterCaller(ref("SlowStart"), timeout=1.0, isolate=True, startup_timeout=0.3) as caller:
        hung = caller.call("forward", *args())
        assert hung.status == "hung" and "start-up timeout" in hung.message


# ---------------------------------------------------------------- crashes


@pytest.mark.parametrize(
    ("name", "status"),
    [("Exits", "exited with code 3"), ("Segfaults", "was killed by signal SIGSEGV (11)")],
)
def test_isolated_crash_is_reported_and_the_caller_recovers(name, status):
    with AdapterCaller(ref(name), timeout=5.0, isolate=True) as caller:
        assert caller.call("forward", *args()).ok
        pid = caller.worker_pid
        crashed = caller.call("forward", *args(BATCHED))
        assert crashed.status == "crashed", crashed
        assert crashed.message == f"the worker process (pid {pid}) {status} during forward"
        recovered = caller.call("forward", *args())
        assert recovered.ok and caller.worker_pid != pid


def test_in_process_crash_takes_the_process_down():
    """What isolate=True is for: in-process, os._exit(3) ends the caller's own process."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from conformance.faults import AdapterCaller
        from tests.test_faults import BATCHED, args
        AdapterCaller("tests.faulty_adapters:Exits", timeout=5).call("forward", *args(BATCHED))
        print("survived")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 3 and "survived" not in run.stdout


def test_describe_exit():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGSEGV) == "was killed by signal SIGSEGV (11)"
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)
    assert Outcome("ok").ok and not Outcome("hung").ok


# ------------------------------------------------------------------ Ctrl-C


def _interrupt_main_after(seconds: float) -> threading.Timer:
    """A real SIGINT to the main thread, as Ctrl-C delivers it (it wakes a blocking wait)."""
    main = threading.main_thread().ident
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


@pytest.fixture
def sigint_raises():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only, and the tests run on another")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("isolate", MODES)
def test_ctrl_c_is_not_swallowed(isolate, sigint_raises, release):
    with AdapterCaller(ref("Sleeps"), timeout=30.0, isolate=isolate) as caller:
        assert caller.call("forward", *args()).ok
        pid = caller.worker_pid
        timer = _interrupt_main_after(0.5)
        start = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                caller.call("forward", *args(BATCHED))
        finally:
            timer.cancel()
        assert time.monotonic() - start < 5.0
        if isolate:
            # the abandoned call's worker is killed (it could answer late), and the next call starts afresh
            assert gone(pid) and caller.worker_pid is None
            assert caller.call("forward", *args()).ok
        else:
            # the abandoned call sleeps on: no call may queue behind it
            assert caller.call("forward", *args()).message.startswith("not run")


# --------------------------------------------------------- child lifetime


def test_close_stops_the_worker():
    caller = AdapterCaller(ref("Correct"), timeout=5.0, isolate=True)
    assert caller.call("forward", *args()).ok
    pid = caller.worker_pid
    caller.close()
    assert gone(pid) and caller.worker_pid is None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_worker_does_not_outlive_a_killed_parent(busy):
    """SIGKILL leaves no exit hook to run: an idle worker sees end of file, a busy one its watchdog."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from conformance.faults import AdapterCaller
        from tests.test_faults import BATCHED, args
        caller = AdapterCaller("tests.faulty_adapters:Sleeps", timeout=None, isolate=True)
        caller.call("forward", *args())
        print(caller.worker_pid, flush=True)
        if {busy!r}:
            caller.call("forward", *args(BATCHED))
        else:
            import time
            time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.3)  # let the busy worker enter its sleep
        assert not gone(worker)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    assert wait_until(lambda: gone(worker), timeout=5.0), f"worker {worker} outlived its parent"
    if not gone(worker):  # pragma: no cover - clean up after a failure
        os.kill(worker, signal.SIGKILL)
