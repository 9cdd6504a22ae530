"""ONNX Runtime on the CPU as a candidate: one ``Conv`` or ``ConvTranspose`` node per problem.

Each problem becomes a one-node ONNX model whose attributes are the spec's values
passed straight through: ``kernel_shape``, ``strides``, ``dilations``, ``group``,
explicit ``pads`` (``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``, so asymmetric
padding is expressed as is), ``output_padding`` for ``ConvTranspose``, and
``auto_pad`` where the spec's padding string has an ONNX spelling: ``'valid'`` is
``VALID`` and ``'same'`` is ``SAME_UPPER`` (the odd extra pad at the end, as
PyTorch does).  ``'same'`` is deliberately *not* resolved to explicit pads here:
how the runtime resolves it, dilation included, is part of what is under test.

The weight and bias are graph inputs, not initializers, so one cached session
serves every data draw of a problem.  The price: ORT's layout optimizer (the
NCHWc transformer of ``ORT_ENABLE_ALL``) rewrites only convolutions whose weight
is a constant initializer, so its blocked-layout kernels are not exercised; what
runs is the CPU provider's general ``Conv`` / ``ConvTranspose`` kernels (MLAS
im2col + SGEMM, and its direct and depthwise paths).

Measured on onnxruntime 1.32 / onnx 1.23 (x86-64 with AVX-512), which is what
:meth:`OnnxRuntime.capabilities` declares; the dtypes are probed on the running
machine rather than assumed:

* float32: products and sums in float32 (MLAS; no Winograd or reduced-precision
  path shows), i.e. :func:`~conformance.tolerance.default_precision`: thousands of
  random problems, 3x3 many-channel ones included, stay within its bound, bit for
  bit in the exact tier (``tests/test_adapter_onnxruntime.py`` keeps 200 of them).
* float16: the CPU provider has no float16 ``Conv`` kernel; ORT's
  ``InsertCastTransformer`` wraps the node in ``Cast`` to float32 and back (seen in
  the optimized graph), so float16 data is widened exactly, accumulated in float32
  and rounded once to float16: the default float16 declaration.  ``2048 + sixteen
  1s`` returns 2064, which a float16 accumulator could not.
* float64 and bfloat16: no CPU kernel (``NOT_IMPLEMENTED`` at session creation),
  so unsupported.
* Subnormals are neither flushed nor read as zero (the special-value data passes
  without a flushing declaration).

Two valid problems ORT refuses with ``INVALID_ARGUMENT`` at run time (declared
supported all the same, so that they are reported, not hidden):

* ``Conv`` with ``auto_pad=SAME_UPPER`` and any dilation > 1 ("Dilation not
  supported for AutoPadType::SAME_UPPER"), which ONNX defines and its reference
  evaluator computes;
* ``ConvTranspose`` with ``output_padding >= stride`` (but ``< dilation``, which
  PyTorch allows): "output_padding (1) may be too large for stride (1)".
"""

from __future__ import annotations

import inspect
import pprint
import textwrap
from collections import OrderedDict
from typing import Any

import numpy as np

from adapters.base import Adapter, CannotExpress, Capabilities, device_kind, probe_dtypes
from conformance.spec import ConvSpec
from conformance.tolerance import default_precision

#: The opset of the model.  22 is the latest revision of both Conv and
#: ConvTranspose, so the model asks for the operator as ONNX defines it today.
OPSET = 22

#: spec dtype -> (ONNX TensorProto element type name, numpy dtype name or None).
#: numpy has no bfloat16, and the CPU provider has no bfloat16 kernel to feed anyway.
_DTYPES: dict[str, tuple[str, str | None]] = {
    "float32": ("FLOAT", "float32"),
    "float16": ("FLOAT16", "float16"),
    "float64": ("DOUBLE", "float64"),
    "bfloat16": ("BFLOAT16", None),
}

# A session is cheap (well under a millisecond) but holds its own thread pool;
# Hypothesis seldom repeats a spec except while shrinking, so a small LRU is enough.
_CACHE_SIZE = 16

_NOTES = (
    "ONNX tensors are dense row-major (NCHW): no channels_last or strided layout can be expressed",
    "ONNX Conv has no padding_mode; emulating reflect/replicate/circular with a Pad node would test Pad, not Conv",
    "padding='same' is auto_pad=SAME_UPPER and 'valid' is auto_pad=VALID, resolved by the runtime, not the adapter",
    "a transposed convolution takes explicit pads: ONNX ConvTranspose's auto_pad means output = input*stride, "
    "not PyTorch's 'same', so a padding string there is refused by the adapter",
    "weights are graph inputs, so ORT's NCHWc layout transformer (constant weights only) is not exercised",
    "float16 runs as Cast->float32 Conv->Cast (ORT's InsertCastTransformer): float32 accumulation, one rounding",
    "backward is not part of ONNX Runtime's inference API",
    "ORT refuses (INVALID_ARGUMENT) Conv with auto_pad=SAME_UPPER and a dilation > 1, which ONNX defines",
    "ORT refuses (INVALID_ARGUMENT) ConvTranspose with output_padding >= stride, even where < dilation",
)


