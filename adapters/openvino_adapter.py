"""OpenVINO's CPU plugin as a candidate: one convolution op per problem, built with OpenVINO's own opset.

Each problem becomes a small ``ov.Model`` of OpenVINO's own operations (``openvino.opset15``):

* ``Convolution`` (groups 1) or ``GroupConvolution`` (weight reshaped to
  ``(G, C_out/G, C_in/G, *k)``, which is how OpenVINO spells groups), with the
  spec's ``strides``, ``dilations`` and explicit ``pads_begin`` / ``pads_end``
  (asymmetric pairs natively), or ``auto_pad='same_upper'`` / ``'valid'`` for the
  padding strings, resolved by OpenVINO, not by the adapter;
* ``ConvolutionBackpropData`` / ``GroupConvolutionBackpropData`` (weight
  ``(C_in, C_out, *k)``, or ``(G, C_in/G, C_out/G, *k)``) for a transposed
  convolution, whose ``pads_begin`` / ``pads_end`` crop the full output as the
  suite's do (asymmetric natively) and whose ``output_padding`` is passed as is;
* reflect and replicate padding are OpenVINO's own ``Pad`` op (modes ``reflect``
  and ``edge``) before an unpadded convolution; ``'same'`` in those modes is
  resolved by the adapter (the Pad op takes numbers only), as ``nn.Conv*d`` does;
* the bias is an ``Add`` of a constant ``(1, C_out, 1, ...)``, the form every
  OpenVINO frontend produces and the CPU plugin fuses into the convolution.

Weights and bias are **constants**, as in every model users convert: constant
weights are what let the CPU plugin repack them into its blocked layouts and pick
its oneDNN kernels, so that is what is under test.  The price is one compile per
(problem, weights): about 15 ms here, so compiled models are cached (LRU) by the
spec and the bytes of ``w`` and ``b``.

Precision, measured on OpenVINO 2026.4.1 on an AMD EPYC Zen 4 (avx512_bf16, no
avx512_fp16), and what :meth:`OpenVino.capabilities` declares:

* The CPU plugin's **default** ``INFERENCE_PRECISION_HINT`` on this CPU is
  ``bf16``: a float32 model is silently run in bfloat16 (an f32 ``Convolution``
  of ``[1 + 2**-10, 2**-12]`` by ones returns ``1 + 2**-12``, the first input
  rounded to 1).  Users of a float32 model expect float32, so every model is
  compiled with ``INFERENCE_PRECISION_HINT=f32`` (the default is recorded in the
  notes, measured when the adapter starts).
* float32: float32 products and sums, one rounding, and the plugin zeroes
  subnormal values in *constant* weights (inputs and results keep theirs), so
  float32 is declared flushing subnormals.
* float16: run as float32 inside the plugin (its f16 -> f32 conversion under the
  f32 hint) and rounded once to float16: ``2048 + sixteen 1s`` returns 2064, which
  a float16 accumulator could not; the default declaration.
* bfloat16: bfloat16 in and out, float32 accumulation (``256 + sixteen 1s`` is
  272), subnormal inputs, weights and results flushed (the AVX512-BF16 dot
  products): declared so.  numpy has no bfloat16, so tensors go in and out
  as their bit patterns (``uint16``) in ``ov.Tensor`` objects of ``Type.bf16``.
* float64: the CPU plugin has no float64 kernels; it converts a float64 model to
  float32 and back.  Probed at start-up (``2**24 + sixteen 1s``); where it comes
  back ``2**24``, float64 is declared as what it is: inputs rounded to float32,
  float32 accumulation, float32 output values, flushing subnormals.  The
  conversion saturates: +-inf becomes +-3.4e38 (baselined, not declared).
* Subnormals: ``CPU_DENORMALS_OPTIMIZATION`` is left at its default (off).  Which
  of a subnormal input, constant weight and result come back as 0 is probed per
  dtype at start-up, and a dtype with any of them is declared flushing.

What is not expressible (CannotExpress): circular padding (``Pad`` has constant,
edge, reflect and symmetric, no wrap), channels_last and strided layouts (the ops
take dense NC[D]HW tensors), padding strings on a transposed convolution (its
``auto_pad`` means output = input * stride), ``'same'`` with a stride (OpenVINO's
``same_upper`` is defined there: ceil(input / stride) outputs, another problem),
``output_padding`` on a forward convolution (no such attribute), group counts
whose weight cannot be reshaped into OpenVINO's grouped weight, and backward
(OpenVINO is an inference runtime: no autodiff).
"""

