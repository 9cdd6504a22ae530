"""TensorFlow on the CPU as a candidate: ``tf.nn.conv{1,2,3}d`` and ``tf.nn.conv{1,2,3}d_transpose``, eager.

Each problem is described once as a *recipe* (plain literals: :func:`recipe`), which
:func:`run_forward` / :func:`run_backward` execute; those two and their helpers are
copied verbatim into every repro script, so the script runs exactly the code the
adapter ran.

How each ConvSpec parameter reaches TensorFlow:

* layout: ``channels_last`` is TF's native ``NWC`` / ``NHWC`` / ``NDHWC``;
  ``contiguous`` is ``NCW`` / ``NCHW`` / ``NCDHW``, passed as ``data_format`` (TF's
  oneDNN kernels, float32 and bfloat16, run it; its Eigen kernels, float64 and
  float16, refuse it on the CPU, see below).  ``strided`` cannot be said: a TF
  tensor is always dense.  Filters are TF's ``(*kernel, in/groups, out)`` and, for
  the transposed ops, ``(*kernel, out, in)``.
* stride and dilation: the ops' own ``strides`` / ``dilations`` (full-rank lists).
* groups: TF infers them from the input channels over the filter's depth
  (``tf.nn.conv1d`` / ``conv2d``) and, transposed, from the output channels over the
  filter's output dimension (``conv1d_transpose`` / ``conv2d_transpose``, which are
  Conv2DBackpropInput, the op that differentiates a grouped conv2d).
  ``tf.nn.conv3d`` and ``conv3d_transpose`` have no groups (Conv3D requires the
  filter depth to equal the input channels): CannotExpress.
* padding: ``'same'`` / ``'valid'`` are TF's ``'SAME'`` / ``'VALID'`` (TF puts the odd
  pad after, as PyTorch does); explicit pairs go to ``tf.nn.conv2d`` and
  ``conv2d_transpose`` as explicit padding lists; ``conv1d`` / ``conv3d`` take
  strings only, so there the pairs go through ``tf.pad`` (CONSTANT) before a
  ``'VALID'`` convolution, and ``conv1d_transpose`` / ``conv3d_transpose`` run
  ``'VALID'`` and the adapter slices the crop off.  ``reflect`` is ``tf.pad``'s
  ``REFLECT`` before a ``'VALID'`` convolution (``'same'`` resolved as ``nn.Conv*d``
  does); ``tf.pad`` has no replicate (its ``SYMMETRIC`` repeats the edge and then
  mirrors) and no circular mode: CannotExpress.
* output_padding: carried by the transposed ops' ``output_shape``.  TF defines the
  transposed convolution as the gradient of a forward convolution that maps the
  output shape back to the input, which exists only for ``output_padding < stride``;
  ``output_padding >= stride`` (PyTorch allows it below the dilation) is CannotExpress.
* bias: TF's convolutions take none; ``tf.nn.bias_add`` follows the convolution
  (what Keras layers do in eager mode).
* backward: ``tf.GradientTape`` through the whole composition.

Kernels and precision, measured on tensorflow-cpu 2.21 (x86-64, oneDNN on by default:
``TF_ENABLE_ONEDNN_OPTS`` unset; no ``TF_SET_ONEDNN_FPMATH_MODE``; eager, so no
grappler rewrite such as the bfloat16 auto-mixed-precision pass, which is off anyway):

* float32 and bfloat16 run TF's oneDNN (``_MklNative*``) kernels: both layouts,
  dilation and grouped gradients work.  float32 is IEEE float32: no bf16 math mode,
  and ``tensor_float_32_execution_enabled()``, True by default, does not reach the
  CPU convolutions (``1 + 2**-12`` survives a 16-channel sum).  bfloat16
  accumulates in float32 and rounds once.
* float64 and float16 run TF's Eigen kernels, which on the CPU refuse NCHW,
  dilated transposed convolutions, dilated 3-D convolutions and the gradients of
  grouped convolutions.  Explicit 2-D padding leaves oneDNN for Conv2DBackpropInput
  and Conv2DBackpropFilter, so in NCHW the 2-D transposed convolution and the
  gradient of a 2-D convolution with explicit padding are refused
  (Conv2DCustomBackpropInputOp: "only supports NHWC").  Such a refusal, which TF
  words as a CPU limitation, becomes CannotExpress with TF's words; every other
  error is TF's answer and is raised as it is.
* bfloat16 where TF leaves the float32 accumulator (real discrepancies, in
  ``conformance/baselines/tensorflow.json``): ``tf.nn.bias_add`` rounds the
  convolution's bfloat16 result a second time; BiasAddGrad (grad_bias), the
  explicit-padding Conv2DBackpropFilter (2-D grad_weight) and MirrorPadGrad (the
  reflect fold of grad_input) sum in bfloat16.
* float16: ``Conv2D`` (so conv1d and conv2d forward) computes in float32 and rounds
  once, but Conv3D, the transposed ops and every gradient accumulate in float16
  (``2048 + sixteen 1s`` gives 2048, not 2064): declared as float16 accumulation.
* TF runs its CPU ops with flush-to-zero and denormals-are-zero set, so float64,
  float32 and bfloat16 convolutions flush subnormal inputs and results (probed).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import pprint
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, Grads, device_kind
from conformance.spec import DTYPES, ConvSpec
from conformance.tolerance import Precision

# Before TensorFlow is imported anywhere in this process: C++ logs to a minimum.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: data_format per dims: (channels-last, channels-first).
_FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
#: tf.pad's mode for each padding mode it has.
_PAD_MODES = {"zeros": "CONSTANT", "reflect": "REFLECT"}
#: What TF's CPU kernels say when they do not implement a (valid) problem.
_CPU_REFUSAL = re.compile(
    r"only supports the NHWC tensor format on the CPU|only supports N(D)?HWC|"
    r"CPU implementations? (?:does|do) not yet support|CPU implementation of Conv3D currently only supports|"
    r"Gradients for grouped convolutions are not supported"
)

_NOTES = (
    "eager tf.nn.conv{1,2,3}d / conv{1,2,3}d_transpose; bias by tf.nn.bias_add after the convolution "
    "(TF's convolutions take no bias); backward by tf.GradientTape",
    "layouts: channels_last is NWC/NHWC/NDHWC, contiguous is NCW/NCHW/NCDHW (data_format); strided cannot be "
    "said (TF tensors are dense)",
    "padding: 'same'/'valid' are TF's SAME/VALID; explicit pairs are conv2d's and conv2d_transpose's explicit "
    "padding lists; conv1d/conv3d take strings only, so pairs go through tf.pad (CONSTANT) before a VALID "
    "convolution, and conv1d/conv3d_transpose run VALID and are cropped by a slice",
    "padding modes: reflect is tf.pad REFLECT before a VALID convolution; tf.pad has no replicate (SYMMETRIC "
    "repeats the edge, then mirrors) and no circular mode",
    "groups: inferred by TF from the channels over the filter's (conv1d, conv2d and their transposes); "
    "tf.nn.conv3d and conv3d_transpose have no groups",
    "output_padding is carried by output_shape, which TF accepts only below the stride (the transposed op is "
    "the gradient of a forward convolution mapping output_shape back to the input)",
    "oneDNN is on (TF default on x86): float32 and bfloat16 run oneDNN kernels, float64 and float16 TF's Eigen kernels",
    "TF's CPU kernels refuse some valid problems in words (Eigen, float64/float16: NCHW, dilated transposed, "
    "dilated 3-D, gradients of grouped convolutions; also the gradient of an NCHW 2-D convolution with explicit "
    "padding): such a refusal is CannotExpress, quoting TF",
)


# ----------------------------------------------------------------- running a recipe
#
# The functions below are copied verbatim into every repro script (TensorFlow.repro_source),
# so they import what they use and touch no module globals.


def to_tf(a: Any, recipe: dict[str, Any], kind: str) -> Any:
    """A float64 array in PyTorch's layout as a TF tensor in the recipe's dtype and layout (exact).

    ``kind``: ``"data"`` (input, output gradient: (N, C, *spatial)), ``"filter"``
    (PyTorch's weight -> TF's (*kernel, in, out) or, transposed, (*kernel, out, in))
    or ``"bias"``.
    """
    import numpy as np
    import tensorflow as tf

    a = np.asarray(a, dtype=np.float64)
    if kind == "filter":
        a = np.transpose(a, (*range(2, a.ndim), 1, 0))
    elif kind == "data" and recipe["channels_last"]:
        a = np.transpose(a, (0, *range(2, a.ndim), 1))
    return tf.cast(tf.constant(np.ascontiguousarray(a)), recipe["dtype"])


def from_tf(t: Any, recipe: dict[str, Any], kind: str) -> Any:
    """A TF tensor back as a float64 array in PyTorch's layout (every dtype widens exactly)."""
    import numpy as np
    import tensorflow as tf

    a = tf.cast(t, tf.float64).numpy()
    if kind == "filter":
        a = np.transpose(a, (a.ndim - 1, a.ndim - 2, *range(a.ndim - 2)))
    elif kind == "data" and recipe["channels_last"]:
        a = np.transpose(a, (0, a.ndim - 1, *range(1, a.ndim - 1)))
    return np.ascontiguousarray(a)


