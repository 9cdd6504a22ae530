"""MLX on the CPU as a candidate: ``mx.conv_general`` and ``mx.conv_transpose{1,2,3}d``, autodiff by ``mx.vjp``.

Each problem becomes a *recipe* of literals (the MLX function and its keyword
arguments), which :func:`run_forward` / :func:`run_backward` execute and
:meth:`Mlx.repro_source` prints into a standalone script together with the
source of those functions: the script runs exactly the code the adapter ran.

How the spec's parameters reach MLX (measured on MLX 0.32.4, ``mlx[cpu]``, Linux x86-64):

* Layout.  MLX convolves channels-last arrays (input ``N...C``, weight ``O...I``).
  The arrays are made in the spec's (PyTorch) shape with the spec's memory layout
  (``contiguous``: a row-major ``NC...`` buffer; ``channels_last``: a row-major
  ``N...C`` buffer seen as ``NC...``; ``strided``: a view into a NaN-filled
  buffer), and ``mx.transpose`` gives MLX its ``N...C`` view of them, so MLX's
  kernels read whatever strides that leaves.  Transposing is data conversion;
  every product and sum is MLX's.
* Forward: ``mx.conv_general(x, w, stride, padding=(lo, hi), kernel_dilation, groups)``,
  which takes asymmetric padding natively.  ``'valid'`` and ``'same'`` (stride 1
  only, where it is defined) are resolved here to ``(lo, hi)`` pairs: MLX has no
  padding strings.  ``reflect`` and ``replicate`` go through MLX's own ``mx.pad``
  (modes ``reflect`` and ``edge``) before the convolution; ``mx.pad`` has no
  circular mode, so ``circular`` is not supported.
* Transposed: ``mx.conv_transpose{1,2,3}d(x, w, stride, padding, dilation,
  output_padding, groups)`` for symmetric crops (MLX validates its own
  ``output_padding`` there).  An asymmetric crop goes to ``mx.conv_general`` with
  ``input_dilation=stride, flip=True`` and ``padding=(d*(k-1) - before,
  d*(k-1) - after + output_padding)``, which is how ``mx.conv_transpose*`` is
  itself defined (the same primitive; equal bit for bit on symmetric problems).
  Only valid problems take that route (it folds ``output_padding`` into the
  padding, so MLX could not reject a bad one).  The weight
  ``(C_in, C_out/groups, *k)`` is rearranged to MLX's ``(C_out, *k, C_in/groups)``.
* Bias: MLX's convolutions take none; it is added with MLX's broadcasting
  ``y + b`` after the convolution, exactly as ``mlx.nn.Conv*d`` does.
* Backward: ``mx.vjp`` of that whole function (layout views included) with
  respect to ``x``, ``w`` and ``b``.

Precision (``tests/test_adapter_mlx.py`` keeps the evidence):

* float32: float32 products and sums (``cblas_sgemm`` on its im2col path, a
  float32 loop on its general path); subnormals neither flushed nor read as zero.
* float16 / bfloat16: widened to float32, accumulated in float32, rounded once
  to the output type (``2048 + sixteen 1s`` gives 2064 in float16, on the GEMM
  path and the general path; the bias gradient's sum too).  But the bias is a
  separate ``y + b`` in the output type, so a forward result *with* a bias is
  rounded twice, which no :class:`~conformance.tolerance.Precision` can declare:
  such problems are refused (``CannotExpress``) rather than judged under a false
  declaration.  Gradients are unaffected (they do not pass through that rounding).
* float64: the CPU convolution converts float64 to float32, runs the float32 GEMM
  and returns float64 arrays holding float32 results (``(1 + 2**-30) + 1`` gives
  2), declared as such: float32 input rounding and accumulation, float64 output
  (a bias is added in float64).  Its general path (dilation, transposed, most
  gradients) raises ``[Convolution::eval] got unsupported data type``: declared
  supported all the same, so that the refusals are reported, not hidden.
* Grouped 3-D problems: MLX refuses them ("Can only handle groups != 1 in 1D or
  2D convolutions"); declared supported so that the refusal is reported.
* No MLX setting changes any of this on the CPU: there is no TF32-like switch,
  and no graph rewrite (``mx.compile`` is not used).
"""

from __future__ import annotations

import inspect
import pprint
import textwrap
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, Grads, device_kind, probe_dtypes
from conformance.spec import DTYPES, ConvSpec
from conformance.tolerance import Precision, default_precision

#: The spec's padding modes and ``mx.pad``'s name for each (zeros is conv_general's own padding).
PAD_MODES = {"reflect": "reflect", "replicate": "edge"}

