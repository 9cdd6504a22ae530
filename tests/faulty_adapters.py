"""Deliberately faulty adapters, for the tests of :mod:`conformance.faults` and :mod:`conformance.repro`.

Each is ``tests.faulty_adapters:<Class>`` to an :class:`~conformance.faults.AdapterCaller`.
They share one small numpy convolution (:data:`NUMPY_CONV`: zeros padding,
stride, dilation, groups, forward and backward) and differ by a fault.  The
adapter runs its own :meth:`~NumpyConv.repro_source`, compiled, so the repro
script computes exactly what the adapter computed, as the protocol asks.

The faults that take the process down or hang it fire only on a *batched*
problem (``batch > 1``), like a kernel that breaks on one shape: the same
caller then shows that it recovers on the next, unbatched, problem.
"""

from __future__ import annotations

import textwrap
import threading
from typing import Any, ClassVar

import numpy as np

from adapters.base import Adapter, Capabilities
from conformance.spec import ConvSpec

#: A direct convolution in plain numpy: one strided window per kernel tap.  Written out as
#: source because every repro script embeds it.
NUMPY_CONV = '''\
import numpy as np


def _windows(out, kernel, stride, dilation):
    """Per kernel tap: the tap's index and the strided slice of the padded input it reads."""
    for tap in np.ndindex(*kernel):
        yield tap, (slice(None), slice(None), *(
            slice(t * d, t * d + s * (o - 1) + 1, s) for t, o, s, d in zip(tap, out, stride, dilation)
        ))


def conv_forward(x, w, b, stride, pads, dilation, groups):
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    kernel = w.shape[2:]
    out = tuple((n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(xp.shape[2:], kernel, stride, dilation))
    ci, co = x.shape[1] // groups, w.shape[0] // groups
    y = np.zeros((x.shape[0], w.shape[0], *out))
    for tap, window in _windows(out, kernel, stride, dilation):
        for g in range(groups):
            taps = w[(slice(g * co, (g + 1) * co), slice(None), *tap)]
            y[:, g * co:(g + 1) * co] += np.einsum("nc...,oc->no...", xp[window][:, g * ci:(g + 1) * ci], taps)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape(1, -1, *(1,) * len(out))
    return y


def conv_backward(x, w, b, gy, stride, pads, dilation, groups):
    x, w, gy = (np.asarray(a, dtype=np.float64) for a in (x, w, gy))
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    out, kernel = gy.shape[2:], w.shape[2:]
    ci, co = x.shape[1] // groups, w.shape[0] // groups
    positions = int(np.prod(out))
    for tap, window in _windows(out, kernel, stride, dilation):
        for g in range(groups):
            cin, cout = slice(g * ci, (g + 1) * ci), slice(g * co, (g + 1) * co)
            gyg = gy[:, cout]
            cols = xp[window][:, cin].reshape(x.shape[0], ci, positions)
            gw[(cout, slice(None), *tap)] += np.einsum("nop,ncp->oc", gyg.reshape(x.shape[0], co, positions), cols)
            gxp[window][:, cin] += np.einsum("no...,oc->nc...", gyg, w[(cout, slice(None), *tap)])
    gx = gxp[(slice(None), slice(None), *(slice(p, p + n) for (p, _), n in zip(pads, x.shape[2:])))]
    gb = gy.sum(axis=(0, *range(2, gy.ndim))) if b is not None else None
    return gx, gw, gb
'''

# Released by the tests when they are done with an in-process spinning call.
RELEASE = threading.Event()


