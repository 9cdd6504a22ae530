"""tinygrad on its CPU device as a candidate: ``Tensor.conv2d`` and ``Tensor.conv_transpose2d``.

tinygrad's convolutions are generic over the number of spatial axes (``conv2d``
on a 3-D or 5-D tensor is a 1-D or 3-D convolution), so one op serves every
``dims``.  Each problem is put to tinygrad the most direct way it can be said:

* explicit padding, symmetric or not, is ``conv2d``'s / ``conv_transpose2d``'s own
  flat ``padding`` list, which tinygrad reads like ``F.pad``, *last axis first*:
  ``(before_W, after_W, before_H, after_H, ...)``;
* ``padding='same'`` (zeros mode) is ``tinygrad.nn.Conv2d(..., padding='same')``,
  the one tinygrad API that takes a padding string (it resolves the pads itself,
  and gets any other string, to accept or refuse), with
  the adapter's weight and bias put in the module; ``'valid'``, which no tinygrad
  API spells, is padding 0 (that *is* its definition);
* reflect / replicate / circular go through tinygrad's own
  ``Tensor.pad(mode=...)`` followed by the convolution with no padding (the
  convolution has no padding mode); ``'same'`` in those modes is resolved by the
  adapter (``spec.pads``) for that pad;
* a transposed convolution takes its (possibly asymmetric) crops and
  ``output_padding`` natively.

Backward is tinygrad's autodiff: ``y.gradient(x, w, b, gradient=grad_out)``.

Device.  Every tensor is made with ``device="CPU"``: tinygrad's CPU device, which
compiles C with ``clang`` (its default renderer, ``DEV=CPU`` / ``CPU:CLANG``).  The
adapter sets nothing global (no ``DEV``, no ``Context``), so a user's own settings
of ``DEV`` do not change which device the conformance run tests.

Layouts.  tinygrad has no memory-format flag, but a realized buffer seen through a
movement op is exactly what a user hands it after a ``permute`` or a slice, and
tinygrad fuses the view into the convolution's kernel: ``channels_last`` is a
realized ``(N, *spatial, C)`` buffer permuted to ``(N, C, *spatial)``; ``strided``
is a view (every other channel, every other element of the last axis, one element
in) into a realized NaN-filled buffer, so a kernel that ignored the view reads NaN.

Caching.  tinygrad compiles every new kernel (clang, tens of ms), and keeps the
compiled programs in memory and in its on-disk cache (``CACHEDB``, by default
``~/.cache/tinygrad/cache.db``; ``CACHELEVEL=0`` turns it off).  On top of that,
the adapter keeps one ``TinyJit`` per problem (spec and operation, a small LRU):
from its third call on, the JIT replays the captured kernels without rebuilding
the graph or scheduling it.  Empty tensors (a batch of 0) bypass the JIT, which
has nothing to capture there.

Precision, measured on tinygrad 0.14.0 with Debian clang 14 (``DEBUG=4`` shows the
kernels); the dtypes are probed on the running machine rather than assumed:

* float64 and float32: products and sums in the dtype (clang may contract them
  into FMAs, which the default bound covers);
* float16: clang's ``__fp16`` is a storage type, so each ``half*half`` product is
  computed in float (exact), the sum is accumulated in float32 (tinygrad's
  ``sum_acc_dtype``) and rounded to float16; tinygrad then adds the bias *to that
  rounded sum* and rounds again (``(__fp16)(acc) + bias``), so with a bias an
  output is rounded twice.  Declared: float32 accumulation, float16 output (what
  it does but for the bias); the double rounding is a baselined discrepancy;
* bfloat16: clang 14 cannot compile tinygrad's ``__bf16`` kernels for this target
  ("__bf16 is not supported on this target"), so it is unsupported here (the probe
  says so); a newer clang would declare it.
"""

from __future__ import annotations

import inspect
import os
import pprint
import textwrap
from collections import OrderedDict
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, Grads, device_kind, probe_dtypes
from conformance.spec import DTYPES, LAYOUTS, PADDING_MODES, ConvSpec
from conformance.tolerance import Precision

#: Problems whose TinyJit is kept (Hypothesis repeats a spec while shrinking, and the
#: properties chapter calls one spec several times).
_JIT_CACHE_SIZE = 32

#: The suite's padding modes and ``Tensor.pad``'s name for each.
PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}