_NOTES = (
    "forward: mx.conv_general with (lo, hi) padding lists (asymmetric natively); 'same' (stride 1) and 'valid' "
    "are resolved by the adapter, MLX has no padding strings",
    "reflect and replicate: MLX's own mx.pad (modes 'reflect', 'edge') before the convolution; mx.pad has no "
    "circular mode, so circular is not supported",
    "transposed: mx.conv_transpose{1,2,3}d for symmetric crops; asymmetric crops through mx.conv_general with "
    "input_dilation=stride and flip=True (how mx.conv_transpose is defined), valid problems only",
    "layouts: arrays are built in the spec's shape with its memory layout and handed to MLX as mx.transpose views "
    "(N...C), so MLX reads contiguous, channels-last and strided buffers through their strides",
    "bias: MLX convolutions take none; added as y + b (as mlx.nn.Conv*d does)",
    "float16/bfloat16 accumulate in float32 and round once, but the separate y + b rounds a biased forward "
    "result a second time, which the precision model cannot declare: those problems are refused",
    "float64: MLX's CPU convolution computes in float32 (inputs rounded to float32, float32 GEMM) and returns "
    "float64; declared as such. Its general path (dilation, transposed, gradients) raises 'unsupported data type'",
    "backward: mx.vjp of the whole function (layout views and bias add included)",
    "MLX refuses groups in 3-D ('[conv] Can only handle groups != 1 in 1D or 2D convolutions'): declared supported "
    "all the same, so that the refusals are reported (baseline mlx-3d-groups-refused), not hidden",
)


# ----------------------------------------------------------------- the computation
#
# The functions below are copied verbatim into every repro script (see Mlx.repro_source),
# so they import what they use and touch no module globals.


def as_mlx(a: Any, dtype: str, layout: str) -> Any:
    """A float64 array as an MLX array of ``dtype``, in the array's own (PyTorch) shape, with ``layout`` memory.

    * ``contiguous``: a row-major buffer of that shape;
    * ``channels_last``: a row-major buffer with the channel axis (1) last, seen through
      ``mx.transpose`` in the original shape (1-D arrays have no layout to choose);
    * ``strided``: a view into a NaN-filled buffer with twice the channels (axis 1) and
      ``2*L + 1`` on the last axis, starting one element in.
    The conversion is exact: the values are representable in ``dtype``.
    """
    import mlx.core as mx
    import numpy as np

    a = np.ascontiguousarray(a, dtype=np.float64)

    def convert(host: Any) -> Any:
        # numpy has no bfloat16: go through float32 (exact for every value of the narrower types).
        if dtype == "float64":
            return mx.array(host, dtype=mx.float64)
        return mx.array(host.astype(np.float32)).astype(getattr(mx, dtype))

    if layout == "contiguous" or (layout == "channels_last" and a.ndim < 3):
        return convert(a)
    if layout == "channels_last":
        last = (0, *range(2, a.ndim), 1)
        back = (0, a.ndim - 1, *range(1, a.ndim - 1))
        return mx.transpose(convert(np.ascontiguousarray(a.transpose(last))), back)
    if layout == "strided":
        big, index = list(a.shape), [slice(None)] * a.ndim
        big[-1], index[-1] = 2 * a.shape[-1] + 1, slice(1, None, 2)
        if a.ndim >= 3:
            big[1], index[1] = 2 * a.shape[1], slice(None, None, 2)
        host = np.full(big, np.nan)
        host[tuple(index)] = a
        return convert(host)[tuple(index)]
    raise ValueError(f"layout={layout!r}")


def as_numpy(a: Any) -> Any:
    """An MLX array as float64 numpy (exact: every MLX float type widens to float32 or float64)."""
    import mlx.core as mx
    import numpy as np

    wide = mx.float64 if a.dtype == mx.float64 else mx.float32
    return np.array(a.astype(wide)).astype(np.float64)