class NumpyConv(Adapter):
    """A correct adapter: :data:`NUMPY_CONV` on the spec's resolved padding.

    Subclasses add a fault as source lines: ``prepare`` runs on ``x, w, b`` (and
    ``grad_out``) before the convolution, ``fault`` on the output ``y``,
    ``backward_fault`` on ``gx, gw, gb``.
    """

    name: ClassVar[str] = "numpy-correct"
    prepare: ClassVar[str] = ""
    fault: ClassVar[str] = ""
    backward_fault: ClassVar[str] = ""

    def capabilities(self) -> Capabilities:
        return Capabilities(padding_modes=("zeros",), transposed=False, backward=True)

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return self._compiled(spec, "forward")["candidate"](x, w, b)

    def backward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray):
        return self._compiled(spec, "backward")["candidate_backward"](x, w, b, grad_out)

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        params = "\n".join(
            f"{name.upper()} = {value!r}"
            for name, value in (("stride", spec.stride), ("pads", spec.pads), ("dilation", spec.dilation),
                                ("groups", spec.groups))
        )  # fmt: skip
        args = "STRIDE, PADS, DILATION, GROUPS"
        if operation == "forward":
            body = f"{self.prepare}\ny = conv_forward(x, w, b, {args})\n{self.fault}\nreturn y"
            head = "def candidate(x, w, b):"
        else:
            body = f"{self.prepare}\ngx, gw, gb = conv_backward(x, w, b, grad_out, {args})\n{self.backward_fault}"
            body += "\nreturn gx, gw, gb"
            head = "def candidate_backward(x, w, b, grad_out):"
        code = "\n".join(line for line in body.splitlines() if line.strip())
        code = textwrap.indent(code, "    ")
        return f"# {self.name}: a numpy convolution\n{NUMPY_CONV}\n\n{params}\n\n\n{head}\n{code}\n"

    def _compiled(self, spec: ConvSpec, operation: str) -> dict[str, Any]:
        namespace: dict[str, Any] = {}
        # NumpyConv's, not an override: Spins has no repro (its loop waits on this process's RELEASE).
        source = NumpyConv.repro_source(self, spec, operation)
        exec(compile(source, f"<{self.name} {operation}>", "exec"), namespace)
        return namespace


class Correct(NumpyConv):
    pass


class Raises(NumpyConv):
    name = "raises"
    prepare = 'raise RuntimeError("simulated kernel failure")'


class WrongShape(NumpyConv):
    """Drops the last output position."""

    name = "wrong-shape"
    fault = "y = y[..., :-1]"


class WrongDtype(NumpyConv):
    """float64 values a float16 (or any narrower) output cannot hold: 2**-30 is below float16's smallest subnormal."""

    name = "wrong-dtype"
    fault = "y = y + 2.0**-30"


class AllNaN(NumpyConv):
    name = "all-nan"
    fault = "y = np.full_like(y, np.nan)"


class OffByOne(NumpyConv):
    """Adds 1 to the last output element."""

    name = "off-by-one"
    fault = "y.reshape(-1)[-1] += 1.0"


class LastRowLow(NumpyConv):
    """On 2-D outputs of at least 3x3, the last output row comes back 1% low: a tile remainder
    scaled wrong.  Its minimal failure is a 3x3 output, so the report's heatmap has a shape."""

    name = "last-row-low"
    fault = "if y.ndim == 4 and min(y.shape[2:]) >= 3:\n    y[:, :, -1, :] *= 0.99"


class WrongTheFirstTime(NumpyConv):
    """Wrong the first time it sees a problem, right after: like PyTorch's bfloat16 kernels, whose answer
    depends on what the process ran before.  Hypothesis cannot replay such a failure (FlakyFailure)."""

    name = "wrong-the-first-time"
    seen: ClassVar[set[str]] = set()

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = super().forward(spec, x, w, b)
        key = spec.descriptor() + x.tobytes().hex()
        if key not in self.seen:
            self.seen.add(key)
            y = y.copy()
            y.reshape(-1)[-1] += 1.0
        return y

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        return None  # its fault lives in this process's memory, not in code a script could carry


class SkipsNaN(NumpyConv):
    """Reads NaN inputs as zero: a kernel that skips NaN."""

    name = "skips-nan"
    prepare = "x = np.nan_to_num(x, nan=0.0)"


class WrongGradBias(NumpyConv):
    """grad_input and grad_weight right, grad_bias off by one in its first channel."""

    name = "wrong-grad-bias"
    backward_fault = "gb = gb.copy()\ngb[0] += 1.0"


