"""Calling an adapter without trusting it: :class:`AdapterCaller` and its :class:`Outcome`.

A backend under test may raise, hang, or kill its process (a segfault in a
kernel, an ``abort()`` in a driver, the out-of-memory killer).  Each call of
``forward`` / ``backward`` therefore ends in an :class:`Outcome` whose status is
one of :data:`STATUSES`; only a caller's own mistakes (an unknown method name,
an adapter that cannot be loaded at all, Ctrl-C) raise.

Two modes, one interface:

* **in-process** (``isolate=False``, the default: fast, and tracebacks point into
  the backend).  An exception becomes ``"error"``.  With a ``timeout``, calls
  run on one persistent daemon worker thread and the caller waits at most
  ``timeout`` seconds for the answer; past it the outcome is ``"hung"``.  A
  thread cannot be killed in Python, so the stuck call runs on, holding whatever
  locks the backend took and burning CPU.  Until it returns, every further call
  is refused at once with ``"hung"`` and a message saying why, instead of
  queueing behind it (which would hang too) or racing it on a second thread
  (a backend that hung once is in an unknown state).  If the stuck call does
  return, calls are served again.  A crash takes the whole process down.  Use
  ``isolate=True`` for a backend that hangs or crashes.
* **isolated** (``isolate=True``).  A persistent child process (a fresh
  interpreter, as multiprocessing's ``spawn`` start method makes: safe for CUDA
  and for threaded BLAS pools, unlike ``fork``) loads the adapter once and
  serves calls over a pipe (numpy arrays and the spec go by pickle).  A child
  that dies mid-call is ``"crashed"`` (exit code or signal); a child that does
  not answer within ``timeout`` is killed and the call is ``"hung"``.  Either
  way the next call starts a fresh child.  Starting it (importing torch,
  initialising a device) is bounded by ``startup_timeout``, not by ``timeout``.
  POSIX only (the child gets its end of the pipe as an inherited descriptor).

Ctrl-C is never swallowed: the ``KeyboardInterrupt`` propagates out of
:meth:`AdapterCaller.call`.  The call it interrupted is abandoned (an isolated
child is killed, since it may still answer later; an in-process call is treated
as stuck).  Child processes never outlive the parent: :meth:`AdapterCaller.close`,
garbage collection and interpreter exit stop them, and each child also exits by
itself when its parent is gone (end of file on the pipe, or a watchdog thread
that notices the parent's pid change while the child is busy in a call).
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import importlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

#: How a call ended.
STATUSES = ("ok", "error", "hung", "crashed")
#: The adapter methods a caller may invoke.
METHODS = ("forward", "backward")

# Characters of an exception's message kept in an Outcome.
_MESSAGE = 2000
# Traceback frames kept in an error message: the innermost few are where the backend broke.
_FRAMES = 3
# How often a busy child checks that its parent is still alive.
_WATCHDOG_PERIOD = 0.5
# How often a waiting parent checks that its worker is still alive.
_POLL = 0.1
# How long close() lets a child shut down cleanly (its atexit hooks: device teardown) before killing it.
_CLOSE_GRACE = 2.0


@dataclass
class Outcome:
    """How one call of an adapter method ended.

    * ``status``: one of :data:`STATUSES`.
    * ``value``: the method's return value, as returned, when ``ok`` (the runner
      judges its type, shape and values; nothing here converts it).
    * ``message``: for ``error``, ``"ExceptionType: message"`` and the innermost
      traceback frames; for ``hung``, the timeout; for ``crashed``, the exit code or signal.
    * ``seconds``: how long the method ran (for ``ok`` and ``error``, measured
      around the method itself; for ``hung`` and ``crashed``, the caller's wait).
    """

    status: str
    value: Any = None
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class AdapterLoadError(RuntimeError):
    """The adapter named by a ref could not be loaded: a usage error, not a backend fault."""


# ------------------------------------------------------------------ helpers


def load(ref: str) -> Any:
    """The adapter instance for ``ref`` (through :func:`adapters.registry.load_adapter`)."""
    try:
        from adapters.registry import load_adapter
    except ModuleNotFoundError as exc:
        # Only while the registry does not exist yet: fall back to "package.module:Class".
        # Any other import failure inside the registry is a real error and propagates.
        if exc.name != "adapters.registry":
            raise
        return _load_module_attribute(ref)
    return load_adapter(ref)


def _load_module_attribute(ref: str) -> Any:
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"adapter ref {ref!r}, but should be 'package.module:Class' (no registry is installed)")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target() if isinstance(target, type) else target


def describe_exception(exc: BaseException) -> str:
    """``"ExceptionType: message"`` and the innermost traceback frames, one per line."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    text = str(exc)
    if len(text) > _MESSAGE:  # a backend may print a whole tensor into its message
        text = text[:_MESSAGE] + f"... ({len(text) - _MESSAGE} more characters)"
    lines = [f"{name}: {text}" if text else name]
    # The call machinery's frames (this module's, the import system's) say nothing about the backend.
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename != __file__ and not f.filename.startswith("<frozen")
    ]
    lines += [f"  at {_short_path(f.filename)}:{f.lineno} in {f.name}" for f in frames[-_FRAMES:]]
    return "\n".join(lines)


