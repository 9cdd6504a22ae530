"""JAX on the CPU (XLA:CPU) as a candidate: ``jax.lax.conv_general_dilated``, jitted, and ``jax.vjp`` for backward.

Each problem is put to JAX's one convolution primitive with every parameter the
API carries passed natively:

* ``window_strides``, ``rhs_dilation`` (the spec's dilation) and
  ``feature_group_count`` (groups) as given;
* explicit ``(lo, hi)`` padding pairs, so asymmetric padding is native; the
  spec's ``'same'`` is JAX's ``'SAME'`` and ``'valid'`` is ``'VALID'``, resolved
  by JAX (``lax.padtype_to_pads``: the *dilated* kernel extent, the odd extra pad
  at the end, as the spec says), for stride 1 only: JAX's ``'SAME'`` with a
  stride is TensorFlow's (``ceil(input / stride)`` outputs), a different problem
  from the spec's, which is invalid there, so that has no faithful spelling;
* ``dimension_numbers`` say the layout: ``('NCHW', 'OIHW', 'NCHW')`` for
  contiguous tensors and Flax's ``('NHWC', 'HWIO', 'NHWC')`` for channels_last
  (the arrays are handed to JAX in that axis order; 1-D and 3-D alike).  A JAX
  array has no strides, so the strided layout cannot be expressed;
* reflect / replicate / circular padding is JAX's own ``jnp.pad`` (modes
  ``'reflect'``, ``'edge'``, ``'wrap'``, which mean what the spec's modes mean)
  in front of the convolution; ``'same'`` in those modes is resolved by the
  adapter as ``nn.Conv*d`` resolves it.

The transposed convolution is ``conv_general_dilated`` with ``lhs_dilation`` set
to the stride, not ``lax.conv_transpose``: that wrapper has no
``feature_group_count`` (so it cannot say a grouped problem) and is itself the
same primitive with ``lhs_dilation``, so nothing XLA runs is lost.  The spec's
crop and ``output_padding`` become the padding of the dilated input, ``(d*(k-1) -
before, d*(k-1) - after + output_padding)`` (negative = crop, which XLA takes
natively), and the ``(C_in, C_out/groups, *k)`` weight is flipped and regrouped to
``(C_out, C_in/groups, *k)`` with ``lax.rev`` and reshapes inside the jitted
function: what ``conv_transpose(transpose_kernel=True)`` does, plus the group
axis it lacks (JAX's own gradient of a grouped convolution regroups the same way).

``conv_general_dilated`` has no bias: the bias is JAX's add after it.  In float16
and bfloat16 a plain ``conv(x, w) + b`` rounds twice (XLA:CPU rounds the
convolution's float32 result to the dtype, then adds: the optimized HLO keeps
that ``convert`` under XLA's default flags), which no conv with a bias
does in PyTorch, ONNX or cuDNN; so with a bias the convolution is asked for its
float32 result (``preferred_element_type=float32``, the accumulator XLA:CPU uses
anyway), the bias added in float32 and the sum rounded once (``astype``).  Without
a bias the convolution returns the dtype itself, as users call it.

Backward is ``jax.vjp`` of that same jitted function: JAX's own transpose rules
(the gradient convolutions, ``lax.rev``, the bias ``reduce_sum``), run by XLA.

Float64 needs ``jax_enable_x64``, a process-wide switch: creating the adapter
turns it on (it changes no float32, float16 or bfloat16 computation here).

Precision, measured on jax / jaxlib 0.10.2 (XLA:CPU, AMD EPYC Zen 4, no
``XLA_FLAGS``, ``jax_default_matmul_precision`` unset, ``precision=None``):

* float64 and float32: products and sums in their own format (XLA:CPU's default
  precision is full float32; there is no TF32 or bf16 pass on the CPU): the
  default declaration;
* float16 and bfloat16: XLA:CPU converts the operands to float32, convolves in
  float32 and converts the result (the optimized HLO shows ``convert`` around an
  f32 ``convolution``): float32 accumulation, one rounding; ``2048 + sixteen 1s``
  gives 2064 in float16, which a float16 accumulator could not;
* subnormals: XLA:CPU computes with the CPU's flush-to-zero and
  denormals-are-zero modes set (elementwise ops flush too), so float64, float32 and bfloat16 (computed in
  float32) read subnormal inputs as zero and flush subnormal results; float16
  values are all normal in float32 and its subnormal results survive the final
  conversion.  Probed at start-up (:func:`flushes_subnormals`).

Known XLA:CPU behaviour the suite found (conformance/baselines/jax.json): a grouped float64
convolution is run as a dense one with a zero-masked kernel (NaN or infinity leaks
across groups); the float16/bfloat16 gradient of ``jnp.pad``'s reflect/edge/wrap
border is rounded twice; and several invalid problems are answered (negative
padding crops, a non-positive output size is clamped to 0, zero channels, empty
inputs, four spatial axes, ``jnp.pad`` reflecting or wrapping past the input).

Compiling is the expensive part (0.1 to 1 s per problem on a busy 2-core VM, the
backward's three convolutions the most, against well under a millisecond for a
cached call), so the jitted forward and backward functions are
kept per spec in a small LRU: the calls of one problem (a metamorphic relation's
several calls, a replayed failure, the backward after a forward) compile once.
"""