# ----------------------------------------------------------------- the model
#
# The three functions below are copied verbatim into every repro script (see
# OnnxRuntime.repro_source), so they import what they use and touch no module
# globals: the repro then runs exactly the code the adapter ran.


def build_model(recipe: dict[str, Any]) -> bytes:
    """The serialized one-node ONNX model that ``recipe`` describes."""
    from onnx import TensorProto, helper

    elem = getattr(TensorProto, recipe["elem_type"])
    inputs = [
        helper.make_tensor_value_info("x", elem, recipe["x_shape"]),
        helper.make_tensor_value_info("w", elem, recipe["w_shape"]),
    ]
    if recipe["b_shape"] is not None:
        inputs.append(helper.make_tensor_value_info("b", elem, recipe["b_shape"]))
    node = helper.make_node(recipe["op"], [i.name for i in inputs], ["y"], **recipe["attributes"])
    # Only the output's rank is declared: its size is the runtime's to infer, and under test too.
    output = helper.make_tensor_value_info("y", elem, [None] * len(recipe["x_shape"]))
    graph = helper.make_graph([node], "conv", inputs, [output])
    opset = [helper.make_opsetid("", recipe["opset"])]
    model = helper.make_model(graph, opset_imports=opset, ir_version=helper.find_min_ir_version_for(opset))
    return model.SerializeToString()


def new_session(model: bytes) -> Any:
    """An ``InferenceSession`` on the CPU provider with ORT's default optimizations and threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failure is raised with its message, not logged
    # Idle pool threads spin by default and would steal the CPU from the oracle
    # and from other test workers; spinning does not change any result.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_model(session: Any, recipe: dict[str, Any], x: Any, w: Any, b: Any) -> Any:
    """Feed float64 ``x, w, b`` in the model's dtype; the output as float64 (exact: it widens)."""
    import numpy as np

    if recipe["numpy_dtype"] is None:
        raise NotImplementedError(f"numpy cannot hold {recipe['elem_type']} tensors")
    dtype = np.dtype(recipe["numpy_dtype"])
    feeds = {"x": np.asarray(x).astype(dtype), "w": np.asarray(w).astype(dtype)}
    if recipe["b_shape"] is not None:
        feeds["b"] = np.asarray(b).astype(dtype)
    (y,) = session.run(["y"], feeds)
    return np.asarray(y).astype(np.float64)


# ------------------------------------------------------------ spec -> recipe


def model_recipe(spec: ConvSpec) -> dict[str, Any]:
    """The plain-data description of ``spec``'s one-node model (literals only, so it prints into a repro).

    Values go to ONNX unvalidated: rejecting an invalid problem is the
    backend's job.  The adapter refuses only what a one-node model cannot say:
    another device, an unknown dtype, a layout, a padding mode, a padding
    string ONNX lacks or gives another meaning, a tensor of negative extent,
    and channel counts that the weight shape would floor away.
    """
    if device_kind(spec.device) != "cpu":
        raise CannotExpress(f"device={spec.device!r}: this adapter runs ORT's CPU execution provider only")
    if spec.dtype not in _DTYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: no ONNX tensor type stands for it")
    if spec.layout != "contiguous":
        raise CannotExpress(f"layout={spec.layout!r}: ONNX tensors are dense row-major")
    if spec.padding_mode != "zeros":
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: ONNX Conv pads with zeros only")
    elem_type, numpy_dtype = _DTYPES[spec.dtype]
    if spec.groups == 0:
        raise CannotExpress("groups=0: the weight shape (channels/groups) is undefined, so no model can be built")
    shapes = {"x": spec.input_shape, "w": spec.weight_shape, "b": spec.bias_shape or ()}
    for name, shape in shapes.items():
        # A graph input declared with a negative dimension reads as "unknown" to ORT, so the
        # value would never reach it: no tensor has a negative extent, say so here.
        if any(v < 0 for v in shape):
            raise CannotExpress(f"{name} would have shape {shape}: no tensor has a negative extent")
    if spec.transposed and spec.out_channels % spec.groups:
        # ConvTranspose takes its output channels from W.shape[1] * group; the spec's
        # out_channels/groups would be floored away and, without a bias to contradict
        # it, ORT would silently run a problem with fewer channels than asked for.
        raise CannotExpress(
            f"out_channels={spec.out_channels} is not a multiple of groups={spec.groups}: ONNX ConvTranspose "
            "derives its output channels from the weight shape, which cannot express that"
        )
    attributes: dict[str, Any] = {
        "kernel_shape": list(spec.kernel_size),
        "strides": list(spec.stride),
        "dilations": list(spec.dilation),
        "group": spec.groups,
    }
    if isinstance(spec.padding, str):
        if spec.transposed:
            raise CannotExpress(
                f"padding={spec.padding!r} on a transposed convolution: ONNX ConvTranspose's auto_pad "
                "means output = input*stride, not this padding, so there is no faithful spelling"
            )
        auto_pad = {"valid": "VALID", "same": "SAME_UPPER"}.get(spec.padding)
        if auto_pad is None:
            raise CannotExpress(f"padding={spec.padding!r}: ONNX's auto_pad has no such value")
        if auto_pad == "SAME_UPPER" and any(s != 1 for s in spec.stride):
            raise CannotExpress(
                f"padding='same' with stride={spec.stride}: ONNX's SAME_UPPER with a stride is defined "
                "(ceil(input/stride) outputs), a different problem rather than an invalid one"
            )
        attributes["auto_pad"] = auto_pad
    else:
        attributes["pads"] = [p[0] for p in spec.padding] + [p[1] for p in spec.padding]
    # A forward Conv has no output_padding attribute: one is added only when the
    # spec asks for it, so that the runtime, not the adapter, rejects it.
    if spec.transposed or any(v != 0 for v in spec.output_padding):
        attributes["output_padding"] = list(spec.output_padding)
    return {
        "op": "ConvTranspose" if spec.transposed else "Conv",
        "opset": OPSET,
        "elem_type": elem_type,
        "numpy_dtype": numpy_dtype,
        "x_shape": list(spec.input_shape),
        "w_shape": list(spec.weight_shape),
        "b_shape": list(spec.bias_shape) if spec.bias_shape is not None else None,
        "attributes": attributes,
    }