from __future__ import annotations

import hashlib
import inspect
import pprint
import textwrap
from collections import OrderedDict
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, device_kind, probe_dtypes
from conformance.formats import get_format
from conformance.spec import ConvSpec
from conformance.tolerance import Precision, default_precision

#: spec dtype -> OpenVINO element type name (``ov.Type.<name>``).
_ELEMENT_TYPES: dict[str, str] = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}

#: The suite's padding modes and OpenVINO ``Pad``'s name for each (zeros are the conv's own pads).
_PAD_MODES: dict[str, str] = {"reflect": "reflect", "replicate": "edge"}

#: The compile configuration every model gets: see the module docstring.
CONFIG: dict[str, str] = {"INFERENCE_PRECISION_HINT": "f32"}

# Compiling costs ~15 ms; Hypothesis repeats a (spec, weights) pair while shrinking and in the
# properties chapter (linearity in x, batch invariance), so a small LRU pays for itself.
_CACHE_SIZE = 32

_NOTES = (
    "one model per problem of OpenVINO's own ops (openvino.opset15): Convolution / GroupConvolution, "
    "ConvolutionBackpropData / GroupConvolutionBackpropData, compiled for the CPU plugin",
    "weights and bias are Constants (what converted models have: the plugin repacks them into its blocked "
    "layouts); the bias is an Add of a (1, C, 1, ...) constant, which the plugin fuses into the convolution",
    "every model is compiled with INFERENCE_PRECISION_HINT=f32: users of a float32 model expect float32",
    "padding: explicit (before, after) pairs are pads_begin/pads_end (asymmetric natively); 'same' is "
    "auto_pad=same_upper and 'valid' auto_pad=valid, resolved by OpenVINO",
    "reflect and replicate padding: OpenVINO's own Pad op (modes reflect / edge) before the convolution; 'same' "
    "in those modes is resolved by the adapter as nn.Conv*d resolves it",
    "circular padding is not expressible: OpenVINO's Pad has constant, edge, reflect and symmetric modes only",
    "layouts: OpenVINO's convolution ops take dense NC[D]HW tensors: no channels_last or strided layout",
    "a transposed convolution takes explicit pads: ConvolutionBackpropData's auto_pad means output = "
    "input*stride, not this padding; 'same' with a stride is refused (OpenVINO's same_upper defines it otherwise)",
    "bfloat16 tensors cross numpy as uint16 bit patterns in ov.Tensor(Type.bf16)",
    "backward is not expressible: OpenVINO is an inference runtime, without autodiff",
)


# ----------------------------------------------------------------- the model
#
# The functions below are copied verbatim into every repro script (see
# OpenVino.repro_source), so they import what they use and touch no module
# globals: the repro then runs exactly the code the adapter ran.


def ov_tensor(a: Any, element: str) -> Any:
    """A float64 array (values exact in ``element``) as an ``ov.Tensor`` of that element type."""
    import numpy as np
    import openvino as ov

    a = np.ascontiguousarray(a, dtype=np.float64)
    if element == "bf16":
        # numpy has no bfloat16: pass the bit patterns.  The values are bfloat16 values, so
        # float32 holds them exactly and its upper half is the bfloat16 encoding.
        bits = np.ascontiguousarray((a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16))
        return ov.Tensor(bits, list(a.shape), ov.Type.bf16)
    dtype = {"f32": np.float32, "f16": np.float16, "f64": np.float64}[element]
    return ov.Tensor(np.ascontiguousarray(a.astype(dtype)))


def from_ov_tensor(t: Any) -> Any:
    """An ``ov.Tensor`` as a float64 numpy array (exact: every element type here widens)."""
    import numpy as np
    import openvino as ov

    data = np.array(t.data, copy=True)
    if t.element_type == ov.Type.bf16:
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return data.astype(np.float64)