def _short_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    if not relative.startswith(".."):
        return relative
    parts = path.replace(os.sep, "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else path


def describe_exit(exitcode: int | None) -> str:
    """``"was killed by signal SIGSEGV (11)"``, ``"exited with code 3"``: a process's end, from its exit code
    (negative: the signal that ended it, as subprocess reports it)."""
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


def _invoke(adapter: Any, method: str, args: tuple) -> tuple[str, Any, float]:
    """``("ok", value, seconds)`` or ``("error", message, seconds)``.

    Catches BaseException: it runs on a worker thread or in the child, where a
    KeyboardInterrupt or SystemExit can only come from the backend itself
    (signals go to the main thread, and the child ignores SIGINT).
    """
    start = time.perf_counter()
    try:
        value = getattr(adapter, method)(*args)
    except BaseException as exc:
        return "error", describe_exception(exc), time.perf_counter() - start
    return "ok", value, time.perf_counter() - start


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isnan(value):
        raise ValueError(f"{name}={value!r}, but should be a positive number of seconds or None")
    return float(value)


# ---------------------------------------------------------- in-process mode


class _Job:
    """One in-process call, handed to the worker thread."""

    def __init__(self, adapter: Any, method: str, args: tuple) -> None:
        self.adapter, self.method, self.args = adapter, method, args
        self.done = threading.Event()
        self.started = time.monotonic()
        self.result: tuple[str, Any, float] = ("error", "never ran", 0.0)

    def run(self) -> None:
        try:
            self.result = _invoke(self.adapter, self.method, self.args)
        finally:
            self.done.set()
            self.adapter = self.args = None  # do not keep the arrays alive after the answer is read


def _work(jobs: queue.SimpleQueue) -> None:
    # Holds only the queue, never the caller, so an abandoned caller can be collected.
    while (job := jobs.get()) is not None:
        job.run()


# ------------------------------------------------------------ isolated mode

_LIVE: set[Any] = set()  # running children, for the exit hook
_EXIT_HOOK = False

# The worker's command line.  The parent's sys.path comes first, so the child imports the
# same suite and adapters (a "tests.module:Class" ref included).
_WORKER_CODE = (
    "import json, sys; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "from conformance.faults import _serve; _serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))"
)


def _stop_all_children() -> None:
    for child in list(_LIVE):
        child.kill()


def _register_exit_hook() -> None:
    global _EXIT_HOOK
    if not _EXIT_HOOK:
        atexit.register(_stop_all_children)
        _EXIT_HOOK = True


def _watch_parent(parent_pid: int) -> None:
    # A child busy in a hung call never reads the pipe's end of file: exit once re-parented.
    while True:
        time.sleep(_WATCHDOG_PERIOD)
        if os.getppid() != parent_pid:
            os._exit(70)