_NOTES = (
    "device: tinygrad's CPU device (clang), given to every tensor as device='CPU'; the adapter sets no DEV "
    "or Context, so a user's DEV does not change what is tested",
    "one op for every dims: Tensor.conv2d / Tensor.conv_transpose2d are generic over the spatial axes",
    "padding: explicit pairs native (flat list, last axis first); 'same' and any other string but 'valid' (zeros) "
    "go to nn.Conv2d(padding=...), as given; "
    "'valid' is padding 0; reflect/replicate/circular are tinygrad's Tensor.pad(mode=...) before the "
    "convolution ('same' in those modes resolved by the adapter)",
    "layouts: channels_last is a realized (N, *spatial, C) buffer permuted to (N, C, *spatial); strided is a "
    "sliced view into a realized NaN-filled buffer; tinygrad fuses either view into the conv kernel",
    "backward: tinygrad's autodiff (Tensor.gradient)",
    "float16: products exact (clang's __fp16 promotes to float), float32 accumulation rounded to float16, then "
    "the bias is added to that rounded sum and rounded again",
    "compiled programs: tinygrad's own in-memory and on-disk caches (CACHEDB, ~/.cache/tinygrad/cache.db) plus "
    "one TinyJit per problem in the adapter (CONV_CONFORMANCE_TINYGRAD_JIT_CACHE=0 turns that off)",
)


# ----------------------------------------------------------- the computation
#
# The functions below are copied verbatim into every repro script (see
# Tinygrad.repro_source), so they import what they use and touch no module
# globals: the repro then runs exactly the code the adapter ran.


def tinygrad_buffer(a: Any, dtype: str, layout: str) -> Any:
    """A float64 array as a realized tinygrad CPU tensor of ``dtype``, stored as ``layout`` lays it out.

    ``contiguous``: ``a`` itself; ``channels_last``: ``a`` with the channel axis moved
    last (for 3-D and longer); ``strided``: a NaN-filled buffer twice as wide on the
    channel axis (3-D and longer) and ``2*L + 1`` long on the last axis, with ``a``
    at every other channel and at the odd positions of the last axis.  See
    :func:`tinygrad_view`, which sees the buffer as ``a`` again.
    """
    import numpy as np
    from tinygrad import Tensor, dtypes

    a = np.ascontiguousarray(a, dtype=np.float64)
    if layout == "channels_last" and a.ndim >= 3:
        a = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    elif layout == "strided" and a.ndim >= 1:
        shape, index = list(a.shape), [slice(None)] * a.ndim
        shape[-1], index[-1] = 2 * a.shape[-1] + 1, slice(1, None, 2)
        if a.ndim >= 3:
            shape[1], index[1] = 2 * a.shape[1], slice(None, None, 2)
        big = np.full(shape, np.nan)
        big[tuple(index)] = a
        a = big
    if dtype in ("float64", "float32", "float16"):
        # numpy holds these: the buffer is a copy of the array, with no cast kernel to compile
        return Tensor(a.astype(dtype), device="CPU").realize()
    return Tensor(a, device="CPU").cast(getattr(dtypes, dtype)).realize()


def tinygrad_view(t: Any, layout: str, ndim: int) -> Any:
    """The lazy view of a :func:`tinygrad_buffer` that has the logical (N, C, *spatial) shape."""
    if layout == "channels_last" and ndim >= 3:
        return t.permute(0, ndim - 1, *range(1, ndim - 1))
    if layout == "strided" and ndim >= 1:
        index = [slice(None)] * ndim
        index[-1] = slice(1, None, 2)
        if ndim >= 3:
            index[1] = slice(None, None, 2)
        return t[tuple(index)]
    return t


def tinygrad_conv(recipe: dict, x: Any, w: Any, b: Any) -> Any:
    """The convolution ``recipe`` describes, on tinygrad tensors (lazy: nothing is run here)."""
    from tinygrad import nn

    if recipe["pad"] is not None:
        x = x.pad(recipe["pad"], mode=recipe["pad_mode"])
    if recipe["op"] == "nn.Conv2d":
        module = nn.Conv2d(**recipe["module"])
        module.weight, module.bias = w, b
        return module(x)
    return getattr(x, recipe["op"])(w, b, **recipe["kwargs"])


def tinygrad_forward(recipe: dict, x: Any, w: Any, b: Any) -> Any:
    """Views of the realized buffers in, the realized output out (what the adapter JITs)."""
    layout, ndim = recipe["layout"], len(recipe["x_shape"])
    x, w = tinygrad_view(x, layout, ndim), tinygrad_view(w, layout, ndim)
    b = None if b is None else tinygrad_view(b, layout, 1)
    return tinygrad_conv(recipe, x, w, b).realize()


