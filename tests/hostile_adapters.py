"""Adapters that attack the run rather than the verdict: they exit, hang, swallow Ctrl-C or move the
working directory.  For tests/test_run_integrity.py; each misbehaves only on problems with
``padding='valid'``, so the first cell of the slice those tests run (``none``) finishes first.

``$CONV_CONFORMANCE_TEST_MARKER`` names a file they create when they start misbehaving: the tests wait
for it instead of sleeping, so they do not depend on timing.
"""

from __future__ import annotations

import gc
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from conformance.spec import ConvSpec
from tests.faulty_adapters import Correct


def _mark() -> None:
    marker = os.environ.get("CONV_CONFORMANCE_TEST_MARKER")
    if marker:
        Path(marker).touch()


class _InLastCell(Correct):
    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if spec.padding == "valid":
            self.misbehave()
        return super().forward(spec, x, w, b)

    def misbehave(self) -> None:
        raise NotImplementedError


class ExitsZeroInForward(_InLastCell):
    """Ends its process with status 0 in the middle of the run: a green exit for a run that never finished."""

    name = "exits-zero-in-forward"

    def misbehave(self) -> None:
        os._exit(0)


class ExitsZeroInInit(Correct):
    name = "exits-zero-in-init"

    def __init__(self) -> None:
        os._exit(0)


class ExitsWithUsageStatusInForward(_InLastCell):
    """Ends its process with status 4, pytest's "usage error", in the middle of the run: a supervisor that
    trusted the number would report bad usage (exit 2) and drop the cells already run."""

    name = "exits-with-usage-status-in-forward"

    def misbehave(self) -> None:
        os._exit(4)


class ExitsWithUsageStatusInInit(Correct):
    name = "exits-with-usage-status-in-init"

    def __init__(self) -> None:
        os._exit(4)


class SignalsItself(_InLastCell):
    """Sends its own process SIGTERM mid-run (a backend that "cleans up" with a signal): no one interrupted
    the run from outside, so its end is an unfinished run (3), not a Ctrl-C (130) or SIGTERM (143)."""

    name = "signals-itself"

    def misbehave(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the interrupt is the main thread's; this call goes on in the adapter's thread


class HangsInLastCell(_InLastCell):
    """Hangs (sleeping, so signals are served) once it reaches the valid-padding cell."""

    name = "hangs-in-last-cell"

    def misbehave(self) -> None:
        _mark()
        while True:
            time.sleep(0.05)


class CatchesKeyboardInterrupt(_InLastCell):
    """Hangs in a loop that catches KeyboardInterrupt and carries on (a backend's retry loop with a bare
    ``except``): wherever the interrupt is raised, the run must still stop and keep what it gathered."""

    name = "catches-keyboard-interrupt"

    def misbehave(self) -> None:
        _mark()
        while True:
            try:  # noqa: SIM105 - the loop as such a backend writes it
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass


class SwallowsFirstInterrupt(HangsInLastCell):
    """Installs a SIGINT handler that swallows the first Ctrl-C, as an interrupt that lands in a
    garbage-collector callback is swallowed ("Exception ignored in ..."); later ones stop the run."""

    name = "swallows-first-interrupt"

    def __init__(self) -> None:
        self.swallowed = 0

        def handler(signum: int, frame: object) -> None:
            self.swallowed += 1
            if self.swallowed > 1:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handler)


class SwallowsEveryInterrupt(HangsInLastCell):
    """Ignores SIGINT for good (a backend that installs its own handler, or blocks in C with the signal
    masked): only the supervisor's kill, after its grace period, ends the run."""

    name = "swallows-every-interrupt"

    def __init__(self) -> None:
        signal.signal(signal.SIGINT, lambda signum, frame: None)


class InterruptLandsInGcCallback(Correct):
    """Makes the garbage collector's callback the place the first Ctrl-C lands, where CPython swallows it
    ("Exception ignored in garbage collector").  At its first valid-padding call it arms a one-shot
    gc callback; the next collection on the main thread creates the marker and sleeps until the
    interrupt arrives.  Every forward call after that is counted in ``<marker>.after``: a run that
    honours the interrupt at its next example makes at most one more (the example it was in)."""

    name = "interrupt-lands-in-gc-callback"

    def __init__(self) -> None:
        self.state = "idle"
        gc.callbacks.append(self._collecting)

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if spec.padding == "valid" and self.state == "idle":
            self.state = "armed"
        elif self.state == "swallowed":
            with open(f"{os.environ['CONV_CONFORMANCE_TEST_MARKER']}.after", "a") as after:
                after.write(f"{spec.descriptor()}\n")
        return super().forward(spec, x, w, b)

    def _collecting(self, phase: str, info: dict) -> None:
        if self.state != "armed" or phase != "start" or threading.current_thread() is not threading.main_thread():
            return
        self.state = "waiting"
        _mark()
        try:
            while True:
                time.sleep(0.05)
        finally:  # the KeyboardInterrupt goes on out of this callback, where the collector drops it
            self.state = "swallowed"


class ChangesDirectory(Correct):
    """Moves the process to another directory when it loads (a backend that chdirs to find its plugins)."""

    name = "changes-directory"

    def __init__(self) -> None:
        os.chdir(tempfile.mkdtemp(prefix="adapter-cwd-"))