class Sleeps(NumpyConv):
    """Hangs in a sleep on a batched problem."""

    name = "sleeps"
    prepare = "if x.shape[0] > 1:\n    import time\n    time.sleep(3600)"


class Exits(NumpyConv):
    """Ends its process with exit code 3 on a batched problem."""

    name = "exits"
    prepare = "if x.shape[0] > 1:\n    import os\n    os._exit(3)"


class Segfaults(NumpyConv):
    """Kills its process with SIGSEGV on a batched problem."""

    name = "segfaults"
    prepare = "if x.shape[0] > 1:\n    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)"


class Spins(NumpyConv):
    """Busy-loops (holding the GIL between switches) on a batched problem, until :data:`RELEASE` is set."""

    name = "spins"

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if spec.batch > 1:
            while not RELEASE.is_set():
                pass
        return super().forward(spec, x, w, b)

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        return None


class Unpicklable(NumpyConv):
    """Returns a value that cannot cross a process boundary (a closure)."""

    name = "unpicklable"

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> Any:
        y = super().forward(spec, x, w, b)
        return lambda: y


class SlowStart(NumpyConv):
    """Takes 1.5 s to load, like a backend importing torch and initialising a device."""

    name = "slow-start"

    def __init__(self) -> None:
        import time

        time.sleep(1.5)


class FailsToLoad(NumpyConv):
    name = "fails-to-load"

    def __init__(self) -> None:
        raise ImportError("libconv.so: cannot open shared object file")


class ExitsOn3D(NumpyConv):
    """Ends its process on every 3-D problem: a kernel that dies on one family of shapes."""

    name = "exits-on-3d"
    prepare = "if x.ndim == 5:\n    import os\n    os._exit(3)"


# ------------------------------------------------------- writing into what they are given
# Each of these passed in-process before the suite gave adapters their own copies: the oracle
# judged the arrays the adapter had just changed.


class FlipsKernelInPlace(NumpyConv):
    """Flips the kernel in place, then correlates: a true convolution where cross-correlation is due."""

    name = "flips-kernel-in-place"
    prepare = "w[...] = np.flip(w, axis=tuple(range(2, w.ndim))).copy()"


class ScalesInputInPlace(NumpyConv):
    """Doubles x in place before computing (an in-place pre-scaling)."""

    name = "scales-input-in-place"
    prepare = "x *= 2.0"


class ScalesGradOutInPlace(NumpyConv):
    """Doubles grad_out in place in backward (in-place loss scaling)."""

    name = "scales-grad-out-in-place"
    prepare = "if 'grad_out' in dir():\n    grad_out *= 2.0"


class OverwritesInputsWithOnes(NumpyConv):
    """Ignores its inputs and overwrites them with ones (and computes on those)."""

    name = "overwrites-inputs-with-ones"
    prepare = "x[...] = 1.0\nw[...] = 1.0\nif b is not None:\n    b[...] = 1.0"


class TouchesInputButAnswersRight(NumpyConv):
    """Computes the right answer, then scribbles on x: right output, still non-conformant."""

    name = "touches-input-after"
    fault = "x[...] = 0.0"


# ------------------------------------------------------- reusing one output buffer