def tinygrad_backward(recipe: dict, x: Any, w: Any, b: Any, grad_out: Any) -> list:
    """The realized gradients of the convolution with respect to the logical x, w (and b) for ``grad_out``."""
    from tinygrad import Tensor

    layout, ndim = recipe["layout"], len(recipe["x_shape"])
    x, w, gy = (tinygrad_view(t, layout, ndim) for t in (x, w, grad_out))
    b = None if b is None else tinygrad_view(b, layout, 1)
    y = tinygrad_conv(recipe, x, w, b)
    grads = y.gradient(*(t for t in (x, w, b) if t is not None), gradient=gy)
    # .contiguous() gives each gradient a buffer of its own: one may otherwise be a view of another
    grads = [g.contiguous() for g in grads]
    Tensor.realize(*grads)
    return grads


def tinygrad_numpy(t: Any) -> Any:
    """A realized result as a float64 numpy array (every dtype here widens exactly)."""
    import numpy as np
    from tinygrad import dtypes

    if t.dtype == dtypes.bfloat16:
        t = t.cast(dtypes.float32)
    return np.asarray(t.numpy(), dtype=np.float64)


# ------------------------------------------------------------ spec -> recipe


def conv_recipe(spec: ConvSpec) -> dict[str, Any]:
    """The plain-data description of how ``spec`` is put to tinygrad (literals only, so it prints into a repro).

    Values go to tinygrad unvalidated: rejecting an invalid problem is the
    backend's job.  The adapter refuses only what tinygrad's API cannot say.
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs tinygrad's CPU device only")
    if spec.dtype not in DTYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: not one of the suite's dtypes {DTYPES}")
    if spec.layout not in LAYOUTS:
        raise CannotExpress(f"layout={spec.layout!r}: no layout by that name in the suite's vocabulary")
    if spec.padding_mode not in PADDING_MODES:
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: Tensor.pad has no mode for it")
    if spec.groups == 0:
        raise CannotExpress("groups=0: the weight shape (channels/groups) is undefined, so no weight can be made")
    for name, shape in (("x", spec.input_shape), ("w", spec.weight_shape), ("b", spec.bias_shape or ())):
        if any(v < 0 for v in shape):
            raise CannotExpress(f"{name} would have shape {shape}: no tensor has a negative extent")
    recipe: dict[str, Any] = {
        "dtype": spec.dtype,
        "layout": spec.layout,
        "x_shape": list(spec.input_shape),
        "pad": None,
        "pad_mode": "constant",
    }
    if spec.transposed:
        if spec.padding_mode != "zeros":
            raise CannotExpress(f"padding_mode={spec.padding_mode!r}: Tensor.conv_transpose2d takes no padding mode")
        if isinstance(spec.padding, str):
            raise CannotExpress(
                f"padding={spec.padding!r} on a transposed convolution: Tensor.conv_transpose2d takes "
                "only integers (no tinygrad API spells a padding string there)"
            )
        if spec.out_channels % spec.groups:
            raise CannotExpress(
                f"out_channels={spec.out_channels}, groups={spec.groups}: Tensor.conv_transpose2d reads the "
                f"output channels off the weight (in, out/groups, ...), which cannot say {spec.out_channels}"
            )
        recipe.update(op="conv_transpose2d", kwargs={
            "groups": spec.groups, "stride": list(spec.stride), "dilation": list(spec.dilation),
            "padding": flat_pads(spec.padding), "output_padding": list(spec.output_padding),
        })  # fmt: skip
        return recipe
    if len(spec.output_padding) != spec.dims or any(op != 0 for op in spec.output_padding):
        # Even all zeros, an output_padding of the wrong length is part of the problem, and conv2d cannot take it.
        raise CannotExpress(f"output_padding={spec.output_padding}: Tensor.conv2d has no output_padding")
    common = {"groups": spec.groups, "stride": list(spec.stride), "dilation": list(spec.dilation)}
    if isinstance(spec.padding, str) and spec.padding != "valid" and spec.padding_mode == "zeros":
        # nn.Conv2d is the tinygrad API that takes a padding string: 'same' and any other goes to it as it is.
        recipe.update(op="nn.Conv2d", module={
            "in_channels": spec.in_channels, "out_channels": spec.out_channels,
            # nn.Conv2d takes 'same' only with stride == 1 (the int): a stride of ones is that.
            "kernel_size": list(spec.kernel_size), "padding": spec.padding,
            "stride": 1 if all(s == 1 for s in spec.stride) else list(spec.stride),
            "dilation": list(spec.dilation), "groups": spec.groups, "bias": spec.bias,
        })  # fmt: skip
        return recipe
    if isinstance(spec.padding, str) and spec.padding not in ("same", "valid"):
        raise CannotExpress(f"padding={spec.padding!r} with padding_mode={spec.padding_mode!r}: only nn.Conv2d takes "
                            "a padding string, and it has no padding mode")  # fmt: skip
    if spec.padding == "same" and any(s != 1 for s in spec.stride):
        raise CannotExpress(
            f"padding='same', padding_mode={spec.padding_mode!r}, stride={spec.stride}: tinygrad has 'same' only "
            "in nn.Conv2d, which has no padding mode (the adapter resolves 'same' there, for stride 1 only)"
        )
    pairs = spec.pads  # 'valid' is all zeros; 'same' in another mode, resolved
    if spec.padding_mode == "zeros" or all(p == 0 for pair in pairs for p in pair):
        recipe.update(op="conv2d", kwargs={**common, "padding": flat_pads(pairs)})
        return recipe
    recipe.update(op="conv2d", kwargs={**common, "padding": 0}, pad=flat_pads(pairs),
                  pad_mode=PAD_MODES[spec.padding_mode])  # fmt: skip
    return recipe


def flat_pads(pairs: Any) -> list[int]:
    """Per-axis ``(before, after)`` pairs -> tinygrad's flat padding list, last axis first."""
    return [p for before, after in reversed(tuple(pairs)) for p in (before, after)]