def _serve(ref: str, fd: int, parent_pid: int) -> None:
    """The worker's main loop: load the adapter once, then answer calls until told to stop."""
    from multiprocessing.connection import Connection

    # Processes the backend starts must not hold the pipe open: the parent reads its end
    # of file as this process's death.
    os.set_inheritable(fd, False)
    conn = Connection(fd)
    # The parent owns Ctrl-C (a terminal sends it to the whole process group): it decides
    # whether to abandon a call, and kills this process when it does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a segfaulting backend leaves its Python stack on stderr
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()
    try:
        adapter = load(ref)
    except BaseException as exc:
        conn.send(("load-error", describe_exception(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if request is None:
            return
        method, args = request
        status, payload, seconds = _invoke(adapter, method, args)
        del args
        try:
            conn.send((status, payload, seconds))
        except Exception as exc:  # pickling fails before any byte is written, so the pipe stays usable
            message = f"{method} returned a value that cannot be sent to the parent: {describe_exception(exc)}"
            conn.send(("error", message, seconds))


class _Child:
    """One worker process and the parent's end of its pipe.

    A plain ``subprocess`` running a fresh interpreter (what multiprocessing's
    ``spawn`` start method does, so CUDA and threaded BLAS pools are safe), talking
    over a socket pair with multiprocessing's ``Connection`` framing.  Unlike
    ``multiprocessing.Process`` it does not re-import the parent's ``__main__`` in the
    child (a script without an ``if __name__ == "__main__"`` guard would run again, or
    fail in multiprocessing's bootstrapping check), and it is not a daemonic process,
    which may not start processes of its own, as a backend is free to.
    """

    def __init__(self, ref: str) -> None:
        from multiprocessing import Pipe

        if not sys.executable:
            raise RuntimeError("isolate=True needs sys.executable to start a worker interpreter")
        _register_exit_hook()
        self.conn, child_conn = Pipe()
        fd = child_conn.fileno()
        command = [sys.executable, "-c", _WORKER_CODE, json.dumps(sys.path), ref, str(fd), str(os.getpid())]
        try:
            self.process = subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL)
        finally:
            child_conn.close()  # the child holds its own copy; the parent must see end of file when it dies
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float | None) -> str:
        """``"answer"`` (something to read, or end of file), ``"died"`` or ``"timeout"``.

        Polls the process as well as the pipe: a grandchild that inherited the pipe
        (a backend that forks) would hide the end of file.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
            if self.conn.poll(step):
                return "answer"
            if self.process.poll() is not None:
                return "answer" if self.conn.poll(0) else "died"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"

    def exit_status(self) -> str:
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return describe_exit(self.process.returncode)

    def kill(self) -> None:
        """Stop now: the child may be stuck, or may still send a stale answer."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._release()

    def stop(self) -> None:
        """Let the child exit on its own (its exit hooks run), then make sure it has."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_CLOSE_GRACE)
        self.kill()

    def _release(self) -> None:
        self.conn.close()
        _LIVE.discard(self)


# ------------------------------------------------------------------- caller


class AdapterCaller:
    """Calls one adapter's ``forward`` / ``backward`` and reports how each call ended.

    ``adapter_ref`` is what :func:`adapters.registry.load_adapter` takes: a
    built-in name, an entry-point name, or ``"package.module:Class"``.
    ``timeout`` bounds each call (None: wait forever); ``isolate`` runs the
    adapter in a child process (see the module docstring for what each mode can
    survive); ``startup_timeout`` bounds starting that process and loading the
    adapter in it.  Not thread-safe beyond serialising calls: use one per thread.
    """

    def __init__(
        self,
        adapter_ref: str,
        *,
        timeout: float | None = 60.0,
        isolate: bool = False,
        startup_timeout: float | None = 300.0,
    ) -> None:
        self.adapter_ref = adapter_ref
        self.timeout = _check_timeout("timeout", timeout)
        self.startup_timeout = _check_timeout("startup_timeout", startup_timeout)
        self.isolate = bool(isolate)
        self._adapter: Any = None
        self._lock = threading.Lock()
        self._closed = False
        # in-process
        self._jobs: queue.SimpleQueue | None = None
        self._stuck: _Job | None = None
        # isolated
        self._child: _Child | None = None
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        mode = "isolated" if self.isolate else "in-process"
        return f"AdapterCaller({self.adapter_ref!r}, {mode}, timeout={self.timeout})"

    @property
    def adapter(self) -> Any:
        """The adapter, loaded in this process on first use: for capabilities(), versions(), repro_source()."""
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
        if self.timeout is None:
            # No thread needed: the call runs where Ctrl-C and debuggers expect it.
            start = time.perf_counter()
            try:
                value = getattr(adapter, method)(*args)
            except (Exception, SystemExit) as exc:
                return Outcome("error", message=describe_exception(exc), seconds=time.perf_counter() - start)
            return Outcome("ok", value=value, seconds=time.perf_counter() - start)

        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_work, args=(self._jobs,), daemon=True, name="adapter-worker").start()
        job = _Job(adapter, method, args)
        self._jobs.put(job)
        try:
            finished = job.done.wait(self.timeout)
        except BaseException:
            # Ctrl-C: the call runs on; no later call may queue behind it.
            self._stuck = job
            raise
        if not finished:
            self._stuck = job
            return Outcome(
                "hung", seconds=time.monotonic() - job.started,
                message=f"no answer from {method} within the {self.timeout:g} s timeout (the call runs on in a "
                "thread that cannot be stopped; later calls are refused until it returns)",
            )  # fmt: skip
        status, payload, seconds = job.result
        if status == "ok":
            return Outcome("ok", value=payload, seconds=seconds)
        return Outcome("error", message=payload, seconds=seconds)

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
                    status, payload, seconds = child.conn.recv()
                except (EOFError, OSError):
                    return self._crashed(child, method, start)
                except Exception as exc:  # the answer arrived whole, but does not unpickle here
                    message = f"{method} returned a value this process cannot load: {describe_exception(exc)}"
                    return Outcome("error", message=message, seconds=time.monotonic() - start)
                if status == "ok":
                    return Outcome("ok", value=payload, seconds=seconds)
                return Outcome("error", message=payload, seconds=seconds)
            if state == "died":
                return self._crashed(child, method, start)
            self._discard()
            return Outcome(
                "hung", seconds=time.monotonic() - start,
                message=f"no answer from {method} within the {self.timeout:g} s timeout; "
                f"the worker process (pid {child.pid}) was killed",
            )  # fmt: skip
        except BaseException:
            # Ctrl-C (or anything unexpected) mid-call: the child may still answer this call
            # later and desynchronise the pipe, so it goes.
            self._discard()
            raise

    def _start_child(self) -> Outcome | None:
        """Start a worker and wait until it has loaded the adapter; an Outcome when it could not."""
        child = self._child = _Child(self.adapter_ref)
        self._finalizer = weakref.finalize(self, _Child.stop, child)
        start = time.monotonic()
        try:
            state = child.wait(self.startup_timeout)
            if state == "answer":
                try:
                    kind, payload = child.conn.recv()
                except (EOFError, OSError):
                    return self._crashed(child, "start-up", start)
                if kind == "ready":
                    return None
                self._discard()
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

    def _crashed(self, child: _Child, during: str, start: float, when: str = "") -> Outcome:
        status = child.exit_status()
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
            self._finalizer()  # runs _Child.stop once
            self._finalizer = None
        self._child = None
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None

    def __enter__(self) -> AdapterCaller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = [
    "METHODS",
    "STATUSES",
    "AdapterCaller",
    "AdapterLoadError",
    "Outcome",
    "describe_exception",
    "describe_exit",
    "load",
]
