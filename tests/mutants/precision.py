"""Rounding bugs: arithmetic in a narrower format than the adapter declares, and NaN lost on the way out.

Each of these mutants declares PyTorch's own precision model (IEEE float32,
float32 accumulation for float16), which is what makes each of them a bug: the
same arithmetic, declared, would be conformant.
"""

from __future__ import annotations

import numpy as np
import torch

from conformance.spec import ConvSpec

from ._base import Mutant

Tensors = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]

#: The suite's padding modes as ``np.pad`` modes.
NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def direct_conv_float16(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """A direct forward convolution whose products and running sums are all float16.

    One strided window per kernel tap and input channel, accumulated in order
    into a float16 array: numpy rounds every float16 product and sum to float16,
    which is what a kernel with a float16 accumulator register does.
    """
    spec.validate()
    f16 = np.float16
    xp = np.pad(x, [(0, 0), (0, 0), *spec.pads], mode=NP_PAD_MODES[spec.padding_mode]).astype(f16)
    w16 = np.asarray(w).astype(f16)
    g = spec.groups
    cin_g, cout_g = spec.in_channels // g, spec.out_channels // g
    out = spec.output_size
    y = np.zeros(spec.output_shape, dtype=f16)
    for tap in np.ndindex(*spec.kernel_size):
        window = (slice(None), slice(None), *(
            slice(t * d, t * d + s * (o - 1) + 1, s) for t, o, s, d in zip(tap, out, spec.stride, spec.dilation)
        ))  # fmt: skip
        patch = xp[window]
        for group in range(g):
            outs = slice(group * cout_g, (group + 1) * cout_g)
            for c in range(cin_g):
                xs = patch[:, group * cin_g + c][:, None]  # (N, 1, *out)
                ws = w16[(outs, c, *tap)].reshape(1, cout_g, *(1,) * len(out))
                y[:, outs] = y[:, outs] + xs * ws
    if b is not None:
        y = y + np.asarray(b).astype(f16).reshape(1, -1, *(1,) * len(out))
    return y.astype(np.float64)


class Float16AccumulatesInFloat16(Mutant):
    """float16 convolution that accumulates in float16, while declaring (as PyTorch) float32 accumulation.

    Bug class: uxlfoundation/oneDNN#5041 ("Use f32 accumulator for f16 input in
    convolution": some GPU paths used mad with a half accumulator, against
    oneDNN's own documented f32 accumulation), openvinotoolkit/openvino#19782
    (f16 accumulation in OpenCL conv kernels), the ACL fp16 convolutions in
    uxlfoundation/oneDNN#1499.  Computed directly in numpy (PyTorch's CPU kernels
    accumulate float16 in float32 and cannot be asked not to); other dtypes are PyTorch's.
    """

    name = "mutant-float16-accumulates-in-float16"
    BUG_CLASS = "float16 accumulated in float16 (declared float32)"
    TARGET_CELLS = ("forward/1d/float16/none", "forward/2d/float16/none")

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if spec.dtype != "float16" or spec.transposed:
            return super().forward(spec, x, w, b)
        self.plan_for(spec)  # refuse what the torch adapter refuses
        return direct_conv_float16(spec, x, w, b)


def round_to_tf32(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to nearest (ties to even) at TF32's 10 fraction bits, as tensor cores read them."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    dropped = 13  # float32 has 23 fraction bits, TF32 keeps 10
    bits = (bits + (1 << (dropped - 1)) - 1 + ((bits >> dropped) & 1)) >> dropped << dropped
    return (bits & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)


class UndeclaredTF32(Mutant):
    """float32 inputs rounded to TF32 before the products, while the adapter declares IEEE float32.

    pytorch/pytorch#67384 and the PyTorch numerical-accuracy notes: with TF32 on
    (cuDNN's default for convolutions), "only the first 10 bits of the input
    mantissa are read".  Conformant when declared (``input_rounding="tf32"``);
    this mutant does not declare it.
    """

    name = "mutant-undeclared-tf32"
    BUG_CLASS = "float32 inputs rounded to TF32, undeclared"
    TARGET_CELLS = ("forward/1d/float32/none", "forward/2d/float32/none")

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if spec.dtype == "float32":
            x, w = round_to_tf32(x), round_to_tf32(w)
        return super().forward(spec, x, w, b)


class Float32OutputThroughBFloat16(Mutant):
    """A float32 result stored through a bfloat16 buffer (8 significant bits) on its way out.

    Bug class: a mixed-precision epilogue or an intermediate dst in bfloat16
    (oneDNN's bf16 dst / post-op paths, an AMP autocast region left on) behind a
    float32 API, while the adapter declares float32 output.
    """

    name = "mutant-float32-output-through-bfloat16"
    BUG_CLASS = "float32 output passed through bfloat16"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def output(self, spec: ConvSpec, y: torch.Tensor) -> torch.Tensor:
        if y.dtype != torch.float32:
            return y
        return y.to(torch.bfloat16).to(torch.float32)


class NaNFlushedToZero(Mutant):
    """NaN results become 0: the epilogue splits the result as ``fmax(y, 0) + fmin(y, 0)``.

    IEEE 754-2008 maxNum/minNum (C's fmax/fmin, torch.fmax) return the non-NaN
    operand, so a sign-splitting epilogue (a fused ReLU/leaky-ReLU written with
    them) turns NaN into 0 and leaves every other value, infinities included,
    alone.  tensorflow/tensorflow#63391: "conv2d op produces output without nan
    with nan inputs".
    """

    name = "mutant-nan-flushed-to-zero"
    BUG_CLASS = "NaN flushed to zero (fmax/fmin epilogue)"
    TARGET_CELLS = ("special/1d/float32/any", "special/2d/float32/any")

    def output(self, spec: ConvSpec, y: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=y.dtype, device=y.device)
        return torch.fmax(y, zero) + torch.fmin(y, zero)


__all__ = [
    "NP_PAD_MODES",
    "Float16AccumulatesInFloat16",
    "Float32OutputThroughBFloat16",
    "NaNFlushedToZero",
    "UndeclaredTF32",
    "direct_conv_float16",
    "round_to_tf32",
]
