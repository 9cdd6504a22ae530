"""PaddlePaddle (CPU build) as a candidate: ``paddle.nn.functional.conv{1,2,3}d`` and ``conv{1,2,3}d_transpose``.

Each problem is put to Paddle's own functional convolutions with every parameter passed
natively:

* ``stride``, ``dilation``, ``groups`` go as per-axis lists;
* zeros padding: symmetric pairs as per-axis ints, asymmetric pairs as Paddle's per-side
  form (``[[0, 0], [0, 0], [before, after], ...]`` in the data format's axis order), both
  on the forward and on the transposed convolution (where Paddle crops asymmetrically
  itself); ``'same'`` / ``'valid'`` are Paddle's ``'SAME'`` / ``'VALID'``, resolved by
  Paddle (the odd extra pad at the end, as PyTorch does);
* reflect / replicate / circular: Paddle's own ``F.pad(mode=...)`` (modes of the same
  names) followed by the convolution with no padding: composing the framework's pad op
  is the only way to say a padding mode to Paddle's convolutions; ``'same'`` in those
  modes is resolved by the adapter (as ``nn.Conv*d`` resolves it) into that pad;
* a transposed convolution takes ``output_padding`` natively;
* layouts: ``channels_last`` is Paddle's ``data_format`` ``NLC`` / ``NHWC`` / ``NDHWC``
  (the activations are handed over and returned channels-last; Paddle's weight is
  always ``(C_out, C_in/groups, *k)``); ``strided`` makes every tensor a view into a
  NaN-filled buffer (Paddle's slicing makes strided views), so a kernel that ignores
  the strides reads NaN.

Backward is Paddle's autodiff: the inputs are tensors with ``stop_gradient=False`` and
``paddle.grad(y, [x, w, b], grad_out)`` returns their gradients.

Measured on paddlepaddle 3.3.1 (CPU build, AMD EPYC Zen 4) and declared by
:meth:`Paddle.capabilities`:

* Paddle's default on this CPU: ``FLAGS_use_mkldnn`` (and ``FLAGS_use_onednn``) is
  **False**, so the convolutions are Paddle's own phi CPU kernels (im2col / vol2col +
  Intel MKL ``cblas_sgemm`` / ``dgemm``, which MKL names in its own error message on an
  empty problem), not oneDNN.  The adapter leaves that default
  alone (it is what a user gets) and reports it in :meth:`Paddle.versions`.
* float64 and float32: products and sums in their own format, nothing flushed (a
  subnormal input times 1 and a normal times 0.5 come back subnormal; probed at start-up):
  :func:`~conformance.tolerance.default_precision`.  No TF32-like mode exists on the CPU.
  The ci run (about 2,100 float32/float64 cases, forward, transposed, backward, special
  values, every layout and padding mode) stays within that bound, bit for bit in the exact
  tier; nothing had to be declared looser.
* float16 and bfloat16: no CPU kernel is registered ("The kernel with key (CPU,
  Undefined(AnyLayout), float16) of kernel `conv2d` is not registered ... Paddle support
  following DataTypes: float64, float32"): probed at start-up and declared unsupported.
  Setting ``FLAGS_use_mkldnn=True`` does not change that in dynamic-graph mode (the same
  error), so no setting would give them to a user of ``paddle.nn.functional``.

Problems Paddle's API cannot be given (:class:`~adapters.base.CannotExpress`): a padding
string that Paddle would read as its own ``'SAME'`` / ``'VALID'`` (it upper-cases strings,
so ``'SAME'`` or ``'Valid'`` would be its ``'same'`` / ``'valid'``; other strings go to
Paddle, which rejects them), an unknown padding mode, output padding of any rank on a
forward convolution, ``'same'`` with a stride and any padding string on a transposed
convolution (Paddle defines those, as TensorFlow does: a different problem, not the
spec's invalid one), a transposed problem whose ``out_channels`` the weight shape cannot
say, negative extents, a padding mode on a transposed convolution, an empty input through
``F.pad``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import os
import pprint
import textwrap
import warnings
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, Grads, device_kind, probe_dtypes
from conformance.spec import DTYPES, PADDING_STRINGS, ConvSpec
from conformance.tolerance import Precision

_PAD_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}
_DATA_FORMATS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}

_NOTES = (
    "Paddle's default on the CPU is kept: FLAGS_use_mkldnn=False, so Paddle's own phi CPU kernels "
    "(im2col/vol2col + Intel MKL GEMM) run, not oneDNN",
    "padding: zeros padding native (symmetric as per-axis ints, asymmetric as per-side pairs, on the "
    "transposed convolution too); 'same'/'valid' as Paddle's 'SAME'/'VALID'; reflect/replicate/circular "
    "through Paddle's own F.pad(mode=...) before the convolution ('same' in those modes resolved by the "
    "adapter, as nn.Conv*d does)",
    "layouts: channels_last is data_format NLC/NHWC/NDHWC (Paddle's weight stays (C_out, C_in/groups, *k)); "
    "strided makes every tensor a view into a larger NaN-filled buffer",
    "backward is paddle.grad through Paddle's autodiff",
    "'same' with a stride, and a padding string on a transposed convolution, are TensorFlow-style problems "
    "in Paddle (defined there, invalid in the suite): refused by the adapter as having no faithful spelling",
    "float32 and float64 accumulate in their own format and keep subnormals (probed at start-up)",
    "float16 and bfloat16 have no CPU conv kernel in Paddle, with FLAGS_use_mkldnn off (the default) or on",
)


# ----------------------------------------------------------------- the computation
#
# The functions below are copied verbatim into every repro script (Paddle.repro_source),
# so they import what they use and touch no module globals: the repro then runs exactly
# the code the adapter ran.


def to_paddle(a: Any, plan: dict, activation: bool) -> Any:
    """A float64 array as a Paddle tensor in the plan's dtype and layout (exact: the values fit).

    ``activation`` (x or grad_out) is made channels-last for ``data_format`` N...C; with the
    strided layout every tensor is a view (every other element on the last axis, and every
    other channel) into a NaN-filled buffer.
    """
    import numpy as np
    import paddle

    a = np.ascontiguousarray(a, dtype=np.float64)
    if activation and plan["layout"] == "channels_last":
        a = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    t = paddle.to_tensor(a, place=paddle.CPUPlace()).astype(plan["dtype"])
    if plan["layout"] == "strided" and t.ndim >= 1 and t.size > 0:
        big, index = list(t.shape), [slice(None)] * t.ndim
        big[-1], index[-1] = 2 * t.shape[-1] + 1, slice(1, None, 2)
        if t.ndim >= 3:
            big[1], index[1] = 2 * t.shape[1], slice(None, None, 2)
        buffer = paddle.full(big, float("nan"), dtype=plan["dtype"])
        view = buffer[tuple(index)]
        view.copy_(t)
        t = view
    return t


def from_paddle(t: Any, plan: dict, activation: bool) -> Any:
    """A result as a float64 NC... array (every dtype here converts to float64 exactly)."""
    import numpy as np

    a = np.asarray(t.numpy()).astype(np.float64)
    if activation and plan["layout"] == "channels_last":
        a = np.ascontiguousarray(np.moveaxis(a, -1, 1))
    return a


def conv(plan: dict, x: Any, w: Any, b: Any) -> Any:
    """The plan's Paddle calls on tensors: an optional ``F.pad``, then one ``F`` convolution."""
    import paddle.nn.functional as F

    if plan["pad"] is not None:
        x = F.pad(x, plan["pad"], mode=plan["pad_mode"], data_format=plan["kwargs"]["data_format"])
    return getattr(F, plan["function"])(x, w, b, **plan["kwargs"])