def build_model(recipe: dict[str, Any], w: Any, b: Any) -> Any:
    """The ``ov.Model`` that ``recipe`` describes, with ``w`` and ``b`` (float64 arrays) as constants."""
    import numpy as np
    import openvino as ov
    import openvino.opset15 as ops

    element = recipe["element"]
    x = ops.parameter(recipe["x_shape"], getattr(ov.Type, element), name="x")
    y = x
    if recipe["pad"] is not None:
        mode, begin, end = recipe["pad"]
        y = ops.pad(y, np.array(begin, np.int64), np.array(end, np.int64), mode)
    weight = ops.constant(ov_tensor(np.reshape(w, recipe["w_shape"]), element), shared_memory=False)
    attrs = dict(recipe["attributes"])
    y = getattr(ops, recipe["op"])(y, weight, **attrs)
    if recipe["bias_shape"] is not None:
        bias = ops.constant(ov_tensor(np.reshape(b, recipe["bias_shape"]), element), shared_memory=False)
        y = ops.add(y, bias)
    return ov.Model([y], [x], "conv")


def compile_model(model: Any, config: dict[str, str]) -> Any:
    """``model`` compiled for the CPU plugin with ``config``."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", config)


def run_model(compiled: Any, recipe: dict[str, Any], x: Any) -> Any:
    """Feed float64 ``x`` in the model's element type; the output as float64."""
    request = compiled.create_infer_request()
    request.infer({0: ov_tensor(x, recipe["element"])})
    return from_ov_tensor(request.get_output_tensor(0))


# ------------------------------------------------------------ spec -> recipe