from __future__ import annotations

import inspect
import pprint
import textwrap
from collections import OrderedDict
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, Grads, device_kind
from conformance.spec import DTYPES, ConvSpec
from conformance.tolerance import Precision, default_precision

#: The spec's padding modes (beyond zeros) and the ``jnp.pad`` mode that means the same.
PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

# Jitted functions of this many problems are kept: Hypothesis repeats a problem
# while shrinking and in the metamorphic relations, seldom far apart.
_CACHE_SIZE = 32

_NOTES = (
    "forward and transposed: jax.lax.conv_general_dilated, jitted (XLA:CPU); backward: jax.vjp of the same "
    "jitted function, so JAX's own transpose rules and XLA's gradient convolutions are what is judged",
    "stride, dilation (rhs_dilation), groups (feature_group_count) and explicit (lo, hi) padding pairs native; "
    "'same'/'valid' are JAX's 'SAME'/'VALID' (stride 1: JAX's strided 'SAME' is TensorFlow's, another problem)",
    "reflect/replicate/circular: JAX's own jnp.pad (modes reflect/edge/wrap) before the convolution; 'same' in "
    "those modes resolved by the adapter as nn.Conv*d resolves it",
    "transposed: conv_general_dilated with lhs_dilation=stride (lax.conv_transpose has no feature_group_count); "
    "the crop and output_padding become the padding (d*(k-1)-before, d*(k-1)-after+output_padding) and the "
    "weight is flipped (lax.rev) and regrouped inside the jitted function",
    "layouts: channels_last is dimension_numbers ('NHWC', 'HWIO', 'NHWC') with the arrays in that axis order; "
    "a JAX array has no strides, so the strided layout cannot be expressed",
    "bias: conv_general_dilated has none; float16/bfloat16 with a bias take the convolution's float32 result "
    "(preferred_element_type=float32), add the bias in float32 and round once; a plain conv(x, w) + b in the "
    "dtype would round twice (XLA keeps the rounding between them)",
    "float64 needs jax_enable_x64, a process-wide switch: creating the adapter turns it on",
    "float16/bfloat16: XLA:CPU converts to float32, convolves in float32 and rounds once (optimized HLO)",
)


# ----------------------------------------------------------------- the computation
#
# The functions below are copied verbatim into every repro script (see
# Jax.repro_source), so they import what they use and touch no module globals:
# the repro then runs exactly the code the adapter ran.