# ------------------------------------------------------------------- adapter


class Tinygrad(Adapter):
    """tinygrad's convolutions, forward, transposed and backward, on its CPU device."""

    name = "tinygrad"

    def __init__(self, jit_cache_size: int | None = None) -> None:
        if jit_cache_size is None:
            # 0 turns the adapter's TinyJit cache off (to measure what it gains); tinygrad's own caches stay.
            jit_cache_size = int(os.environ.get("CONV_CONFORMANCE_TINYGRAD_JIT_CACHE", _JIT_CACHE_SIZE))
        self._jit_cache_size = jit_cache_size
        self._jits: OrderedDict[tuple[ConvSpec, str], Any] = OrderedDict()
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._probe()
        return self._capabilities

    def _probe(self) -> Capabilities:
        """Declare the dtypes the CPU device really runs, found by running one tiny problem each."""

        def run(spec: ConvSpec) -> None:
            try:
                with _stderr_captured() as stderr:
                    got = self.forward(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape), np.ones(1))
            except Exception as exc:  # quoted with the compiler's first error, where it printed one
                errors = [line.strip() for line in stderr.read().splitlines() if "error:" in line]
                if errors:
                    raise RuntimeError(f"{errors[0]} ({type(exc).__name__})") from exc
                raise
            if got.ravel().tolist() != ([2.0, 3.0, 3.0, 2.0] if spec.transposed else [3.0, 3.0]):
                raise ValueError(f"1-D probe gave {got.ravel().tolist()}")

        outcome = probe_dtypes(run)
        dtypes = [dtype for dtype, failure in outcome.items() if failure is None]
        notes = [f"{dtype} does not run on tinygrad's CPU device here: {failure[:120]}"
                 for dtype, failure in outcome.items() if failure]  # fmt: skip
        precision = {
            "float64": Precision(None, "float64", "float64"),
            "float32": Precision(None, "float32", "float32"),
            "float16": Precision(None, "float32", "float16"),
            "bfloat16": Precision(None, "float32", "bfloat16"),
        }
        return Capabilities(
            dims=(1, 2, 3),
            dtypes=tuple(dtypes),
            devices=("cpu",),
            padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
            padding_modes=PADDING_MODES,
            layouts=LAYOUTS,
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=True,
            empty_batch=True,
            precision={(d, "cpu"): precision[d] for d in dtypes},
            notes=(*_NOTES, *notes),
        )

    # -------------------------------------------------------------- running

    def _buffers(self, recipe: dict[str, Any], *arrays: np.ndarray | None) -> list[Any]:
        return [None if a is None else tinygrad_buffer(a, recipe["dtype"], recipe["layout"]) for a in arrays]

    def _run(self, spec: ConvSpec, operation: str, function: Any, recipe: dict[str, Any], buffers: list[Any]) -> Any:
        """``function(recipe, *buffers)``, through this problem's TinyJit when it has anything to capture."""
        if self._jit_cache_size <= 0 or any(t is not None and 0 in t.shape for t in buffers):
            return function(recipe, *buffers)
        from tinygrad import TinyJit

        key = (spec, operation)
        jit = self._jits.get(key)
        if jit is None:
            jit = self._jits[key] = TinyJit(lambda *args: function(recipe, *args))
            if len(self._jits) > self._jit_cache_size:
                self._jits.popitem(last=False)
        else:
            self._jits.move_to_end(key)
        return jit(*(t for t in buffers if t is not None))

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        recipe = conv_recipe(spec)
        buffers = self._buffers(recipe, x, w, b)
        return tinygrad_numpy(self._run(spec, "forward", _forward_args, recipe, buffers))

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        recipe = conv_recipe(spec)
        buffers = self._buffers(recipe, x, w, b, grad_out)
        grads = [tinygrad_numpy(g) for g in self._run(spec, "backward", _backward_args, recipe, buffers)]
        return grads[0], grads[1], grads[2] if b is not None else None

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"tinygrad": version("tinygrad")}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        recipe = conv_recipe(spec)
        functions = (tinygrad_buffer, tinygrad_view, tinygrad_conv, tinygrad_forward, tinygrad_backward, tinygrad_numpy)
        helpers = "\n\n".join(inspect.getsource(f) for f in functions)
        source = _REPRO.format(
            descriptor=spec.descriptor(),
            versions=", ".join(f"{k} {v}" for k, v in self.versions().items()),
            recipe=textwrap.indent(pprint.pformat(recipe, sort_dicts=False, width=100), " " * 9).lstrip(),
            helpers=helpers,
        )
        return source + (_REPRO_BACKWARD if operation == "backward" else "")


