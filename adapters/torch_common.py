"""What the two PyTorch adapters share: tensors in and out, the precision model, versions, repro scripts.

Tensors
    :func:`as_tensor` turns the suite's float64 arrays into the spec's dtype, device
    and layout; :func:`as_numpy` brings a result back as float64.  Both are
    self-contained (only ``numpy`` and ``torch``), because a repro script carries
    their source verbatim: the script and the adapter then cannot convert
    differently.

Precision
    :func:`precision_model` says how PyTorch rounds, per dtype and device.  What
    it declares comes from documented switches (TF32 and bf16 math modes) read
    when it is called, and, for the flushing of subnormals, which depends on the
    CPU and on the kernel oneDNN picks for it (on AVX512 / AMX machines its
    bfloat16 kernels flush), from a tiny probe run once per process.

Expressibility
    Some problems cannot be put to a PyTorch API at all (a padding mode on
    ``F.conv_transpose*``, output padding on a forward convolution, a dtype name
    outside the suite's vocabulary).  The adapters raise :class:`CannotExpress` for
    those instead of silently dropping the parameter; everything PyTorch *can* be
    asked is passed to it unchecked, so its own acceptance or rejection is what the
    suite records.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from adapters import base
from conformance.spec import ConvSpec
from conformance.tolerance import Precision

#: The suite's dtype names and the torch dtypes they mean.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

#: The suite's padding modes and the ``F.pad`` mode for each.
PAD_MODES: dict[str, str] = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


# A problem with a parameter this PyTorch API has no way to take: nothing is run.
CannotExpress = base.CannotExpress


# ---------------------------------------------------------------------- tensors


def as_tensor(a: np.ndarray, dtype: torch.dtype, device: str, layout: str) -> torch.Tensor:
    """A float64 array as a ``dtype`` tensor on ``device`` in ``layout``.

    The conversion is exact: the suite hands over values representable in ``dtype``.

    * ``contiguous``: a plain row-major tensor.
    * ``channels_last``: ``torch.channels_last`` (4-D) or ``channels_last_3d`` (5-D);
      a 3-D tensor is an ``(N, L, C)`` buffer seen as ``(N, C, L)``, which is what
      channels-last means in 1-D.  A 1-D tensor (the bias) has no layout to choose.
    * ``strided``: a view into a NaN-filled buffer with twice the channels (axis 1)
      and ``2*L + 1`` on the last axis, starting one element in: non-contiguous
      whenever it has more than one element, with a storage offset, and a kernel
      that ignores the strides reads NaN.
    """
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(device=device, dtype=dtype)
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        if t.dim() == 3:
            return t.permute(0, 2, 1).contiguous().permute(0, 2, 1)
        return t.contiguous()
    if layout == "strided":
        big, index = list(t.shape), [slice(None)] * t.dim()
        big[-1], index[-1] = 2 * t.shape[-1] + 1, slice(1, None, 2)
        if t.dim() >= 3:
            # Interleave the channels too, so that a last axis of size 1 still leaves a gap.
            big[1], index[1] = 2 * t.shape[1], slice(None, None, 2)
        view = torch.full(big, float("nan"), dtype=dtype, device=device)[tuple(index)]
        view.copy_(t)
        return view
    raise ValueError(f"layout={layout!r}, but should be one of ('contiguous', 'channels_last', 'strided')")


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A result as a float64 array on the host (every dtype here converts to float64 exactly)."""
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def tensors(spec: ConvSpec, *arrays: np.ndarray | None, requires_grad: bool = False) -> list[torch.Tensor | None]:
    """:func:`as_tensor` of each array (None stays None) in the spec's dtype, device and layout."""
    dtype = torch_dtype(spec)
    layout = spec.layout
    if layout not in ("contiguous", "channels_last", "strided"):
        raise CannotExpress(f"layout={layout!r}: no PyTorch memory layout by that name in the suite's vocabulary")
    out: list[torch.Tensor | None] = []
    for a in arrays:
        t = None if a is None else as_tensor(a, dtype, spec.device, layout)
        if t is not None and requires_grad:
            t.requires_grad_()
        out.append(t)
    return out


def torch_dtype(spec: ConvSpec) -> torch.dtype:
    # Only the suite's names: torch would also take "half" or "float", which the
    # suite calls invalid, and the answer would be torch's alias table, not its conv.
    if not isinstance(spec.dtype, str) or spec.dtype not in TORCH_DTYPES:
        raise CannotExpress(f"dtype={spec.dtype!r}: not one of the suite's dtypes {tuple(TORCH_DTYPES)}")
    return TORCH_DTYPES[spec.dtype]