def model_recipe(spec: ConvSpec) -> dict[str, Any]:
    """The plain-data description of ``spec``'s model (literals only, so it prints into a repro).

    Values go to OpenVINO unvalidated: rejecting an invalid problem is the
    backend's job.  The adapter refuses only what OpenVINO's ops cannot say (see
    the module docstring) and a tensor of negative extent.
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs OpenVINO's CPU plugin only")
    if spec.dtype not in _ELEMENT_TYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: no OpenVINO element type stands for it")
    if spec.layout != "contiguous":
        raise CannotExpress(f"layout={spec.layout!r}: OpenVINO's convolution ops take dense NC[D]HW tensors")
    if spec.padding_mode != "zeros" and spec.padding_mode not in _PAD_MODES:
        raise CannotExpress(
            f"padding_mode={spec.padding_mode!r}: OpenVINO's Pad has constant, edge, reflect and symmetric modes"
        )
    if spec.groups < 1:
        raise CannotExpress(f"groups={spec.groups}: OpenVINO takes groups as the weight's leading axis, so a group "
                            "count below 1 cannot be said")  # fmt: skip
    for name, shape in (("x", spec.input_shape), ("w", spec.weight_shape), ("b", spec.bias_shape or ())):
        if any(v < 0 for v in shape):
            raise CannotExpress(f"{name} would have shape {shape}: no tensor has a negative extent")
    g, dims = spec.groups, spec.dims
    for name in ("stride", "dilation"):
        if dims and not getattr(spec, name):
            # The ops' per-axis attributes default when empty, so () would run as all ones.
            raise CannotExpress(f"{name}=(): OpenVINO reads an empty {name} as not given (ones on every axis), "
                                "so an empty one cannot be passed as such")  # fmt: skip
    if spec.transposed:
        return _transposed_recipe(spec)
    if len(spec.output_padding) != dims or any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: OpenVINO's Convolution has no output_padding")
    if g > 1 and spec.out_channels % g:
        raise CannotExpress(
            f"out_channels={spec.out_channels}, groups={g}: GroupConvolution's weight is (G, C_out/G, C_in/G, ...), "
            "which cannot say that"
        )
    w_shape = list(spec.weight_shape) if g == 1 else [g, spec.out_channels // g, *spec.weight_shape[1:]]
    attributes: dict[str, Any] = {"strides": list(spec.stride), "dilations": list(spec.dilation)}
    pad = None
    if isinstance(spec.padding, str):
        if spec.padding == "same" and any(s != 1 for s in spec.stride):
            raise CannotExpress(
                f"padding='same' with stride={spec.stride}: OpenVINO's same_upper with a stride is defined "
                "(ceil(input/stride) outputs), a different problem rather than an invalid one"
            )
        auto_pad = {"valid": "valid", "same": "same_upper"}.get(spec.padding)
        if auto_pad is None:
            raise CannotExpress(f"padding={spec.padding!r}: OpenVINO's auto_pad has no such value")
        if spec.padding_mode == "zeros" or auto_pad == "valid":
            attributes.update(pads_begin=[0] * dims, pads_end=[0] * dims, auto_pad=auto_pad)
        else:
            pad = _pad(spec, spec.pads)
            attributes.update(pads_begin=[0] * dims, pads_end=[0] * dims)
    elif spec.padding_mode == "zeros" or all(p == 0 for pair in spec.padding for p in pair):
        attributes.update(pads_begin=[p[0] for p in spec.padding], pads_end=[p[1] for p in spec.padding])
    else:
        pad = _pad(spec, spec.padding)
        attributes.update(pads_begin=[0] * dims, pads_end=[0] * dims)
    return _recipe(spec, "convolution" if g == 1 else "group_convolution", w_shape, attributes, pad)


def _pad(spec: ConvSpec, pairs: Any) -> list[Any]:
    if any(p < 0 for pair in pairs for p in pair):
        raise CannotExpress(f"padding={spec.padding}: OpenVINO's Pad crops where a pad is negative, so a negative "
                            "pad cannot reach the convolution as padding")  # fmt: skip
    return [_PAD_MODES[spec.padding_mode], [0, 0, *(p[0] for p in pairs)], [0, 0, *(p[1] for p in pairs)]]


def _transposed_recipe(spec: ConvSpec) -> dict[str, Any]:
    g = spec.groups
    if spec.padding_mode != "zeros":
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: ConvolutionBackpropData takes no padding mode")
    if isinstance(spec.padding, str):
        raise CannotExpress(
            f"padding={spec.padding!r} on a transposed convolution: ConvolutionBackpropData's auto_pad means "
            "output = input*stride, not this padding, so there is no faithful spelling"
        )
    if g > 1 and (spec.in_channels % g or spec.out_channels % g):
        raise CannotExpress(
            f"in_channels={spec.in_channels}, out_channels={spec.out_channels}, groups={g}: "
            "GroupConvolutionBackpropData's weight is (G, C_in/G, C_out/G, ...), which cannot say that"
        )
    if not spec.output_padding:
        raise CannotExpress(
            "output_padding=(): OpenVINO reads an empty output_padding as not given (zeros on every axis), "
            "so an empty one cannot be passed as such"
        )
    w_shape = list(spec.weight_shape) if g == 1 else [g, spec.in_channels // g, *spec.weight_shape[1:]]
    attributes = {
        "strides": list(spec.stride),
        "pads_begin": [p[0] for p in spec.padding],
        "pads_end": [p[1] for p in spec.padding],
        "dilations": list(spec.dilation),
        "output_padding": list(spec.output_padding),
    }
    op = "convolution_backprop_data" if g == 1 else "group_convolution_backprop_data"
    return _recipe(spec, op, w_shape, attributes, None)


def _recipe(spec: ConvSpec, op: str, w_shape: list[int], attributes: dict[str, Any], pad: Any) -> dict[str, Any]:
    return {
        "op": op,
        "element": _ELEMENT_TYPES[spec.dtype],
        "x_shape": list(spec.input_shape),
        "w_shape": w_shape,
        "bias_shape": [1, spec.out_channels, *([1] * spec.dims)] if spec.bias else None,
        "pad": pad,
        "attributes": attributes,
    }


# ------------------------------------------------------------------- adapter


class OpenVino(Adapter):
    """OpenVINO's CPU plugin, through one convolution op per compiled model."""

    name = "openvino"

    def __init__(self) -> None:
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._probe()
        return self._capabilities

    def _probe(self) -> Capabilities:
        """Declare the dtypes the CPU plugin really runs, and how, found by running tiny problems."""
        dtypes, precision, notes = [], {}, []
        outcome = probe_dtypes(lambda spec: self._run(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape),
                                                      np.ones(1)))  # fmt: skip
        for dtype, failure in outcome.items():
            if failure is not None:
                notes.append(f"{dtype} does not run on the CPU plugin: {failure}")
                continue
            dtypes.append(dtype)
            declared = default_precision(dtype)
            if dtype == "float64" and not self._float64_is_native():
                declared = Precision("float32", "float32", "float32")
                notes.append("float64 runs as float32: the CPU plugin converts a float64 model to float32 (2**24 "
                             "+ sixteen 1s returns 2**24; infinities and values past float32's range come back as "
                             "+-3.4e38), so float64 is declared float32 inputs, accumulation and output")  # fmt: skip
            flushed = self._flushes_subnormals(dtype)
            if flushed:
                declared = Precision(declared.input_rounding, declared.accumulation, declared.output, True)
                notes.append(f"{dtype} flushes subnormals to zero here: {', '.join(flushed)}")
            precision[(dtype, "cpu")] = declared
        self._compiled.clear()
        return Capabilities(
            dims=(1, 2, 3),
            dtypes=tuple(dtypes),
            devices=("cpu",),
            padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
            padding_modes=("zeros", *_PAD_MODES),
            layouts=("contiguous",),
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=False,
            empty_batch=True,
            precision=precision,
            notes=(*_NOTES, default_hint_note(), *notes),
        )

    def _float64_is_native(self) -> bool:
        spec = ConvSpec(17, 1, input_size=(1,), kernel_size=(1,), bias=False, dtype="float64")
        x = np.array([2.0**24] + [1.0] * 16).reshape(spec.input_shape)
        return float(self._run(spec, x, np.ones(spec.weight_shape), None).ravel()[0]) == 2.0**24 + 16

    def _flushes_subnormals(self, dtype: str) -> list[str]:
        """Which of a subnormal input, a subnormal (constant) weight and a subnormal product come back as 0."""
        tiny = get_format(dtype).smallest_normal
        spec = ConvSpec(1, 1, input_size=(4,), kernel_size=(1,), bias=False, dtype=dtype)
        ones, w = np.ones(spec.input_shape), np.ones(spec.weight_shape)
        probes = {
            "subnormal inputs are read as 0": (ones * tiny / 4, w),
            "subnormal constant weights are read as 0": (ones, w * tiny / 4),
            "subnormal results are flushed": (ones * tiny, w / 2),
        }
        return [what for what, (x, w) in probes.items() if not self._run(spec, x, w, None).all()]

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return self._run(spec, x, w, b)

    def _run(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        recipe = model_recipe(spec)
        key = (spec, _digest(w), None if b is None else _digest(b))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_model(build_model(recipe, w, b), CONFIG)
            self._compiled[key] = compiled
            if len(self._compiled) > _CACHE_SIZE:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return run_model(compiled, recipe, x)

    def versions(self) -> dict[str, str]:
        import openvino

        return {"openvino": openvino.__version__.split("-")[0]}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        if operation != "forward":
            return None
        recipe = model_recipe(spec)
        import openvino

        helpers = "\n\n".join(
            inspect.getsource(f) for f in (ov_tensor, from_ov_tensor, build_model, compile_model, run_model)
        )
        return _REPRO.format(
            descriptor=spec.descriptor(),
            version=openvino.__version__,
            recipe=textwrap.indent(pprint.pformat(recipe, sort_dicts=False, width=100), " " * 9).lstrip(),
            config=CONFIG,
            helpers=helpers,
        )


def _digest(a: np.ndarray) -> tuple[tuple[int, ...], str]:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest()


def default_hint_note() -> str:
    """What the CPU plugin would run a float32 model in without the adapter's hint, read from OpenVINO."""
    try:
        import openvino as ov

        hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    except Exception as exc:  # the note says so; the run does not depend on it
        return f"the CPU plugin's default INFERENCE_PRECISION_HINT could not be read: {exc}"
    return (f"the CPU plugin's default INFERENCE_PRECISION_HINT here is {hint} (bf16 on CPUs with avx512_bf16: "
            "a float32 model would run with bfloat16-rounded inputs); the adapter overrides it with f32")  # fmt: skip


_REPRO = '''\
# {descriptor}: OpenVINO CPU plugin, one-op model (openvino {version})
from __future__ import annotations

import numpy as np
import openvino  # noqa: F401  (used by the helpers)

RECIPE = {recipe}
CONFIG = {config!r}


{helpers}


def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    return run_model(compile_model(build_model(RECIPE, w, b), CONFIG), RECIPE, x)
'''


__all__ = ["CONFIG", "OpenVino", "build_model", "compile_model", "model_recipe", "run_model"]
