"""Adapters that attack the run rather than the verdict: they exit, hang, swallow Ctrl-C or move the
working directory.  For tests/test_run_integrity.py; each misbehaves only on problems with
``padding='valid'``, so the first cell of the slice those tests run (``none``) finishes first.

``$CONV_CONFORMANCE_TEST_MARKER`` names a file they create when they start misbehaving: the tests wait
for it instead of sleeping, so they do not depend on timing.
"""

from __future__ import annotations

import os
import signal
import tempfile
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


class HangsInLastCell(_InLastCell):
    """Hangs (sleeping, so signals are served) once it reaches the valid-padding cell."""

    name = "hangs-in-last-cell"

    def misbehave(self) -> None:
        _mark()
        while True:
            time.sleep(0.05)


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


class ChangesDirectory(Correct):
    """Moves the process to another directory when it loads (a backend that chdirs to find its plugins)."""

    name = "changes-directory"

    def __init__(self) -> None:
        os.chdir(tempfile.mkdtemp(prefix="adapter-cwd-"))