def convolve(x: Any, w: Any, b: Any, recipe: dict[str, Any]) -> Any:
    """The recipe's TF ops on TF tensors: optional tf.pad, one tf.nn convolution, optional crop, bias_add."""
    import tensorflow as tf

    if recipe["pad"] is not None:
        x = tf.pad(x, recipe["pad"], mode=recipe["pad_mode"])
    op = getattr(tf.nn, recipe["function"])
    # tf.nn.conv1d alone calls its strides "stride".
    stride = "stride" if recipe["function"] == "conv1d" else "strides"
    kwargs = {stride: recipe["strides"], "padding": recipe["padding"], "data_format": recipe["data_format"],
              "dilations": recipe["dilations"]}  # fmt: skip
    shape = () if recipe["output_shape"] is None else (recipe["output_shape"],)
    y = op(x, w, *shape, **kwargs)
    if recipe["crop"] is not None:
        spatial = [slice(start, stop) for start, stop in recipe["crop"]]
        index = [slice(None), *spatial, slice(None)] if recipe["channels_last"] else [slice(None)] * 2 + spatial
        y = y[tuple(index)]
    if b is not None:
        y = tf.nn.bias_add(y, b, data_format="NHWC" if recipe["channels_last"] else "NCHW")
    return y


def run_forward(recipe: dict[str, Any], x: Any, w: Any, b: Any) -> Any:
    """float64 arrays in (PyTorch layout), float64 array out."""
    xt, wt = to_tf(x, recipe, "data"), to_tf(w, recipe, "filter")
    bt = None if b is None else to_tf(b, recipe, "bias")
    return from_tf(convolve(xt, wt, bt, recipe), recipe, "data")