def conv_function(plan: dict[str, Any]) -> Any:
    """``conv(x, w, b)`` in JAX for ``plan`` (not jitted): optional ``jnp.pad``, the convolution, the bias."""
    import jax.numpy as jnp
    from jax import lax

    dtype = jnp.dtype(plan["dtype"])
    kwargs = dict(plan["conv"])
    if not isinstance(kwargs["padding"], str):
        kwargs["padding"] = [tuple(pair) for pair in kwargs["padding"]]
    kwargs["dimension_numbers"] = tuple(kwargs["dimension_numbers"])
    wide = jnp.float32 if plan["bias_in_float32"] else None

    def regroup(w: Any) -> Any:
        # (C_in, C_out/g, *k) -> (C_out, C_in/g, *k), flipped;
        # channels_last: (*k, C_in, C_out/g) -> (*k, C_in/g, C_out), flipped.
        g, n = plan["groups"], plan["dims"]
        if plan["layout"] == "channels_last":
            k, (cin, cog) = w.shape[:n], w.shape[n:]
            w = w.reshape(*k, g, cin // g, cog)
            w = jnp.swapaxes(w, n, n + 1).reshape(*k, cin // g, g * cog)
            return lax.rev(w, tuple(range(n)))
        (cin, cog), k = w.shape[:2], w.shape[2:]
        w = w.reshape(g, cin // g, cog, *k)
        w = jnp.swapaxes(w, 1, 2).reshape(g * cog, cin // g, *k)
        return lax.rev(w, tuple(range(2, 2 + n)))

    def conv(x: Any, w: Any, b: Any) -> Any:
        if plan["pad"] is not None:
            x = jnp.pad(x, plan["pad"]["widths"], mode=plan["pad"]["mode"])
        if plan["transposed"]:
            w = regroup(w)
        y = lax.conv_general_dilated(x, w, **kwargs, preferred_element_type=wide)
        if b is not None:
            y = (y + b.astype(y.dtype).reshape(plan["bias_shape"])).astype(dtype)
        return y

    return conv


def jitted(plan: dict[str, Any], operation: str) -> Any:
    """The jitted forward ``f(x, w, b)``, or backward ``f(x, w, b, grad_out) -> (gx, gw, gb)`` through ``jax.vjp``."""
    import jax

    conv = conv_function(plan)
    if operation == "forward":
        return jax.jit(conv)

    def backward(x: Any, w: Any, b: Any, grad_out: Any) -> Any:
        if b is None:
            _, vjp = jax.vjp(lambda x, w: conv(x, w, None), x, w)
            return (*vjp(grad_out), None)
        _, vjp = jax.vjp(conv, x, w, b)
        return vjp(grad_out)

    return jax.jit(backward)


def to_jax(plan: dict[str, Any], a: Any, axes: Any) -> Any:
    """A float64 array as a JAX array of the plan's dtype, its axes in ``axes`` order (exact: the values fit)."""
    import jax.numpy as jnp
    import numpy as np

    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    if axes is not None:
        a = np.transpose(a, axes)
    return jnp.asarray(np.ascontiguousarray(a).astype(jnp.dtype(plan["dtype"])))


def from_jax(y: Any, axes: Any) -> Any:
    """A JAX result as a float64 numpy array, its axes put back (every dtype here widens exactly)."""
    import numpy as np

    if y is None:
        return None
    y = np.asarray(y).astype(np.float64)
    return y if axes is None else np.transpose(y, np.argsort(axes))


def run(plan: dict[str, Any], function: Any, x: Any, w: Any, b: Any, grad_out: Any = None) -> Any:
    """Call a :func:`jitted` function on float64 arrays: ``y``, or ``(gx, gw, gb)`` when ``grad_out`` is given."""
    axes = plan["axes"]
    args = [to_jax(plan, x, axes["x"]), to_jax(plan, w, axes["w"]), to_jax(plan, b, None)]
    if grad_out is None:
        return from_jax(function(*args), axes["x"])
    gx, gw, gb = function(*args, to_jax(plan, grad_out, axes["x"]))
    return from_jax(gx, axes["x"]), from_jax(gw, axes["w"]), from_jax(gb, None)


# ------------------------------------------------------------ spec -> plan


def _spatial(dims: int) -> str:
    # Letters for the spatial axes in dimension_numbers (N, C, I and O are taken).
    return "DHW"[3 - dims :] if dims <= 3 else "ABDEFGHJKLM"[:dims]


def plan(spec: ConvSpec) -> dict[str, Any]:
    """The plain-data description of how ``spec`` is put to JAX (literals only, so it prints into a repro).

    Values go to JAX unvalidated: rejecting an invalid problem is the backend's
    job.  :class:`CannotExpress` is raised only where a parameter has no JAX
    spelling: another device, a dtype, layout, padding mode or padding string
    outside the suite's vocabulary, the strided layout, ``'same'`` with a stride,
    output padding on a forward convolution, and the transposed parameters the
    adapter must fold into the padding or the regrouped weight (see there).
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs JAX's CPU backend only")
    if spec.dtype not in DTYPES:
        # JAX takes "half", "int8", "complex64" and more; only the suite's names mean what it asks.
        raise CannotExpress(f"dtype={spec.dtype!r}: not one of the suite's dtypes {DTYPES}")
    if spec.layout == "strided":
        raise CannotExpress("layout='strided': a JAX array has no strides (jnp.asarray copies a view)")
    if spec.layout not in ("contiguous", "channels_last"):
        raise CannotExpress(f"layout={spec.layout!r}: no JAX axis order by that name in the suite's vocabulary")
    if spec.padding_mode != "zeros" and spec.padding_mode not in PAD_MODES:
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: no jnp.pad mode stands for it")
    dims, last = spec.dims, spec.layout == "channels_last"
    sp = _spatial(dims)
    x_spec = "N" + sp + "C" if last else "NC" + sp
    forward_axes = (*range(2, 2 + dims), 1, 0) if last else None  # OI* -> *IO
    x_axes = (0, *range(2, 2 + dims), 1) if last else None
    out: dict[str, Any] = {
        "dtype": spec.dtype,
        "layout": spec.layout,
        "dims": dims,
        "transposed": spec.transposed,
        "groups": spec.groups,
        "pad": None,
        "bias_in_float32": spec.bias and spec.dtype in ("float16", "bfloat16"),
        "bias_shape": [-1] if last else [1, -1, *([1] * dims)],
    }
    if spec.transposed:
        return _transposed(spec, out, x_spec, sp, x_axes)
    if len(spec.output_padding) != dims or any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: conv_general_dilated has no output_padding")
    conv: dict[str, Any] = {
        "window_strides": list(spec.stride),
        "padding": None,
        "rhs_dilation": list(spec.dilation),
        "dimension_numbers": [x_spec, sp + "IO" if last else "OI" + sp, x_spec],
        "feature_group_count": spec.groups,
    }
    if isinstance(spec.padding, str):
        if spec.padding not in ("same", "valid"):
            raise CannotExpress(
                f"padding={spec.padding!r}: JAX's padding strings ('SAME', 'SAME_LOWER', 'VALID') are its own "
                "vocabulary; only the spec's 'same' and 'valid' have a spelling there"
            )
        if spec.padding == "same" and any(s != 1 for s in spec.stride):
            raise CannotExpress(
                f"padding='same' with stride={spec.stride}: JAX's 'SAME' with a stride is TensorFlow's "
                "(ceil(input/stride) outputs), a different problem rather than an invalid one"
            )
    if spec.padding == "valid" or (spec.padding == "same" and spec.padding_mode == "zeros"):
        conv["padding"] = spec.padding.upper()
    elif spec.padding_mode == "zeros":
        conv["padding"] = [list(pair) for pair in spec.padding]
    else:
        pairs = [list(pair) for pair in spec.pads]
        conv["padding"] = [[0, 0]] * dims
        if any(p != 0 for pair in pairs for p in pair):
            widths = [[0, 0], *pairs, [0, 0]] if last else [[0, 0], [0, 0], *pairs]
            out["pad"] = {"widths": widths, "mode": PAD_MODES[spec.padding_mode]}
    out["conv"] = conv
    out["axes"] = {"x": x_axes, "w": forward_axes}
    return out


def _transposed(spec: ConvSpec, out: dict[str, Any], x_spec: str, sp: str, x_axes: Any) -> dict[str, Any]:
    dims, last = spec.dims, spec.layout == "channels_last"
    if spec.padding_mode != "zeros":
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: a transposed convolution in JAX has no padding "
                            "mode (jnp.pad pads the input, which is not what a transposed mode would pad)")  # fmt: skip
    if isinstance(spec.padding, str):
        raise CannotExpress(
            f"padding={spec.padding!r} on a transposed convolution: lax.conv_transpose's 'SAME'/'VALID' are "
            "TensorFlow's (output = input*stride), not this padding, and conv_general_dilated refuses strings "
            "with lhs_dilation, so there is no faithful spelling"
        )
    g = spec.groups
    if g < 1 or spec.in_channels % g or spec.out_channels % g:
        raise CannotExpress(
            f"groups={g} with in_channels={spec.in_channels}, out_channels={spec.out_channels}: the transposed "
            "weight (C_in, C_out/groups, *k) is regrouped to XLA's (C_out, C_in/groups, *k) before the "
            "convolution, and there is no such regrouping (nor a weight shape saying C_out)"
        )
    fields = {"kernel_size": spec.kernel_size, "dilation": spec.dilation, "output_padding": spec.output_padding}
    for name, values in fields.items():
        if len(values) != dims:
            raise CannotExpress(f"{name}={values} for {dims} axes: a transposed convolution's padding is computed "
                                "per axis from it, so there is no per-axis value to pass")  # fmt: skip
    folded = [
        (before, after, op)
        for (before, after), op, s, d in zip(spec.padding, spec.output_padding, spec.stride, spec.dilation)
        if before < 0 or after < 0 or op < 0 or op >= max(s, d)
    ]
    if folded:
        raise CannotExpress(
            f"padding={spec.padding}, output_padding={spec.output_padding}: JAX has neither a transposed crop "
            "nor output_padding; both are folded into conv_general_dilated's (lo, hi) padding, where every "
            "integer is meaningful (negative crops), so a crop or output_padding out of its range has no spelling"
        )
    padding = [
        [d * (k - 1) - before, d * (k - 1) - after + op]
        for k, d, (before, after), op in zip(spec.kernel_size, spec.dilation, spec.padding, spec.output_padding)
    ]
    out["conv"] = {
        "window_strides": [1] * dims,
        "padding": padding,
        "lhs_dilation": list(spec.stride),
        "rhs_dilation": list(spec.dilation),
        "dimension_numbers": [x_spec, sp + "IO" if last else "OI" + sp, x_spec],
        "feature_group_count": g,
    }
    # channels_last: the (C_in, C_out/g, *k) weight is handed over as (*k, C_in, C_out/g).
    out["axes"] = {"x": x_axes, "w": (*range(2, 2 + dims), 0, 1) if last else None}
    return out


# ------------------------------------------------------------------- precision


def flushes_subnormals(dtype: str) -> bool:
    """Whether a JAX CPU convolution in ``dtype`` reads a subnormal input as zero or flushes a subnormal result.

    Two probes, a 1-D single channel and a 2-D one with channels, each reading
    ``tiny/4`` (times 1) and making ``tiny/2`` (``tiny`` times 0.5).
    """
    import jax.numpy as jnp
    from jax import lax

    tiny = float(jnp.finfo(jnp.dtype(dtype)).tiny)
    for x_shape, w_shape in (((1, 1, 4), (1, 1, 1)), ((1, 8, 3, 4), (8, 8, 1, 1))):
        n = len(x_shape) - 2
        w = np.zeros(w_shape)
        w[(0, 0) + (0,) * n] = 1.0
        plan_ = {"dtype": dtype}
        for value, scale in ((tiny / 4, 1.0), (tiny, 0.5)):
            x, wj = to_jax(plan_, np.full(x_shape, value), None), to_jax(plan_, w * scale, None)
            y = lax.conv_general_dilated(x, wj, (1,) * n, [(0, 0)] * n)
            if bool((np.asarray(y).astype(np.float64)[:, 0] == 0).any()):
                return True
    return False


# ------------------------------------------------------------------- adapter


class Jax(Adapter):
    """JAX's ``lax.conv_general_dilated`` on XLA:CPU, forward, transposed and backward (``jax.vjp``)."""

    name = "jax"

    def __init__(self) -> None:
        import jax

        # float64 exists only with x64 on; it is a process-wide switch (see the notes).
        jax.config.update("jax_enable_x64", True)
        self._functions: OrderedDict[tuple[ConvSpec, str], tuple[dict[str, Any], Any]] = OrderedDict()
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            precision, flushing = {}, []
            for dtype in DTYPES:
                flushes = flushes_subnormals(dtype)
                if flushes:
                    flushing.append(dtype)
                p = default_precision(dtype)
                precision[(dtype, "cpu")] = Precision(p.input_rounding, p.accumulation, p.output, flushes)
            notes = list(_NOTES)
            if flushing:
                notes.append(f"{', '.join(flushing)}: subnormal inputs read as zero and subnormal results flushed "
                             "(XLA:CPU sets the CPU's FTZ/DAZ modes; probed at start-up)")  # fmt: skip
            self._capabilities = Capabilities(
                dims=(1, 2, 3),
                dtypes=DTYPES,
                devices=("cpu",),
                padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
                padding_modes=("zeros", "reflect", "replicate", "circular"),
                layouts=("contiguous", "channels_last"),
                transposed=True,
                transposed_padding_forms=("none", "symmetric", "asymmetric"),
                backward=True,
                empty_batch=True,
                precision=precision,
                notes=tuple(notes),
            )
        return self._capabilities

    def _function(self, spec: ConvSpec, operation: str) -> tuple[dict[str, Any], Any]:
        key = (spec, operation)
        found = self._functions.get(key)
        if found is None:
            p = plan(spec)
            found = (p, jitted(p, operation))
            self._functions[key] = found
            if len(self._functions) > _CACHE_SIZE:
                self._functions.popitem(last=False)
        else:
            self._functions.move_to_end(key)
        return found

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        p, f = self._function(spec, "forward")
        return run(p, f, x, w, b)

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        p, f = self._function(spec, "backward")
        return run(p, f, x, w, b, grad_out)

    def versions(self) -> dict[str, str]:
        import jax
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        p = plan(spec)
        helpers = "\n\n".join(inspect.getsource(f) for f in (conv_function, jitted, to_jax, from_jax, run))
        versions = ", ".join(f"{k} {v}" for k, v in self.versions().items())
        source = _REPRO.format(
            descriptor=spec.descriptor(),
            versions=versions,
            plan=textwrap.indent(pprint.pformat(p, sort_dicts=False, width=100), " " * 7).lstrip(),
            helpers=helpers,
        )
        if operation == "backward":
            source += _REPRO_BACKWARD
        return source


_REPRO = '''\
# {descriptor}: JAX lax.conv_general_dilated on XLA:CPU ({versions})
from __future__ import annotations

from typing import Any

import jax
import numpy as np

# As the conformance adapter does: float64 needs it, and it is on for every dtype.
jax.config.update("jax_enable_x64", True)

PLAN = {plan}


{helpers}

_FUNCTIONS = {{}}


def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    if "forward" not in _FUNCTIONS:
        _FUNCTIONS["forward"] = jitted(PLAN, "forward")
    return run(PLAN, _FUNCTIONS["forward"], x, w, b)
'''

_REPRO_BACKWARD = '''

def candidate_backward(x, w, b, grad_out):
    """(grad_input, grad_weight, grad_bias) as float64 arrays, through jax.vjp, as the adapter computed them."""
    if "backward" not in _FUNCTIONS:
        _FUNCTIONS["backward"] = jitted(PLAN, "backward")
    return run(PLAN, _FUNCTIONS["backward"], x, w, b, grad_out)
'''


__all__ = ["PAD_MODES", "Jax", "conv_function", "flushes_subnormals", "jitted", "plan", "run"]