def mlx_conv(recipe: dict, x: Any, w: Any, b: Any) -> Any:
    """The convolution ``recipe`` describes, on MLX arrays in the spec's (PyTorch) shapes; the result in that shape."""
    import mlx.core as mx

    d = x.ndim - 2
    last = (0, *range(2, d + 2), 1)  # N C ... -> N ... C
    xm = mx.transpose(x, last)
    if recipe["transposed_weight"]:
        # (C_in, C_out/g, *k) -> (C_out, *k, C_in/g)
        g = recipe["groups"]
        cin, cout_g, k = w.shape[0], w.shape[1], w.shape[2:]
        wm = mx.reshape(w, (g, cin // g, cout_g, *k))
        wm = mx.reshape(mx.transpose(wm, (0, 2, *range(3, 3 + d), 1)), (g * cout_g, *k, cin // g))
    else:
        wm = mx.transpose(w, last)  # (C_out, C_in/g, *k) -> (C_out, *k, C_in/g)
    if recipe["pad"] is not None:
        xm = mx.pad(xm, [(0, 0), *recipe["pad"], (0, 0)], mode=recipe["pad_mode"])
    y = getattr(mx, recipe["function"])(xm, wm, **recipe["kwargs"])
    if b is not None:
        y = y + b
    return mx.transpose(y, (0, d + 1, *range(1, d + 1)))


def run_forward(recipe: dict, x: Any, w: Any, b: Any) -> Any:
    """float64 arrays in, float64 array out."""
    import mlx.core as mx

    dtype, layout = recipe["dtype"], recipe["layout"]
    xm, wm = as_mlx(x, dtype, layout), as_mlx(w, dtype, layout)
    bm = None if b is None else as_mlx(b, dtype, layout)
    y = mlx_conv(recipe, xm, wm, bm)
    mx.eval(y)
    return as_numpy(y)


def run_backward(recipe: dict, x: Any, w: Any, b: Any, grad_out: Any) -> Any:
    """``(grad_input, grad_weight, grad_bias)`` by ``mx.vjp``, as float64 arrays (grad_bias None without bias)."""
    import mlx.core as mx

    dtype, layout = recipe["dtype"], recipe["layout"]
    primals = [as_mlx(x, dtype, layout), as_mlx(w, dtype, layout)]
    if b is not None:
        primals.append(as_mlx(b, dtype, layout))
    cotangent = as_mlx(grad_out, dtype, layout)

    def f(*args: Any) -> Any:
        return [mlx_conv(recipe, args[0], args[1], args[2] if len(args) > 2 else None)]

    _, grads = mx.vjp(f, primals, [cotangent])
    mx.eval(grads)
    out = [as_numpy(g) for g in grads]
    return out[0], out[1], out[2] if b is not None else None


# ---------------------------------------------------------------- spec -> recipe


def recipe(spec: ConvSpec, operation: str = "forward") -> dict[str, Any]:
    """The literal description of how ``spec`` is put to MLX; raises :class:`CannotExpress` where it cannot be.

    Nothing here validates: a value MLX can be given is given to it, so that
    rejecting an invalid problem is MLX's job.
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs MLX's CPU backend only")
    if spec.dtype not in DTYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: not one of the suite's dtypes {DTYPES}")
    if spec.layout not in ("contiguous", "channels_last", "strided"):
        raise CannotExpress(f"layout={spec.layout!r}: no memory layout by that name")
    dims = spec.dims
    if dims not in (1, 2, 3):
        raise CannotExpress(f"input_size={spec.input_size}: MLX has convolutions of 1 to 3 spatial axes")
    if operation == "forward" and spec.bias and spec.dtype in ("float16", "bfloat16"):
        raise CannotExpress(
            f"bias in {spec.dtype}: MLX's convolutions take no bias and y + b rounds the {spec.dtype} result a "
            "second time, which no precision declaration can describe (the gradients are not affected)"
        )
    if spec.transposed:
        return _transposed(spec, dims)
    if any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: mx.conv_general has no output_padding")
    if spec.padding_mode != "zeros" and spec.padding_mode not in PAD_MODES:
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: mx.pad has no such mode")
    if isinstance(spec.padding, str):
        if spec.padding not in ("same", "valid"):
            raise CannotExpress(f"padding={spec.padding!r}: MLX has no padding strings")
        if spec.padding == "same" and any(s != 1 for s in spec.stride):
            raise CannotExpress(
                f"padding='same' with stride={spec.stride}: MLX has no padding strings and 'same' is defined for "
                "stride 1 only, so there is nothing to resolve it to"
            )
    pads = [list(pair) for pair in spec.pads]
    kwargs: dict[str, Any] = {
        "stride": list(spec.stride),
        "padding": ([lo for lo, _ in pads], [hi for _, hi in pads]),
        "kernel_dilation": list(spec.dilation),
        "groups": spec.groups,
    }
    pad = None
    if spec.padding_mode != "zeros" and any(p != 0 for pair in pads for p in pair):
        pad = [tuple(pair) for pair in pads]
        kwargs["padding"] = ([0] * dims, [0] * dims)
    return _recipe(spec, "conv_general", kwargs, pad=pad)


def _transposed(spec: ConvSpec, dims: int) -> dict[str, Any]:
    if spec.padding_mode != "zeros":
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: MLX's transposed convolution pads with zeros only")
    if isinstance(spec.padding, str):
        raise CannotExpress(f"padding={spec.padding!r}: MLX's transposed convolution takes explicit padding only")
    if spec.groups < 1 or spec.in_channels % spec.groups or spec.out_channels % spec.groups:
        raise CannotExpress(
            f"in_channels={spec.in_channels}, out_channels={spec.out_channels}, groups={spec.groups}: MLX's "
            "transposed weight (C_out, *k, C_in/groups) cannot be formed from the spec's (C_in, C_out/groups, *k)"
        )
    if all(lo == hi for lo, hi in spec.padding):

        def axis(values: tuple[int, ...]) -> Any:
            # conv_transpose1d takes ints: a one-entry field is its int, anything else goes as it is (and is
            # refused by MLX's binding) rather than being cut down to one entry here.
            return values[0] if dims == 1 and len(values) == 1 else tuple(values)

        kwargs = {
            "stride": axis(spec.stride),
            "padding": axis(tuple(lo for lo, _ in spec.padding)),
            "dilation": axis(spec.dilation),
            "output_padding": axis(spec.output_padding),
            "groups": spec.groups,
        }
        return _recipe(spec, f"conv_transpose{dims}d", kwargs)
    if not spec.is_valid():
        raise CannotExpress(
            "an asymmetric transposed crop goes through mx.conv_general, which takes output_padding and the crops "
            "folded into its padding, so MLX could not see (and reject) what makes this problem invalid"
        )
    full = [d * (k - 1) for d, k in zip(spec.dilation, spec.kernel_size)]
    kwargs = {
        "stride": [1] * dims,
        "padding": (
            [f - lo for f, (lo, _) in zip(full, spec.padding)],
            [f - hi + op for f, (_, hi), op in zip(full, spec.padding, spec.output_padding)],
        ),
        "kernel_dilation": list(spec.dilation),
        "input_dilation": list(spec.stride),
        "groups": spec.groups,
        "flip": True,
    }
    return _recipe(spec, "conv_general", kwargs)


def _recipe(spec: ConvSpec, function: str, kwargs: dict[str, Any], pad: Any = None) -> dict[str, Any]:
    return {
        "function": function,
        "kwargs": kwargs,
        "pad": pad,
        "pad_mode": PAD_MODES.get(spec.padding_mode, "constant"),
        "transposed_weight": bool(spec.transposed),
        "groups": spec.groups,
        "dtype": spec.dtype,
        "layout": spec.layout,
    }


# ------------------------------------------------------------------------- adapter


class Mlx(Adapter):
    """Apple's MLX, CPU backend: its own convolution primitives and autodiff."""

    name = "mlx"

    def __init__(self) -> None:
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._probe()
        return self._capabilities

    def _probe(self) -> Capabilities:
        """Declare the dtypes MLX's CPU convolution really runs, found by running one tiny problem each."""
        outcome = probe_dtypes(lambda spec: self.forward(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape),
                                                         None), transposed=False, bias=False)  # fmt: skip
        dtypes = [dtype for dtype, failure in outcome.items() if failure is None]
        notes = [f"{dtype} does not run on MLX's CPU backend: {failure}"
                 for dtype, failure in outcome.items() if failure]  # fmt: skip
        return Capabilities(
            dims=(1, 2, 3),
            dtypes=tuple(dtypes),
            devices=("cpu",),
            padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
            padding_modes=("zeros", "reflect", "replicate"),
            layouts=("contiguous", "channels_last", "strided"),
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=True,
            empty_batch=True,
            precision={(d, "cpu"): PRECISION.get(d) or default_precision(d) for d in dtypes},
            notes=(*_NOTES, *notes),
        )

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return run_forward(recipe(spec, "forward"), x, w, b)

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        return run_backward(recipe(spec, "backward"), x, w, b, grad_out)

    def versions(self) -> dict[str, str]:
        import mlx.core as mx

        return {"mlx": mx.__version__}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        r = recipe(spec, operation)
        helpers = "\n\n".join(inspect.getsource(f) for f in (as_mlx, as_numpy, mlx_conv, run_forward, run_backward))
        return _REPRO.format(
            descriptor=spec.descriptor(),
            version=self.versions()["mlx"],
            function=f"mx.{r['function']}",
            recipe=textwrap.indent(pprint.pformat(r, sort_dicts=False, width=100), " " * 9).lstrip(),
            helpers=helpers,
        )


#: Measured on MLX 0.32.4 CPU (see the module docstring); dtypes not listed get the default.
PRECISION: dict[str, Precision] = {
    "float32": Precision(None, "float32", "float32"),
    "float16": Precision(None, "float32", "float16"),
    "bfloat16": Precision(None, "float32", "bfloat16"),
    "float64": Precision("float32", "float32", "float64"),
}


_REPRO = '''\
# {descriptor}: MLX {version} CPU, {function}
from __future__ import annotations

import mlx.core as mx  # noqa: F401  (used by the helpers)
import numpy as np  # noqa: F401

RECIPE = {recipe}


{helpers}

def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    return run_forward(RECIPE, x, w, b)


def candidate_backward(x, w, b, grad_out):
    """(grad_input, grad_weight, grad_bias) as the conformance adapter computed them."""
    return run_backward(RECIPE, x, w, b, grad_out)
'''


__all__ = ["PRECISION", "Mlx", "as_mlx", "as_numpy", "mlx_conv", "recipe", "run_backward", "run_forward"]