def run_backward(recipe: dict[str, Any], x: Any, w: Any, b: Any, grad_out: Any) -> Any:
    """``(grad_input, grad_weight, grad_bias)`` from tf.GradientTape, as float64 arrays in PyTorch's layout."""
    import tensorflow as tf

    xt, wt = to_tf(x, recipe, "data"), to_tf(w, recipe, "filter")
    bt = None if b is None else to_tf(b, recipe, "bias")
    gy = to_tf(grad_out, recipe, "data")
    leaves = [t for t in (xt, wt, bt) if t is not None]
    with tf.GradientTape() as tape:
        tape.watch(leaves)
        y = convolve(xt, wt, bt, recipe)
    grads = tape.gradient(y, leaves, output_gradients=gy)
    if any(g is None for g in grads):
        raise RuntimeError("tf.GradientTape returned no gradient for a leaf the convolution uses")
    gx, gw = from_tf(grads[0], recipe, "data"), from_tf(grads[1], recipe, "filter")
    gb = None if bt is None else from_tf(grads[2], recipe, "bias")
    return gx, gw, gb


# ------------------------------------------------------------------ spec -> recipe


def recipe(spec: ConvSpec) -> dict[str, Any]:
    """The plain-data description of how TF computes ``spec`` (literals only, so it prints into a repro).

    Values go to TF unvalidated: rejecting an invalid problem is TF's job.  The
    adapter refuses (CannotExpress) only what TF's API cannot be told.
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs tensorflow-cpu")
    if spec.dtype not in DTYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: not one of the suite's dtypes {DTYPES}")
    dims = spec.dims
    per_axis = ("stride", "dilation", "output_padding")
    if (
        dims not in _FORMATS
        or any(len(getattr(spec, n)) != dims for n in per_axis)
        or (not isinstance(spec.padding, str) and len(spec.padding) != dims)
    ):
        # The adapter writes full-rank strides/dilations/paddings, and conv2d also takes a 2-entry list:
        # a rank mismatch would not reach TF as one.  (A kernel of another rank does: the filter's shape.)
        raise CannotExpress(f"input_size={spec.input_size}, stride={spec.stride}, dilation={spec.dilation}, "
                            f"output_padding={spec.output_padding}, padding={spec.padding}: TF has convolutions "
                            "of 1 to 3 spatial axes, and the adapter spells one entry per axis")  # fmt: skip
    if spec.layout not in ("contiguous", "channels_last"):
        raise CannotExpress(f"layout={spec.layout!r}: TF tensors are dense, NWC/NHWC/NDHWC or NCW/NCHW/NCDHW")
    if spec.padding_mode not in _PAD_MODES:
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: tf.pad has no such mode (CONSTANT, REFLECT, "
                            "SYMMETRIC only; SYMMETRIC mirrors past the edge, which is not replicate)")  # fmt: skip
    shapes = {"x": spec.input_shape, "w": spec.weight_shape, "b": spec.bias_shape or ()}
    for name, shape in shapes.items():
        if any(v < 0 for v in shape):
            raise CannotExpress(f"{name} would have shape {shape}: no tensor has a negative extent")
    if spec.groups < 1 or spec.in_channels % spec.groups:
        raise CannotExpress(
            f"in_channels={spec.in_channels}, groups={spec.groups}: TF infers groups as input channels / filter "
            f"depth, so a filter of depth in_channels // groups cannot say groups={spec.groups}"
        )
    channels_last = spec.layout == "channels_last"
    data_format = _FORMATS[dims][0 if channels_last else 1]

    def full(values: tuple[int, ...], fill: Any = 1) -> list[Any]:
        return [fill, *values, fill] if channels_last else [fill, fill, *values]

    out: dict[str, Any] = {
        "dtype": spec.dtype,
        "channels_last": channels_last,
        "data_format": data_format,
        "function": f"conv{dims}d_transpose" if spec.transposed else f"conv{dims}d",
        "strides": full(spec.stride),
        "dilations": full(spec.dilation),
        "padding": "VALID",
        "pad": None,
        "pad_mode": "CONSTANT",
        "output_shape": None,
        "crop": None,
    }
    if spec.transposed:
        return _transposed(spec, out, full)
    if any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: tf.nn.conv{dims}d has no output_padding")
    if dims == 3 and spec.groups != 1:
        raise CannotExpress(f"groups={spec.groups}: tf.nn.conv3d has no groups (Conv3D requires the filter depth "
                            "to equal the input channels)")  # fmt: skip
    if isinstance(spec.padding, str):
        if spec.padding not in ("same", "valid"):
            raise CannotExpress(f"padding={spec.padding!r}: TF's padding strings are SAME and VALID, which are "
                                "'same' and 'valid'; no other string has a TF spelling")  # fmt: skip
        if spec.padding == "same" and any(s != 1 for s in spec.stride):
            raise CannotExpress(
                f"padding='same' with stride={spec.stride}: TF's SAME with a stride is defined "
                "(ceil(input / stride) outputs), a different problem rather than an invalid one"
            )
        if spec.padding_mode == "zeros" or spec.padding == "valid":
            # TF resolves SAME itself (the odd pad after, from the dilated extent).
            out["padding"] = spec.padding.upper()
            return out
    pads = [list(pair) for pair in spec.pads]
    if all(p == 0 for pair in pads for p in pair):
        return out  # VALID, whatever the mode
    if spec.padding_mode == "zeros" and dims == 2:
        out["padding"] = full(pads, [0, 0])
        return out
    if any(n < 1 for n in spec.input_size):
        # (A negative pad tf.pad rejects itself.)
        raise CannotExpress(f"input_size={spec.input_size}: tf.pad pads an empty axis into a non-empty one, "
                            "so an empty input cannot reach the convolution through it")  # fmt: skip
    out["pad"] = full(pads, [0, 0])
    out["pad_mode"] = _PAD_MODES[spec.padding_mode]
    return out


def _transposed(spec: ConvSpec, out: dict[str, Any], full: Any) -> dict[str, Any]:
    dims = spec.dims
    if spec.padding_mode != "zeros":
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: tf.nn.conv{dims}d_transpose takes no padding mode")
    if isinstance(spec.padding, str):
        raise CannotExpress(f"padding={spec.padding!r} on a transposed convolution: TF's SAME/VALID there mean "
                            "output = input * stride (or its VALID size), not this padding")  # fmt: skip
    if spec.groups != 1 and dims == 3:
        raise CannotExpress(f"groups={spec.groups}: tf.nn.conv3d_transpose has no groups (Conv3DBackpropInputV2 "
                            "requires the filter's in-channels to equal the input's)")  # fmt: skip
    if spec.out_channels % spec.groups:
        raise CannotExpress(
            f"out_channels={spec.out_channels}, groups={spec.groups}: TF infers a transposed "
            "convolution's groups from the output channels over the filter's, which cannot say that"
        )
    if len(spec.output_padding) != dims or any(op >= s for op, s in zip(spec.output_padding, spec.stride)):
        raise CannotExpress(
            f"output_padding={spec.output_padding}, stride={spec.stride}: TF carries output_padding in "
            "output_shape, and accepts only output shapes that a forward convolution maps back to the input "
            "(output_padding < stride)"
        )
    if any(p < 0 for pair in spec.padding for p in pair):
        raise CannotExpress(f"padding={spec.padding}: a negative crop cannot be put to TF's transposed ops")
    size = list(spec.output_size)
    if dims == 2:
        if any(p != 0 for pair in spec.padding for p in pair):
            out["padding"] = full([list(pair) for pair in spec.padding], [0, 0])
        out["output_shape"] = full(size, spec.out_channels)
        out["output_shape"][0] = spec.batch
        return out
    uncropped = [o + before + after for o, (before, after) in zip(size, spec.padding)]
    out["output_shape"] = full(uncropped, spec.out_channels)
    out["output_shape"][0] = spec.batch
    if any(p != 0 for pair in spec.padding for p in pair):
        if any(o < 1 for o in size):
            # The crop is the adapter's own slice; it would answer an empty output where TF never saw one.
            raise CannotExpress(
                f"padding={spec.padding}: the transposed output would have size {spec.output_size}, "
                f"and tf.nn.conv{dims}d_transpose takes no explicit crop to refuse it with"
            )
        out["crop"] = [[before, before + o] for o, (before, _) in zip(size, spec.padding)]
    return out


# ------------------------------------------------------------------ CPU refusals


@contextlib.contextmanager
def _cpu_refusal_is_unsupported(spec: ConvSpec) -> Iterator[None]:
    """TF's CPU kernels refuse some valid problems, saying so ("... only supports NHWC", "Current CPU
    implementations do not yet support dilation rates larger than 1", "Gradients for grouped convolutions are
    not supported on CPU", ...): such a refusal becomes CannotExpress, with TF's words.  Any other error
    (a rejection of an invalid problem included) is raised as it is."""
    try:
        yield
    except Exception as exc:
        text = str(exc)
        if _CPU_REFUSAL.search(text) is None:
            raise
        line = (text.split("}}")[-1].strip().splitlines() or [type(exc).__name__])[0]
        line = re.sub(r"\s*\[Op:.*$", "", line)
        raise CannotExpress(f"TF's {spec.dtype} CPU kernel does not implement this problem: {line}") from exc


@functools.cache
def accumulates_in_float16() -> bool:
    """Whether some float16 path sums in float16: ``2048 + sixteen 1s`` over the input channels."""
    spec = ConvSpec(17, 1, input_size=(1, 1, 1), kernel_size=(1, 1, 1), bias=False, dtype="float16",
                    layout="channels_last")  # fmt: skip
    x = np.array([2048.0] + [1.0] * 16).reshape(spec.input_shape)
    return float(run_forward(recipe(spec), x, np.ones(spec.weight_shape), None).ravel()[0]) != 2064.0


@functools.cache
def flushes_subnormals(dtype: str) -> bool:
    """Whether a ``dtype`` convolution reads a subnormal input as zero or flushes a subnormal result."""
    tiny = float(np.finfo(np.float64 if dtype == "float64" else np.float16 if dtype == "float16" else np.float32).tiny)
    for channels in (1, 8):
        spec = ConvSpec(channels, channels, input_size=(3, 4), kernel_size=(1, 1), bias=False, dtype=dtype,
                        layout="channels_last")  # fmt: skip
        w = np.zeros(spec.weight_shape)
        w[0, 0, 0, 0] = 1.0
        r = recipe(spec)
        read = run_forward(r, np.full(spec.input_shape, tiny / 4), w, None)
        made = run_forward(r, np.full(spec.input_shape, tiny), w * 0.5, None)
        if (read[:, 0] == 0).any() or (made[:, 0] == 0).any():
            return True
    return False


# ------------------------------------------------------------------- adapter


class TensorFlow(Adapter):
    """TensorFlow's tf.nn convolutions on the CPU, eager, forward, transposed and backward."""

    name = "tensorflow"

    def __init__(self) -> None:
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._declare()
        return self._capabilities

    def _declare(self) -> Capabilities:
        precision: dict[tuple[str, str], Precision] = {}
        notes = list(_NOTES)
        flushing = [d for d in DTYPES if flushes_subnormals(d)]
        for dtype in DTYPES:
            flushes = dtype in flushing
            if dtype in ("float64", "float32"):
                precision[(dtype, "cpu")] = Precision(None, dtype, dtype, flushes_subnormals=flushes)
            elif dtype == "float16":
                acc = "float16" if accumulates_in_float16() else "float32"
                precision[(dtype, "cpu")] = Precision("float16" if flushes else None, acc, dtype,
                                                      flushes_subnormals=flushes)  # fmt: skip
            else:
                precision[(dtype, "cpu")] = Precision(None, "float32", dtype, flushes_subnormals=flushes)
        if accumulates_in_float16():
            notes.append("float16: Conv2D (conv1d/conv2d forward) sums in float32, but Conv3D, the transposed ops "
                         "and the gradients sum in float16 (2048 + sixteen 1s = 2048): declared float16 "
                         "accumulation")  # fmt: skip
        if flushing:
            notes.append(f"{', '.join(flushing)}: TF runs CPU ops with flush-to-zero / denormals-are-zero, so "
                         "subnormal inputs and results are flushed (probed at start-up)")  # fmt: skip
        return Capabilities(
            dims=(1, 2, 3),
            dtypes=DTYPES,
            devices=("cpu",),
            padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
            padding_modes=tuple(_PAD_MODES),
            # TF's own default (NHWC) first: problems are drawn, and shrink, towards the layout every TF CPU
            # kernel runs; channels-first is refused by the Eigen ones (float64, float16).
            layouts=("channels_last", "contiguous"),
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=True,
            empty_batch=True,
            precision=precision,
            notes=tuple(notes),
        )

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        r = recipe(spec)
        with _cpu_refusal_is_unsupported(spec):
            return run_forward(r, x, w, b)

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        r = recipe(spec)
        with _cpu_refusal_is_unsupported(spec):
            return run_backward(r, x, w, b, grad_out)

    def versions(self) -> dict[str, str]:
        import tensorflow as tf

        return {"tensorflow": tf.__version__}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        r = recipe(spec)
        helpers = "\n\n".join(inspect.getsource(f) for f in (to_tf, from_tf, convolve, run_forward, run_backward))
        backward = _REPRO_BACKWARD if operation == "backward" else ""
        return (
            _REPRO.format(
                descriptor=spec.descriptor(),
                version=self.versions()["tensorflow"],
                recipe=textwrap.indent(pprint.pformat(r, sort_dicts=False, width=100), " " * 9).lstrip(),
                helpers=helpers,
            )
            + backward
        )


_REPRO = '''\
# {descriptor}: TensorFlow CPU, eager tf.nn ops (tensorflow {version})
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402, F401

RECIPE = {recipe}


{helpers}


def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    return run_forward(RECIPE, x, w, b)
'''

_REPRO_BACKWARD = '''

def candidate_backward(x, w, b, grad_out):
    """(grad_input, grad_weight, grad_bias) by tf.GradientTape, as the conformance adapter computed them."""
    return run_backward(RECIPE, x, w, b, grad_out)
'''


__all__ = ["TensorFlow", "recipe", "run_backward", "run_forward"]