class ReusesOutputBuffer(NumpyConv):
    """Right values, but every forward returns the same array, overwritten by the next call: a caller that
    keeps an answer and calls again sees the answer change under it."""

    name = "reuses-output-buffer"

    def __init__(self) -> None:
        self.buffer: np.ndarray | None = None
        self.calls = 0

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = self.answer(spec, x, w, b)
        if self.buffer is None or self.buffer.shape != y.shape:
            self.buffer = np.empty_like(y)
        self.buffer[...] = y
        return self.buffer

    def answer(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return super().forward(spec, x, w, b)

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        return None


class DriftsInOneBuffer(ReusesOutputBuffer):
    """Reuses one output buffer and answers a little differently each call (like racing atomics): comparing
    the buffer with itself would call it repeatable."""

    name = "drifts-in-one-buffer"

    def answer(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        self.calls += 1
        return super().answer(spec, x, w, b) + self.calls * 2.0**-20


# ------------------------------------------------------- optional methods that fail


class OffByOneWithBrokenRepro(OffByOne):
    """Wrong (as OffByOne) and its repro_source() raises: the failure must stay a failure."""

    name = "off-by-one-broken-repro"

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        raise RuntimeError("repro_source is broken too")


class OffByOneWithGarbageRepro(OffByOneWithBrokenRepro):
    """Wrong, and its repro_source() returns source that defines no candidate()."""

    name = "off-by-one-garbage-repro"

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        return "print('no candidate here')"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


class NastyVersions(NumpyConv):
    """versions() full of things JSON and str() choke on."""

    name = "nasty-versions"

    def versions(self) -> dict[str, Any]:
        return {"nan": float("nan"), "inf": float("inf"), "huge": 10**5000, "object": _Unprintable(),
                "long": "v" * 100_000, 7: ["a", "list"]}  # fmt: skip


class VersionsNotADict(NumpyConv):
    name = "versions-not-a-dict"

    def versions(self) -> Any:
        return ["torch", "2.13"]


class VersionsRaises(NumpyConv):
    name = "versions-raises"

    def versions(self) -> dict[str, str]:
        raise RuntimeError("no versions today")


class CapabilitiesRaises(NumpyConv):
    name = "capabilities-raises"

    def capabilities(self) -> Capabilities:
        raise RuntimeError("cannot query the device")


class CapabilitiesLies(NumpyConv):
    """capabilities() returns a plain dict of what it can do: not a declaration the suite can read."""

    name = "capabilities-lies"

    def capabilities(self) -> Any:
        return {"dims": (1, 2, 3), "backward": True}


class CapabilitiesChangeTheirMind(NumpyConv):
    """Declares float64 only the first time it is asked, everything after: the suite keeps the first answer."""

    name = "capabilities-change"

    def __init__(self) -> None:
        self.asked = 0

    def capabilities(self) -> Capabilities:
        self.asked += 1
        dtypes = ("float64",) if self.asked == 1 else ("float64", "float32", "float16", "bfloat16")
        return Capabilities(dtypes=dtypes, padding_modes=("zeros",), transposed=False, backward=True)


# ------------------------------------------------------- the whole adapter under --isolate


class SegfaultsInInit(NumpyConv):
    name = "segfaults-in-init"

    def __init__(self) -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)


class HangsInInit(NumpyConv):
    name = "hangs-in-init"

    def __init__(self) -> None:
        import time

        time.sleep(3600)


class SegfaultsInCapabilities(NumpyConv):
    name = "segfaults-in-capabilities"

    def capabilities(self) -> Capabilities:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)
        raise AssertionError("unreachable")


class SpawnsHelper(NumpyConv):
    """Starts a helper process (a daemon of the backend's) on a batched problem and leaves it running; its pid
    goes to the file named by $CONV_CONFORMANCE_TEST_PIDFILE, and then the call hangs."""

    name = "spawns-helper"
    prepare = (
        "if x.shape[0] > 1:\n"
        "    import os, subprocess, time\n"
        "    helper = subprocess.Popen(['sleep', '300'])\n"
        "    with open(os.environ['CONV_CONFORMANCE_TEST_PIDFILE'], 'w') as f:\n"
        "        f.write(str(helper.pid))\n"
        "    time.sleep(3600)"
    )


class HoldsTheGil(NumpyConv):
    """On a batched problem, a catastrophic regular expression: minutes in one C call that never releases
    the GIL, so no Python thread (not even the one waiting for a timeout) runs until it returns."""

    name = "holds-the-gil"
    prepare = "if x.shape[0] > 1:\n    import re\n    re.match(r'(a+)+$', 'a' * 64 + 'b')"


class CorrectUnderAnotherClass(Correct):
    """Right, and declares the same name as Correct: two adapters of one name cannot share a run."""