class _stderr_captured:
    """Send file descriptor 2 (where clang writes its errors) to a temporary file for a while."""

    def __enter__(self) -> Any:
        import os
        import sys
        import tempfile

        sys.stderr.flush()
        self.file = tempfile.TemporaryFile(mode="w+")
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc: Any) -> None:
        import os

        os.dup2(self.saved, 2)
        os.close(self.saved)

    def read(self) -> str:
        self.file.seek(0)
        return self.file.read()


def _forward_args(recipe: dict[str, Any], *args: Any) -> Any:
    """:func:`tinygrad_forward` on the non-None buffers (x, w[, b]): the JIT takes tensors only."""
    x, w, *rest = args
    return tinygrad_forward(recipe, x, w, rest[0] if rest else None)


def _backward_args(recipe: dict[str, Any], *args: Any) -> list:
    """:func:`tinygrad_backward` on the non-None buffers (x, w[, b], grad_out)."""
    x, w, *rest = args
    b, grad_out = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
    grads = tinygrad_backward(recipe, x, w, b, grad_out)
    return grads


_REPRO = '''\
# {descriptor}: tinygrad CPU device ({versions})
from __future__ import annotations

import numpy as np
import tinygrad  # noqa: F401  (used by the helpers)

RECIPE = {recipe}


{helpers}

def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    buffers = [None if a is None else tinygrad_buffer(a, RECIPE["dtype"], RECIPE["layout"]) for a in (x, w, b)]
    return tinygrad_numpy(tinygrad_forward(RECIPE, *buffers))
'''

_REPRO_BACKWARD = '''

def candidate_backward(x, w, b, grad_out):
    """float64 arrays in, (grad_input, grad_weight, grad_bias or None) out, as the adapter computed them."""
    arrays = (x, w, b, grad_out)
    buffers = [None if a is None else tinygrad_buffer(a, RECIPE["dtype"], RECIPE["layout"]) for a in arrays]
    grads = [tinygrad_numpy(g) for g in tinygrad_backward(RECIPE, *buffers)]
    return grads[0], grads[1], grads[2] if b is not None else None
'''


__all__ = ["PAD_MODES", "Tinygrad", "conv_recipe", "flat_pads", "tinygrad_backward", "tinygrad_buffer",
           "tinygrad_conv", "tinygrad_forward", "tinygrad_numpy", "tinygrad_view"]  # fmt: skip
