"""Calling an adapter without trusting it: :class:`AdapterCaller` and its :class:`Outcome`.

A backend under test may raise, hang, kill its process (a segfault in a kernel,
an ``abort()`` in a driver, the out-of-memory killer), write into the arrays it
is given, reuse its output buffer, or lie in an optional method.  Each call
therefore ends in an :class:`Outcome` whose status is one of :data:`STATUSES`;
only a caller's own mistakes (an unknown method name, an adapter that cannot be
loaded at all, Ctrl-C) raise.

The evidence is never the candidate's to touch: the adapter gets its own copy
of every input (in-process, copies made here; isolated, the copies that
unpickling makes), the caller's arrays stay as they were for the oracle, and an
``Outcome.modified`` names every input the adapter wrote into.  What the adapter
returns is copied before it is called again.

Two modes, one interface:

* **in-process** (``isolate=False``, the default: fast, and tracebacks point into
  the backend).  An exception becomes ``"error"``.  With a ``timeout``, calls
  run on one persistent daemon worker thread and the caller waits at most
  ``timeout`` seconds for the answer; past it the outcome is ``"hung"``.  A
  thread cannot be killed in Python, so the stuck call runs on.  Until it
  returns, every further call is refused at once with ``"hung"`` and a message
  saying why, instead of queueing behind it or racing it on a second thread.  A
  call that hangs *holding the GIL* leaves the waiting thread no chance to run:
  with a ``watchdog`` path, :class:`~conformance.watchdog.CallWatchdog` ends the
  process a grace period past the timeout and leaves a record of the case for
  whoever finds it dead.  A crash takes the whole process down.  Use
  ``isolate=True`` for a backend that hangs or crashes.
* **isolated** (``isolate=True``).  A persistent child process
  (:mod:`conformance.isolation`) loads and describes the adapter once and serves
  calls over a pipe; nothing of the adapter's code runs in this process, not even
  its import, ``__init__`` or ``capabilities()``.  A child that dies mid-call is
  ``"crashed"``; one that does not answer within ``timeout`` is killed, with its
  whole process group, and the call is ``"hung"``.  Either way the next call
  starts a fresh child.  Starting it is bounded by ``startup_timeout``.  POSIX only.

Ctrl-C is never swallowed: the ``KeyboardInterrupt`` propagates out of
:meth:`AdapterCaller.call`.  The call it interrupted is abandoned (an isolated
child is killed, since it may still answer later; an in-process call is treated
as stuck).  Child processes never outlive the parent: :meth:`AdapterCaller.close`,
garbage collection and interpreter exit stop them, and each child also exits by
itself, taking its process group along, when its parent is gone.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from conformance.calls import (
    METHODS,
    AdapterInfo,
    describe_exception,
    detached,
    invoke,
    load,
    own_copies,
)
from conformance.isolation import Child
from conformance.watchdog import CallWatchdog, read_inflight

#: How a call ended.
STATUSES = ("ok", "error", "hung", "crashed")


@dataclass
class Outcome:
    """How one call of an adapter method ended.

    * ``status``: one of :data:`STATUSES`.
    * ``value``: the method's return value (arrays copied) when ``ok``; the
      runner judges its type, shape and values.
    * ``message``: for ``error``, ``"ExceptionType: message"`` and the innermost
      traceback frames; for ``hung``, the timeout; for ``crashed``, the exit code or signal.
    * ``seconds``: how long the method ran (for ``ok`` and ``error``, measured
      around the method itself; for ``hung`` and ``crashed``, the caller's wait).
    * ``modified``: the inputs (``"x"``, ``"w"``, ``"b"``, ``"grad_out"``, ``"spec"``)
      the adapter wrote into, whatever else happened.
    """

    status: str
    value: Any = None
    message: str = ""
    seconds: float = 0.0
    modified: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class AdapterLoadError(RuntimeError):
    """The adapter named by a ref could not be loaded: a usage error, not a backend fault."""


class AdapterBroken(RuntimeError):
    """The adapter loads but cannot be run at all: it crashed or hung while starting (isolated), or its
    ``name`` / ``capabilities()`` raised or returned something that is not a declaration."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # "error" | "crashed" | "hung"
        self.message = message


# ------------------------------------------------------------------ helpers


def describe_exit(exitcode: int | None) -> str:
    """``"was killed by signal SIGSEGV (11)"``, ``"exited with code 3"``: a process's end, from its exit code
    (negative: the signal that ended it, as subprocess reports it)."""
    import signal

    if exitcode is None:
        return "ended with an unknown status"
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "signal"
        hint = " (perhaps the out-of-memory killer)" if number == getattr(signal, "SIGKILL", None) else ""
        return f"was killed by signal {name} ({number}){hint}"
    return f"exited with code {exitcode}"


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}, but should be a positive, finite number of seconds or None")
    return float(value)