# ------------------------------------------------------------------- adapter


class OnnxRuntime(Adapter):
    """ONNX Runtime's CPU execution provider, through one ``Conv`` / ``ConvTranspose`` node."""

    name = "onnxruntime"

    def __init__(self) -> None:
        # Keyed by the spec: everything that shapes the graph is in it, and nothing else is.
        self._sessions: OrderedDict[ConvSpec, Any] = OrderedDict()
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._probe()
        return self._capabilities

    def _probe(self) -> Capabilities:
        """Declare the dtypes the CPU provider really runs, found by running one tiny problem each."""

        def run(spec: ConvSpec) -> None:
            try:
                self.forward(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape), np.ones(1))
            finally:
                self._sessions.pop(spec, None)

        outcome = probe_dtypes(run)
        dtypes = [dtype for dtype, failure in outcome.items() if failure is None]
        notes = [f"{dtype} does not run on the CPU provider: {failure}"
                 for dtype, failure in outcome.items() if failure]  # fmt: skip
        return Capabilities(
            dims=(1, 2, 3),
            dtypes=tuple(dtypes),
            devices=("cpu",),
            padding_forms=("none", "symmetric", "asymmetric", "same", "valid"),
            padding_modes=("zeros",),
            layouts=("contiguous",),
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=False,
            empty_batch=True,
            # Measured, see the module docstring; written out so the report shows them.
            precision={(d, "cpu"): default_precision(d) for d in dtypes},
            notes=(*_NOTES, *notes),
        )

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        recipe = model_recipe(spec)
        return run_model(self._session(spec, recipe), recipe, x, w, b)

    def _session(self, spec: ConvSpec, recipe: dict[str, Any]) -> Any:
        session = self._sessions.get(spec)
        if session is None:
            session = new_session(build_model(recipe))
            self._sessions[spec] = session
            if len(self._sessions) > _CACHE_SIZE:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(spec)
        return session

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        if operation != "forward":
            return None
        recipe = model_recipe(spec)
        helpers = "\n\n".join(inspect.getsource(f) for f in (build_model, new_session, run_model))
        versions = ", ".join(f"{k} {v}" for k, v in self.versions().items())
        return _REPRO.format(
            descriptor=spec.descriptor(),
            versions=versions,
            # Continuation lines line up under the opening brace after "RECIPE = ".
            recipe=textwrap.indent(pprint.pformat(recipe, sort_dicts=False, width=100), " " * 9).lstrip(),
            helpers=helpers,
        )


_REPRO = '''\
# {descriptor}: ONNX Runtime CPU, one-node model ({versions})
from __future__ import annotations

import numpy as np
import onnx  # noqa: F401  (used by build_model)
import onnxruntime  # noqa: F401  (used by new_session)

RECIPE = {recipe}


{helpers}

_SESSION = None


def candidate(x, w, b=None):
    """float64 arrays in, float64 array out: what the conformance adapter computed."""
    global _SESSION
    if _SESSION is None:
        _SESSION = new_session(build_model(RECIPE))
    return run_model(_SESSION, RECIPE, x, w, b)
'''


__all__ = ["OPSET", "OnnxRuntime", "build_model", "model_recipe", "new_session", "run_model"]