def run_forward(plan: dict, x: Any, w: Any, b: Any) -> Any:
    """float64 ``x, w, b`` in, the float64 output (NC... layout) out."""
    import paddle

    with paddle.no_grad():
        xt, wt = to_paddle(x, plan, True), to_paddle(w, plan, False)
        bt = None if b is None else to_paddle(b, plan, False)
        y = conv(plan, xt, wt, bt)
    return from_paddle(y, plan, True)


def run_backward(plan: dict, x: Any, w: Any, b: Any, grad_out: Any) -> Any:
    """``(grad_input, grad_weight, grad_bias)`` through Paddle's autodiff, as float64 arrays."""
    import paddle

    leaves = [to_paddle(x, plan, True), to_paddle(w, plan, False)]
    if b is not None:
        leaves.append(to_paddle(b, plan, False))
    for t in leaves:
        t.stop_gradient = False
    y = conv(plan, leaves[0], leaves[1], None if b is None else leaves[2])
    grads = paddle.grad([y], leaves, [to_paddle(grad_out, plan, True)])
    out = [from_paddle(grads[0], plan, True), from_paddle(grads[1], plan, False)]
    return out[0], out[1], (None if b is None else from_paddle(grads[2], plan, False))


# --------------------------------------------------------------------- spec -> plan


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values]