def pad_list(pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Per-axis ``(before, after)`` pairs -> ``F.pad``'s flat list, last axis first."""
    return [p for before, after in reversed(tuple(pairs)) for p in (before, after)]


def symmetric(spec: ConvSpec) -> bool:
    """Explicit padding with before == after on every axis (a string is not)."""
    return not isinstance(spec.padding, str) and all(before == after for before, after in spec.padding)


def gradients(
    y: torch.Tensor, grad_out: torch.Tensor, leaves: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Back-propagate ``grad_out`` through ``y`` and collect the leaves' gradients."""
    y.backward(grad_out)
    out = []
    for leaf in leaves:
        if leaf is None:
            out.append(None)
        elif leaf.grad is None:
            # Autograd leaves .grad unset only when no path reached the leaf; a
            # convolution always reaches all three, so this is PyTorch misbehaving.
            raise RuntimeError(f"autograd left no gradient for a leaf of shape {tuple(leaf.shape)}")
        else:
            out.append(as_numpy(leaf.grad))
    return out[0], out[1], out[2]


# -------------------------------------------------------------------- precision


def devices() -> tuple[str, ...]:
    """Device kinds PyTorch can run on here."""
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def _first_set(values: Iterable[str]) -> str:
    # PyTorch's fp32 precision switches nest (op, then backend, then global);
    # "none" means "ask the enclosing one", and none set at all means IEEE.
    for value in values:
        if value and value != "none":
            return value
    return "ieee"


def cpu_float32_math() -> str:
    """The oneDNN fp32 math mode for convolutions: ``"ieee"``, ``"bf16"`` or ``"tf32"``."""
    mkldnn = torch.backends.mkldnn
    return _first_set(
        (
            getattr(getattr(mkldnn, "conv", None), "fp32_precision", "none"),
            getattr(mkldnn, "fp32_precision", "none"),
            getattr(torch.backends, "fp32_precision", "none"),
        )
    )


def cudnn_float32_math() -> str:
    """cuDNN's fp32 math mode for convolutions: ``"tf32"`` or ``"ieee"``."""
    cudnn = torch.backends.cudnn
    conv = getattr(cudnn, "conv", None)
    if conv is None:  # before PyTorch 2.9: only the legacy switch
        return "tf32" if cudnn.allow_tf32 else "ieee"
    # Read the new switches only: reading allow_tf32 raises when they were set
    # through both APIs and disagree.
    return _first_set(
        (
            conv.fp32_precision,
            getattr(cudnn, "fp32_precision", "none"),
            getattr(torch.backends, "fp32_precision", "none"),
        )
    )


def _cuda_has_tf32() -> bool:
    # TF32 tensor cores exist from Ampere (compute capability 8.0) on.
    try:
        return any(torch.cuda.get_device_capability(i)[0] >= 8 for i in range(torch.cuda.device_count()))
    except (RuntimeError, AssertionError):
        return True  # cannot ask: assume the switch takes effect (the looser declaration)


@functools.cache
def cpu_flushes_subnormals(dtype: str) -> bool:
    """Whether a CPU convolution in ``dtype`` reads subnormal inputs as zero or flushes subnormal results.

    Probed on two shapes (a 1-D single channel, and a 2-D one with channels that
    oneDNN blocks), since which kernel runs depends on the shape.  Cached: the
    answer depends on the CPU and on ``torch.set_flush_denormal``, which a
    conformance run does not toggle.
    """
    dt = TORCH_DTYPES[dtype]
    tiny = torch.finfo(dt).tiny  # smallest normal
    probes = (((1, 1, 4), (1, 1, 1)), ((1, 8, 3, 4), (8, 8, 1, 1)))
    conv = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d}
    with torch.no_grad():
        for x_shape, w_shape in probes:
            f = conv[len(x_shape)]
            w = torch.zeros(w_shape, dtype=dt)
            w[(0, 0) + (0,) * (len(w_shape) - 2)] = 1.0
            read = f(torch.full(x_shape, tiny / 4, dtype=dt), w)  # a subnormal input, times 1
            made = f(torch.full(x_shape, tiny, dtype=dt), w * 0.5)  # a subnormal result
            if bool((read[:, 0] == 0).any()) or bool((made[:, 0] == 0).any()):
                return True
    return False


def precision_model() -> tuple[dict[tuple[str, str], Precision], tuple[str, ...]]:
    """``(precision per (dtype, device kind), notes)`` for PyTorch's convolutions here, now."""
    precision: dict[tuple[str, str], Precision] = {}
    notes: list[str] = [
        "float16 and bfloat16 accumulate in float32 and round once to the output dtype "
        "(measured on PyTorch 2.13 CPU; cuDNN's documented behaviour on CUDA)",
    ]
    cpu_math = cpu_float32_math()
    cpu_f32_inputs = "bfloat16" if cpu_math == "bf16" else None
    if cpu_f32_inputs:
        notes.append(
            "CPU float32 runs in oneDNN's bf16 math mode (torch.backends fp32_precision='bf16'): inputs "
            "are declared rounded to bfloat16 (PyTorch 2.13 applies it to forward, not transposed, "
            "convolutions; the declaration covers both)"
        )
    elif cpu_math == "tf32":
        notes.append("oneDNN's TF32 switch is set, but it applies to Intel GPUs only, so CPU float32 is IEEE")
    flushing = []
    for dtype in TORCH_DTYPES:
        flushes = cpu_flushes_subnormals(dtype)
        if flushes:
            flushing.append(dtype)
        if dtype in ("float64", "float32"):
            inputs = cpu_f32_inputs if dtype == "float32" else None
            precision[(dtype, "cpu")] = Precision(inputs, dtype, dtype, flushes_subnormals=flushes)
        else:
            # A flushed float16 input is below float16's (not float32's) smallest normal:
            # say so with float16 input rounding, as Precision asks.
            inputs = "float16" if dtype == "float16" and flushes else None
            precision[(dtype, "cpu")] = Precision(inputs, "float32", dtype, flushes_subnormals=flushes)
    if flushing:
        notes.append(
            f"on this CPU ({torch.backends.cpu.get_cpu_capability()}) {', '.join(flushing)} convolutions flush "
            "subnormal inputs and results to zero (probed at start-up)"
        )
    if "cuda" in devices():
        tf32 = cudnn_float32_math() == "tf32" and _cuda_has_tf32()
        precision[("float64", "cuda")] = Precision(None, "float64", "float64")
        precision[("float32", "cuda")] = Precision("tf32" if tf32 else None, "float32", "float32")
        precision[("float16", "cuda")] = Precision(None, "float32", "float16")
        precision[("bfloat16", "cuda")] = Precision(None, "float32", "bfloat16")
        notes.append(
            "CUDA float32: inputs rounded to TF32 (torch.backends.cudnn.conv.fp32_precision='tf32', the default)"
            if tf32
            else "CUDA float32: IEEE (cuDNN TF32 is off, or no GPU here has TF32 tensor cores)"
        )
    return precision, tuple(notes)


def versions() -> dict[str, str]:
    """torch, and CUDA / cuDNN where PyTorch was built with them, and the CPU's vector ISA."""
    out = {"torch": torch.__version__, "cpu_capability": str(torch.backends.cpu.get_cpu_capability())}
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    if torch.backends.cudnn.is_available():
        out["cudnn"] = str(torch.backends.cudnn.version())
    return out


# ------------------------------------------------------------------------ repro


def call_source(function: str, positional: Iterable[str], kwargs: Iterable[tuple[str, Any]]) -> str:
    """``F.conv2d(x, w, b, stride=(2, 1), ...)``: the source of a call with literal keyword values."""
    # repr() is Python source for every parameter value here: ints, strings, bools, tuples of them.
    args = [*positional, *(f"{name}={value!r}" for name, value in kwargs)]
    return f"{function}({', '.join(args)})"


def repro_header(spec: ConvSpec, adapter_name: str, what: str, operation: str) -> str:
    """The docstring, imports and conversion helpers every torch repro script starts with."""
    dtype = torch_dtype(spec)
    defines = "candidate(x, w, b)" + (" and its backward" if operation == "backward" else "")
    return "\n".join(
        [
            f'"""Repro: {what} on {spec.descriptor()}.',
            "",
            f"Generated by conv-conformance's {adapter_name!r} adapter on torch {torch.__version__}:",
            f"{defines} take and return float64 numpy arrays and compute",
            'exactly what the adapter computes for this problem."""',
            "",
            "import numpy as np",
            "import torch",
            "import torch.nn.functional as F",
            "",
            f"DTYPE = {dtype}",
            f"DEVICE = {spec.device!r}",
            f"LAYOUT = {spec.layout!r}",
            "",
            "",
            inspect.getsource(as_tensor).rstrip(),
            "",
            "",
            inspect.getsource(as_numpy).rstrip(),
            "",
        ]
    )


def indent(lines: Iterable[str], depth: int = 1) -> list[str]:
    return [("    " * depth + line) if line else "" for line in lines]


__all__ = [
    "PAD_MODES",
    "TORCH_DTYPES",
    "CannotExpress",
    "as_numpy",
    "as_tensor",
    "cpu_float32_math",
    "cpu_flushes_subnormals",
    "cudnn_float32_math",
    "devices",
    "precision_model",
    "tensors",
    "versions",
]