# ---------------------------------------------------------- in-process mode


class _Job:
    """One in-process call, handed to the worker thread."""

    def __init__(self, adapter: Any, method: str, args: tuple, pristine: tuple) -> None:
        self.adapter, self.method, self.args, self.pristine = adapter, method, args, pristine
        self.done = threading.Event()
        self.started = time.monotonic()
        self.result: tuple[str, Any, float, tuple] = ("error", "never ran", 0.0, ())

    def run(self) -> None:
        try:
            self.result = invoke(self.adapter, self.method, self.args, self.pristine)
        finally:
            self.done.set()
            self.adapter = self.args = self.pristine = None  # do not keep the arrays alive after the answer


def _work(jobs: queue.SimpleQueue) -> None:
    # Holds only the queue, never the caller, so an abandoned caller can be collected.
    while (job := jobs.get()) is not None:
        job.run()


# ------------------------------------------------------------------- caller


class AdapterCaller:
    """Calls one adapter's methods and reports how each call ended.

    ``adapter_ref`` is what :func:`adapters.registry.load_adapter` takes: a
    built-in name, an entry-point name, or ``"package.module:Class"``.
    ``timeout`` bounds each call (None: wait forever); ``isolate`` runs the
    adapter in a child process (see the module docstring for what each mode can
    survive); ``startup_timeout`` bounds starting that process and loading the
    adapter in it; ``watchdog`` is the path of the in-process watchdog's record
    (see :mod:`conformance.watchdog`).  ``context`` is what the watchdog records
    about the case being run: the session sets ``cell`` and ``adapter``, the
    runner ``descriptor`` and ``operation``.  Not thread-safe beyond serialising
    calls: use one per thread.
    """

    def __init__(
        self,
        adapter_ref: str,
        *,
        timeout: float | None = 60.0,
        isolate: bool = False,
        startup_timeout: float | None = 300.0,
        watchdog: str | os.PathLike | None = None,
    ) -> None:
        self.adapter_ref = adapter_ref
        self.timeout = _check_timeout("timeout", timeout)
        self.startup_timeout = _check_timeout("startup_timeout", startup_timeout)
        self.isolate = bool(isolate)
        self.context: dict[str, Any] = {}
        self._adapter: Any = None
        self._info: AdapterInfo | None = None
        self._lock = threading.Lock()
        self._closed = False
        # in-process
        self._jobs: queue.SimpleQueue | None = None
        self._stuck: _Job | None = None
        self._watchdog_path = watchdog
        self._watchdog: CallWatchdog | None = None
        # isolated
        self._child: Child | None = None
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        mode = "isolated" if self.isolate else "in-process"
        return f"AdapterCaller({self.adapter_ref!r}, {mode}, timeout={self.timeout})"

    @property
    def adapter(self) -> Any:
        """The adapter object, loaded in this process (in-process mode only: isolated, it lives in the child)."""
        if self.isolate:
            raise RuntimeError(f"{self!r}: the adapter lives in the worker process; use info() and call()")
        if self._adapter is None:
            try:
                self._adapter = load(self.adapter_ref)
            except Exception as exc:
                raise AdapterLoadError(f"cannot load adapter {self.adapter_ref!r}: {describe_exception(exc)}") from exc
        return self._adapter

    @property
    def worker_pid(self) -> int | None:
        """The pid of the isolated worker process, when one is running."""
        return self._child.pid if self._child is not None else None

    # ------------------------------------------------------------ describing

    def info(self) -> AdapterInfo:
        """The adapter's declared name, capabilities and versions, asked once and kept.

        Raises :class:`AdapterLoadError` when it cannot be imported or built (a
        usage error) and :class:`AdapterBroken` when it loads but cannot be run:
        isolated, it crashed or hung while starting; either way, its ``name`` or
        ``capabilities()`` raised or returned something that is not a declaration.
        """
        if self._info is None:
            if self.isolate:
                with self._lock:
                    failed = self._start_child() if self._child is None else None
                if failed is not None:
                    raise AdapterBroken(failed.status, f"adapter {self.adapter_ref!r}: {failed.message}")
            else:
                self.adapter  # noqa: B018 - a load failure is a usage error, raised before any call
                outcome = self.call("describe")
                if outcome.status != "ok":
                    raise AdapterBroken(outcome.status, f"adapter {self.adapter_ref!r}: {outcome.message}")
                self._info = outcome.value
        assert self._info is not None
        return self._info

    @property
    def capabilities(self) -> Any:
        """The adapter's declared :class:`~adapters.base.Capabilities` (see :meth:`info`)."""
        return self.info().capabilities

    def repro_source(self, spec: Any, operation: str) -> tuple[str | None, str]:
        """``(source, "")``, or ``(None, why there is none)``: repro_source() is optional and untrusted."""
        outcome = self.call("repro_source", spec, operation)
        if outcome.status != "ok":
            first = outcome.message.splitlines()[0] if outcome.message else outcome.status
            return None, f"no standalone script: repro_source() {outcome.status}: {first}"
        if outcome.value is None:
            return None, ""
        if not isinstance(outcome.value, str):
            return None, f"no standalone script: repro_source() returned {type(outcome.value).__name__}, not a str"
        return outcome.value, ""

    # ------------------------------------------------------------ calling

    def call(self, method: str, *args: Any) -> Outcome:
        """Run ``adapter.<method>(*args)`` and say how it ended; never raises for a backend fault."""
        if method not in METHODS:
            raise ValueError(f"method={method!r}, but should be one of {METHODS}")
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        with self._lock:
            if self.isolate:
                return self._call_isolated(method, args)
            return self._call_in_process(method, args)

    def _call_in_process(self, method: str, args: tuple) -> Outcome:
        if self._stuck is not None:
            if not self._stuck.done.is_set():
                running = time.monotonic() - self._stuck.started
                return Outcome("hung", message=(
                    f"not run: an earlier {self._stuck.method} call is still running after {running:.1f} s "
                    "and an in-process call cannot be stopped; run with isolate=True to recover from hangs"
                ))  # fmt: skip
            self._stuck = None
        adapter = self.adapter
        given = own_copies(args)
        if self.timeout is None:
            # No thread needed: the call runs where Ctrl-C and debuggers expect it.
            status, payload, seconds, modified = invoke(adapter, method, given, args)
            return self._outcome(status, payload, seconds, modified, copy=True)

        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_work, args=(self._jobs,), daemon=True, name="adapter-worker").start()
        watchdog = self._armed_watchdog(method)
        job = _Job(adapter, method, given, args)
        self._jobs.put(job)
        try:
            finished = job.done.wait(self.timeout)
        except BaseException:
            # Ctrl-C: the call runs on; no later call may queue behind it.
            self._stuck = job
            raise
        finally:
            if watchdog is not None:
                watchdog.disarm()
        if not finished:
            self._stuck = job
            return Outcome(
                "hung", seconds=time.monotonic() - job.started,
                message=f"no answer from {method} within the {self.timeout:g} s timeout (the call runs on in a "
                "thread that cannot be stopped; later calls are refused until it returns)",
            )  # fmt: skip
        return self._outcome(*job.result, copy=True)

    def _armed_watchdog(self, method: str) -> CallWatchdog | None:
        if self._watchdog_path is None or self.timeout is None:
            return None
        if self._watchdog is None:
            self._watchdog = CallWatchdog(self._watchdog_path)
        context = {"adapter": self.adapter_ref, **self.context}
        self._watchdog.arm(method, context, self.timeout)
        return self._watchdog

    @staticmethod
    def _outcome(status: str, payload: Any, seconds: float, modified: tuple, *, copy: bool) -> Outcome:
        if status == "ok":
            return Outcome("ok", value=detached(payload) if copy else payload, seconds=seconds, modified=modified)
        return Outcome("error", message=payload, seconds=seconds, modified=modified)

    def _call_isolated(self, method: str, args: tuple) -> Outcome:
        if self._child is None:
            failed = self._start_child()
            if failed is not None:
                return failed
        child = self._child
        assert child is not None
        start = time.monotonic()
        try:
            try:
                child.conn.send((method, args))
            except (BrokenPipeError, ConnectionResetError, EOFError):
                return self._crashed(child, method, start, "before the call reached it")
            state = child.wait(self.timeout)
            if state == "answer":
                try:
                    status, payload, seconds, modified = child.conn.recv()
                except (EOFError, OSError):
                    return self._crashed(child, method, start)
                except Exception as exc:  # the answer arrived whole, but does not unpickle here
                    message = f"{method} returned a value this process cannot load: {describe_exception(exc)}"
                    return Outcome("error", message=message, seconds=time.monotonic() - start)
                # Unpickled here: the arrays are already this process's own.
                return self._outcome(status, payload, seconds, tuple(modified), copy=False)
            if state == "died":
                return self._crashed(child, method, start)
            self._discard()
            return Outcome(
                "hung", seconds=time.monotonic() - start,
                message=f"no answer from {method} within the {self.timeout:g} s timeout; "
                f"the worker process (pid {child.pid}) and its process group were killed",
            )  # fmt: skip
        except BaseException:
            # Ctrl-C (or anything unexpected) mid-call: the child may still answer this call
            # later and desynchronise the pipe, so it goes.
            self._discard()
            raise

    def _start_child(self) -> Outcome | None:
        """Start a worker and wait until it has loaded and described the adapter; an Outcome when it could not."""
        child = self._child = Child(self.adapter_ref)
        self._finalizer = weakref.finalize(self, Child.stop, child)
        start = time.monotonic()
        try:
            state = child.wait(self.startup_timeout)
            if state == "answer":
                try:
                    kind, payload = child.conn.recv()
                except (EOFError, OSError):
                    return self._crashed(child, "start-up", start)
                if kind == "ready":
                    if self._info is None:  # the first answer is the declaration; a restarted child repeats it
                        self._info = payload
                    return None
                self._discard()
                if kind == "broken":
                    return Outcome("error", message=payload, seconds=time.monotonic() - start)
                raise AdapterLoadError(f"cannot load adapter {self.adapter_ref!r} in the worker process: {payload}")
            if state == "died":
                return self._crashed(child, "start-up", start)
            self._discard()
            return Outcome(
                "hung", seconds=time.monotonic() - start,
                message=f"the worker process did not load adapter {self.adapter_ref!r} within the "
                f"{self.startup_timeout:g} s start-up timeout and was killed",
            )  # fmt: skip
        except BaseException:
            self._discard()
            raise

    def _crashed(self, child: Child, during: str, start: float, when: str = "") -> Outcome:
        status = describe_exit(child.exit_status())
        self._discard()
        where = f"during {during}" + (f", {when}" if when else "")
        return Outcome(
            "crashed", seconds=time.monotonic() - start,
            message=f"the worker process (pid {child.pid}) {status} {where}",
        )  # fmt: skip

    def _discard(self) -> None:
        child, self._child = self._child, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if child is not None:
            child.kill()

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the worker process (if any) and the worker thread (once its call returns)."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()  # runs Child.stop once
            self._finalizer = None
        self._child = None
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None
        if self._watchdog is not None and (self._stuck is None or self._stuck.done.is_set()):
            # A call still stuck keeps its record: the process may yet die in it.
            self._watchdog.close()
            self._watchdog = None

    def __enter__(self) -> AdapterCaller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = [
    "METHODS",
    "STATUSES",
    "AdapterBroken",
    "AdapterCaller",
    "AdapterInfo",
    "AdapterLoadError",
    "Outcome",
    "describe_exception",
    "describe_exit",
    "load",
    "read_inflight",
]
