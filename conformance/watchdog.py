"""The in-process watchdog: a call that hangs while holding the GIL still ends, and says where it was.

An in-process adapter call with a timeout runs on a worker thread while the
main thread waits for it (:mod:`conformance.faults`).  That catches a backend
that sleeps or waits, but not one that spins inside a C call holding the GIL (a
catastrophic regular expression, a long kernel that never releases it): the
waiting thread cannot run again to notice the timeout.  No Python thread can.

:func:`faulthandler.dump_traceback_later` can: its timer is a C thread that
needs no GIL.  :class:`CallWatchdog` arms it before each call (for the call's
timeout plus a grace period) and cancels it after; when it fires it writes every
thread's stack to ``<path>.traceback`` and ends the process.  Before arming, the
watchdog writes what is being called (method, cell, adapter, problem) to
``<path>`` with one ``pwrite`` (a few microseconds, and the bytes survive the
process's death in the page cache); after the call it writes ``idle``.  Whoever
finds the process dead (the pytest-xdist controller, the ``conv-conformance``
supervisor) calls :func:`read_inflight` to learn which case it died in and
whether the watchdog ended it (``hung``) or something else did (``crashed``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import time
from pathlib import Path
from typing import Any

from conformance.calls import clip

#: Bytes of the in-flight record: fixed, so a short record never leaves a longer one's tail behind.
RECORD_SIZE = 4096
#: Characters kept of each context string (a cell id, a descriptor): the record must fit RECORD_SIZE.
_FIELD = 400
#: faulthandler's first line when its timer fires: "Timeout (0:00:07)!".
_FIRED = "Timeout ("
_TRACEBACK_KEPT = 20_000


def grace(timeout: float) -> float:
    """How long past a call's timeout the watchdog waits: long enough that a call which releases
    the GIL is reported ``hung`` by the waiting thread first, short enough to matter."""
    return min(10.0, max(1.0, timeout / 2))


class CallWatchdog:
    """Arms :mod:`faulthandler`'s timer around in-process calls and records what each call is."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.traceback_path = Path(f"{self.path}.traceback")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        # faulthandler writes to this file's descriptor from its C thread, so it stays open.
        self._traceback = open(self.traceback_path, "w")  # noqa: SIM115
        # Written after every call: made once.
        self._idle = json.dumps({"state": "idle", "pid": os.getpid()}).encode().ljust(RECORD_SIZE)
        os.pwrite(self._fd, self._idle, 0)

    def arm(self, method: str, context: dict[str, Any], timeout: float) -> None:
        record = {
            "state": "calling", "pid": os.getpid(), "method": method, "timeout": timeout,
            "started": time.time(), "context": {str(k)[:_FIELD]: str(v)[:_FIELD] for k, v in context.items()},
        }  # fmt: skip
        self._write(record)
        faulthandler.dump_traceback_later(timeout + grace(timeout), exit=True, file=self._traceback)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        os.pwrite(self._fd, self._idle, 0)

    def close(self) -> None:
        """Cancel the timer and remove both files: a process that closes its watchdog did not die in a call."""
        faulthandler.cancel_dump_traceback_later()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._traceback.close()
        for path in (self.path, self.traceback_path):
            with contextlib.suppress(OSError):
                path.unlink()

    def _write(self, record: dict[str, Any]) -> None:
        data = json.dumps(record).encode()[:RECORD_SIZE]
        os.pwrite(self._fd, data.ljust(RECORD_SIZE), 0)


def read_inflight(path: str | os.PathLike) -> dict[str, Any] | None:
    """The call a dead process was in, or None when it was not in one (or left no record).

    The record has ``method``, ``timeout``, ``started``, ``pid`` and ``context``
    (``cell``, ``adapter``, ``descriptor``, ``operation`` as the caller set them),
    plus ``traceback`` (what the watchdog dumped, or "") and ``watchdog_fired``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes().rstrip(b" \0")
        record = json.loads(raw.decode())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("state") != "calling":
        return None
    try:
        text = Path(f"{path}.traceback").read_text(errors="replace")
    except OSError:
        text = ""
    text = clip(text, _TRACEBACK_KEPT)
    context = record.get("context")
    record["context"] = context if isinstance(context, dict) else {}
    record["traceback"] = text
    record["watchdog_fired"] = text.startswith(_FIRED)
    return record


__all__ = ["RECORD_SIZE", "CallWatchdog", "grace", "read_inflight"]