def make_plan(spec: ConvSpec) -> dict[str, Any]:
    """The plain-data description of the Paddle calls for ``spec`` (literals only, so it prints into a repro).

    Values go to Paddle unvalidated: rejecting an invalid problem is Paddle's job.  The
    adapter refuses only what Paddle's API cannot be asked (see the module docstring).
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs Paddle's CPU build only")
    if not isinstance(spec.dtype, str) or spec.dtype not in DTYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: not one of the suite's dtypes {DTYPES}")
    dims = spec.dims
    if dims not in _DATA_FORMATS:
        raise CannotExpress(f"input_size={spec.input_size}: Paddle has convolutions of 1 to 3 spatial axes")
    if spec.layout not in ("contiguous", "channels_last", "strided"):
        raise CannotExpress(f"layout={spec.layout!r}: no Paddle layout by that name in the suite's vocabulary")
    for name, shape in (("x", spec.input_shape), ("w", spec.weight_shape), ("b", spec.bias_shape or ())):
        if any(v < 0 for v in shape):
            raise CannotExpress(f"{name} would have shape {shape}: no tensor has a negative extent")
    channels_last = spec.layout == "channels_last"
    data_format = _DATA_FORMATS[dims][channels_last]
    if (
        isinstance(spec.padding, str)
        and spec.padding not in PADDING_STRINGS
        and spec.padding.upper() in ("SAME", "VALID")
    ):
        # Another string ('full', '') goes to Paddle as it is: rejecting it is Paddle's job.
        raise CannotExpress(
            f"padding={spec.padding!r}: Paddle reads padding strings case-insensitively, and 'SAME'/'VALID' are "
            "its own spelling of 'same'/'valid', so this one has no spelling of its own"
        )

    def per_side(pairs: Any) -> list[list[int]]:
        spatial = [[int(before), int(after)] for before, after in pairs]
        return [[0, 0], *spatial, [0, 0]] if channels_last else [[0, 0], [0, 0], *spatial]

    def padding_arg(pairs: Any) -> Any:
        if all(before == after for before, after in pairs):
            return [int(before) for before, _ in pairs]
        return per_side(pairs)

    common = {"stride": _ints(spec.stride), "dilation": _ints(spec.dilation), "groups": int(spec.groups)}
    plan: dict[str, Any] = {"dtype": spec.dtype, "layout": spec.layout, "pad": None, "pad_mode": None}
    if spec.transposed:
        if spec.padding_mode != "zeros":
            raise CannotExpress(f"padding_mode={spec.padding_mode!r}: F.conv{dims}d_transpose has no padding mode")
        if isinstance(spec.padding, str):
            raise CannotExpress(
                f"padding={spec.padding!r} on a transposed convolution: Paddle's conv_transpose 'SAME'/'VALID' "
                "are TensorFlow's (output = input*stride), a different problem, so there is no faithful spelling"
            )
        if spec.groups > 0 and spec.out_channels % spec.groups:
            raise CannotExpress(
                f"out_channels={spec.out_channels}, groups={spec.groups}: Paddle reads a transposed "
                "convolution's output channels off the weight (C_in, C_out/groups, ...), which cannot say it"
            )
        plan["function"] = f"conv{dims}d_transpose"
        plan["kwargs"] = {
            "stride": common["stride"],
            "padding": padding_arg(spec.padding),
            "output_padding": _ints(spec.output_padding),
            "groups": common["groups"],
            "dilation": common["dilation"],
            "data_format": data_format,
        }
        return plan
    if len(spec.output_padding) != dims or any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: F.conv{dims}d has no output_padding")
    if spec.padding_mode != "zeros" and spec.padding_mode not in _PAD_MODES:
        # Checked before the padding is looked at: with no padding the mode would otherwise be dropped.
        raise CannotExpress(
            f"padding_mode={spec.padding_mode!r}: Paddle's convolutions take no padding mode, and the adapter "
            "composes F.pad only for reflect/replicate/circular"
        )
    plan["function"] = f"conv{dims}d"
    if spec.padding == "same" and any(s != 1 for s in spec.stride):
        raise CannotExpress(
            f"padding='same' with stride={spec.stride}: Paddle's 'SAME' with a stride is TensorFlow's "
            "(ceil(input/stride) outputs), a different problem rather than an invalid one"
        )
    if (
        spec.padding_mode == "zeros"
        or (not isinstance(spec.padding, str) and all(p == 0 for pair in spec.padding for p in pair))
        or spec.padding == "valid"
    ):
        if isinstance(spec.padding, str):
            padding: Any = spec.padding.upper() if spec.padding in PADDING_STRINGS else spec.padding
        else:
            padding = padding_arg(spec.padding)
        plan["kwargs"] = {"padding": padding, **common, "data_format": data_format}
        return plan
    if isinstance(spec.padding, str) and spec.padding not in PADDING_STRINGS:
        raise CannotExpress(f"padding={spec.padding!r} in mode {spec.padding_mode!r}: F.pad needs explicit pads")
    pads = spec.pads
    if any(p < 0 for pair in pads for p in pair):
        raise CannotExpress(f"padding={spec.padding}: a negative pad cannot reach the convolution through F.pad")
    if any(n < 1 for n in spec.input_size):
        raise CannotExpress(
            f"input_size={spec.input_size}: F.pad would pad an empty axis into a non-empty one, so an empty "
            "input cannot reach the convolution through it"
        )
    # F.pad's list runs from the last spatial axis to the first, (before, after) each.
    plan["pad"] = [int(p) for before, after in reversed(pads) for p in (before, after)]
    plan["pad_mode"] = _PAD_MODES[spec.padding_mode]
    plan["kwargs"] = {"padding": [0] * dims, **common, "data_format": data_format}
    return plan


# ---------------------------------------------------------------------------- adapter


@functools.cache
def _paddle() -> Any:
    """Import Paddle quietly (it warns about ccache and logs through glog at import)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import paddle
    paddle.set_device("cpu")
    return paddle


