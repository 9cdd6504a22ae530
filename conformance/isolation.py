"""The isolated worker: one child process that loads an adapter and answers its calls over a pipe.

:class:`Child` is the parent's handle; :func:`serve` is the child's main loop.
The child is a fresh interpreter (what multiprocessing's ``spawn`` start method
makes: safe for CUDA and for threaded BLAS pools, unlike ``fork``) and the
leader of a new process group, so that whatever the backend starts (a compiler,
a server, a helper daemon) goes when the child goes: the parent kills the whole
group, never just the child.  The child does everything the adapter does:
import, ``__init__``, ``capabilities()``, ``versions()``, ``repro_source()``,
``forward`` and ``backward``; nothing of the adapter's runs in the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from conformance.calls import DescribeError, describe_adapter, describe_exception, invoke, load

# How often a busy child checks that its parent is still alive.
_WATCHDOG_PERIOD = 0.5
# How often a waiting parent checks that its worker is still alive.
POLL = 0.1
# How long stop() lets a child shut down cleanly (its atexit hooks: device teardown) before killing it.
_CLOSE_GRACE = 2.0

_LIVE: set[Any] = set()  # running children, for the exit hook
_EXIT_HOOK = False

# The worker's command line.  The parent's sys.path comes first, so the child imports the
# same suite and adapters (a "tests.module:Class" ref included).
_WORKER_CODE = (
    "import json, sys; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "from conformance.isolation import serve; serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))"
)


def _stop_all_children() -> None:
    for child in list(_LIVE):
        child.kill()


def _register_exit_hook() -> None:
    global _EXIT_HOOK
    if not _EXIT_HOOK:
        atexit.register(_stop_all_children)
        _EXIT_HOOK = True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# ------------------------------------------------------------------ the child


def _watch_parent(parent_pid: int) -> None:
    # A child busy in a hung call never reads the pipe's end of file: once re-parented, take
    # the whole group (this process and whatever the backend started) down.
    while True:
        time.sleep(_WATCHDOG_PERIOD)
        if os.getppid() != parent_pid:
            _kill_group(os.getpgrp())
            os._exit(70)


def serve(ref: str, fd: int, parent_pid: int) -> None:
    """The worker's main loop: load and describe the adapter once, then answer calls until told to stop.

    Start-up answers ``("ready", AdapterInfo)``, ``("load-error", message)`` (the
    adapter cannot be imported or built: a usage error) or ``("broken", message)``
    (it loads, but cannot describe itself).  Each call answers
    ``(status, payload, seconds, modified)`` as :func:`conformance.calls.invoke` does.
    """
    from multiprocessing.connection import Connection

    # Processes the backend starts must not hold the pipe open: the parent reads its end
    # of file as this process's death.
    os.set_inheritable(fd, False)
    conn = Connection(fd)
    # The parent owns Ctrl-C: it decides whether to abandon a call, and kills this process when it does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a segfaulting backend leaves its Python stack on stderr
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()
    try:
        adapter = load(ref)
    except BaseException as exc:
        conn.send(("load-error", describe_exception(exc)))
        return
    try:
        conn.send(("ready", describe_adapter(adapter)))
    except DescribeError as exc:
        conn.send(("broken", str(exc)))
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if request is None:
            return
        method, args = request
        status, payload, seconds, modified = invoke(adapter, method, args)
        del args
        try:
            conn.send((status, payload, seconds, modified))
        except Exception as exc:  # pickling fails before any byte is written, so the pipe stays usable
            message = f"{method} returned a value that cannot be sent to the parent: {describe_exception(exc)}"
            conn.send(("error", message, seconds, modified))


# ------------------------------------------------------------------ the parent's handle


class Child:
    """One worker process and the parent's end of its pipe.

    A plain ``subprocess`` running a fresh interpreter, talking over a socket pair
    with multiprocessing's ``Connection`` framing.  Unlike
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
            # A new session: its own process group (killed whole), and a terminal's Ctrl-C goes to the parent only.
            self.process = subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL, start_new_session=True)
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
            step = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
            if self.conn.poll(step):
                return "answer"
            if self.process.poll() is not None:
                return "answer" if self.conn.poll(0) else "died"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"

    def exit_status(self) -> int | None:
        """The child's exit code, once it has ended (killed after 5 s if it has not)."""
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """Stop now, with everything the backend started: the child may be stuck, or may still send a stale
        answer."""
        _kill_group(self.process.pid)
        self.process.wait()
        self._release()

    def stop(self) -> None:
        """Let the child exit on its own (its exit hooks run), then make sure it and its group have."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_CLOSE_GRACE)
        self.kill()

    def _release(self) -> None:
        self.conn.close()
        _LIVE.discard(self)


__all__ = ["POLL", "Child", "serve"]