def _flushes_subnormals(dtype: str) -> bool:
    """Whether a ``dtype`` convolution reads a subnormal input as 0 or flushes a subnormal result."""
    tiny = float(np.finfo(dtype).tiny)
    probes = (((1, 1, 4), (1, 1, 1)), ((1, 8, 3, 4), (8, 8, 1, 1)))
    for x_shape, w_shape in probes:
        plan = make_plan(ConvSpec(w_shape[1], w_shape[0], input_size=x_shape[2:], kernel_size=w_shape[2:],
                                  bias=False, dtype=dtype))  # fmt: skip
        w = np.zeros(w_shape)
        w[(0, 0) + (0,) * (len(w_shape) - 2)] = 1.0
        read = run_forward(plan, np.full(x_shape, tiny / 4), w, None)
        made = run_forward(plan, np.full(x_shape, tiny), w * 0.5, None)
        if (read[:, 0] == 0).any() or (made[:, 0] == 0).any():
            return True
    return False


class Paddle(Adapter):
    """PaddlePaddle's functional convolutions, forward, transposed and backward, on the CPU."""

    name = "paddle"

    def __init__(self) -> None:
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._probe()
        return self._capabilities

    def _probe(self) -> Capabilities:
        """Declare the dtypes Paddle's CPU kernels really run, found by running tiny problems."""
        _paddle()
        dtypes, notes, precision = [], [], {}
        outcome = probe_dtypes(lambda spec: self.backward(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape),
                                                          np.ones(1), np.ones(spec.output_shape)))  # fmt: skip
        for dtype, failure in outcome.items():
            if failure is not None:
                notes.append(f"{dtype} does not run on Paddle's CPU kernels: {failure[:200]}")
                continue
            dtypes.append(dtype)
            flushes = _flushes_subnormals(dtype)
            if dtype in ("float64", "float32"):
                precision[(dtype, "cpu")] = Precision(None, dtype, dtype, flushes_subnormals=flushes)
            else:  # not reached on paddlepaddle 3.3.1's CPU build; measured before it is ever declared
                precision[(dtype, "cpu")] = Precision(None, "float32", dtype, flushes_subnormals=flushes)
            if flushes:
                notes.append(f"{dtype} convolutions flush subnormal inputs or results to zero (probed at start-up)")
        return Capabilities(
            dims=(1, 2, 3),
            dtypes=tuple(dtypes),
            devices=("cpu",),
            padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
            padding_modes=("zeros", "reflect", "replicate", "circular"),
            layouts=("contiguous", "channels_last", "strided"),
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=True,
            empty_batch=True,
            precision=precision,
            notes=(*_NOTES, *notes),
        )

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        plan = make_plan(spec)
        _paddle()
        return run_forward(plan, x, w, b)

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        plan = make_plan(spec)
        _paddle()
        return run_backward(plan, x, w, b, grad_out)

    def versions(self) -> dict[str, str]:
        paddle = _paddle()
        flags = paddle.get_flags(["FLAGS_use_mkldnn"])
        return {"paddle": str(paddle.__version__), "use_mkldnn": str(bool(flags["FLAGS_use_mkldnn"]))}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        plan = make_plan(spec)
        helpers = "\n\n".join(inspect.getsource(f) for f in (to_paddle, from_paddle, conv, run_forward, run_backward))
        return _REPRO.format(
            descriptor=spec.descriptor(),
            version=self.versions()["paddle"],
            plan=textwrap.indent(pprint.pformat(plan, sort_dicts=False, width=100), " " * 7).lstrip(),
            helpers=helpers,
        )


_REPRO = '''\
# {descriptor}: paddle.nn.functional on the CPU (paddlepaddle {version}, default flags)
from __future__ import annotations

import os
import warnings

os.environ.setdefault("GLOG_minloglevel", "2")
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import paddle  # noqa: E402, F401  (used by the helpers)

PLAN = {plan}


{helpers}


def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    return run_forward(PLAN, x, w, b)


def candidate_backward(x, w, b, grad_out):
    """(grad_input, grad_weight, grad_bias) as float64 arrays, through Paddle's autodiff."""
    return run_backward(PLAN, x, w, b, grad_out)
'''


__all__ = ["Paddle", "conv", "from_paddle", "make_plan", "run_backward", "run_forward", "to_paddle"]
