"""Geometry bugs: a per-axis parameter read for the other axis, a fast path or a size formula that forgets one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adapters import torch_common as tc
from adapters.torch_functional import Plan
from conformance.spec import ConvSpec

from ._base import Mutant, conv_function, conv_into


class StrideAxesSwapped(Mutant):
    """The kernel walks H with W's stride and W with H's (the output is sized from the right ones).

    Bug class: per-axis parameters passed in the other order, (stride_w, stride_h)
    for (stride_h, stride_w): ncnn's layer parameters list w before h (kernel_w,
    kernel_h, stride_w, stride_h, as in Tencent/ncnn#315), PyTorch lists h first.
    Square strides hide it.
    """

    name = "mutant-stride-axes-swapped"
    BUG_CLASS = "per-axis mix-up: stride of H and W swapped"
    TARGET_CELLS = ("forward/2d/float32/none",)

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if spec.transposed:
            return super().run(spec, p, x, w, b)
        return conv_into(spec, x, w, b, stride=tuple(reversed(spec.stride)))


class DilationAxesSwapped(Mutant):
    """The kernel dilates H by W's dilation and W by H's.

    Bug class: as :class:`StrideAxesSwapped`, for dilation (TensorFlow's
    ``dilations`` is NHWC-ordered and 4 long, a common place to lose the order).
    """

    name = "mutant-dilation-axes-swapped"
    BUG_CLASS = "per-axis mix-up: dilation of H and W swapped"
    TARGET_CELLS = ("forward/2d/float32/none",)

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if spec.transposed:
            return super().run(spec, p, x, w, b)
        return conv_into(spec, x, w, b, dilation=tuple(reversed(spec.dilation)))


class OneByOneIgnoresStride(Mutant):
    """A 1x1 kernel takes a GEMM fast path that reads the input as the GEMM operand directly, ignoring the stride.

    AlexeyAB/darknet#6471: ``if (l.size == 1) b = im;`` skips im2col for a 1x1
    kernel, which is right only at stride 1: output position ``o`` then reads
    input position ``o``, not ``o * stride``.
    """

    name = "mutant-1x1-ignores-stride"
    BUG_CLASS = "1x1 fast path ignores stride"
    TARGET_CELLS = ("forward/1d/float32/none",)
    MIN_DETECTION = 0.2
    KNOWN_GAP = (
        "needs kernel 1 on every axis with a stride > 1, more than one output position along that axis and "
        "non-constant data; unpadded cells draw pointwise kernels a third of the time, but the stride is 1 five "
        "times in eight, so about one example in ten holds it (5 of 10 seeded draws of this cell catch it; "
        "before pointwise draws, 3 of 10 and no forward cell's ci draw)"
    )

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if spec.transposed or any(k != 1 for k in spec.kernel_size):
            return super().run(spec, p, x, w, b)
        return conv_into(spec, x, w, b, stride=(1,) * spec.dims)


class CeilOutputSize(Mutant):
    """The output size is ``ceil((padded - extent) / stride) + 1``, not floor: one extra position when the stride
    leaves a remainder, its window running past the input into zeros.

    Bug class: pooling's ``ceil_mode`` formula (Caffe's pooling default) shared
    with convolution; the output then has the wrong shape.
    """

    name = "mutant-ceil-output-size"
    BUG_CLASS = "output size with ceil instead of floor"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if spec.transposed:
            return super().run(spec, p, x, w, b)
        x = F.pad(x, tc.pad_list(spec.pads), mode=tc.PAD_MODES[spec.padding_mode])
        extra = []
        for n, k, s, d in zip(x.shape[2:], spec.kernel_size, spec.stride, spec.dilation):
            extent = d * (k - 1) + 1
            out = -(-(n - extent) // s) + 1
            extra.append((0, (out - 1) * s + extent - n))
        x = F.pad(x, tc.pad_list(extra))
        return conv_function(spec.dims)(x, w, b, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)


class DepthwiseIgnoresDilation(Mutant):
    """The depthwise kernel (groups == in_channels > 1) ignores dilation.

    tensorflow/tensorflow#19992 and #56498 ("DepthwiseConv2dNative ignores
    dilation values"), Tencent/ncnn#315 (ConvolutionDepthWise wrong for
    dilation != 1): the depthwise path is a separate kernel, and dilation is
    the parameter it forgets.
    """

    name = "mutant-depthwise-ignores-dilation"
    BUG_CLASS = "depthwise path ignores dilation"
    TARGET_CELLS = ("forward/2d/float32/symmetric", "forward/3d/float32/none")

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        depthwise = spec.groups > 1 and spec.in_channels == spec.groups
        if spec.transposed or not depthwise:
            return super().run(spec, p, x, w, b)
        return conv_into(spec, x, w, b, dilation=(1,) * spec.dims)


class FlippedKernel(Mutant):
    """A true convolution (kernel flipped on every spatial axis) instead of the cross-correlation frameworks compute.

    Bug class: convolution vs cross-correlation, as between scipy.signal's
    ``convolve`` and ``correlate``, or Theano's ``conv2d`` (``filter_flip=True``
    by default) and every other framework; weights ported between them are
    flipped.  Symmetric kernels and all-ones data hide it.
    """

    name = "mutant-flipped-kernel"
    BUG_CLASS = "kernel flipped (convolution, not cross-correlation)"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def inputs(
        self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if spec.transposed:
            return x, w, b
        return x, w.flip(dims=tuple(range(2, w.dim()))), b


__all__ = [
    "CeilOutputSize",
    "DepthwiseIgnoresDilation",
    "DilationAxesSwapped",
    "FlippedKernel",
    "OneByOneIgnoresStride",
    "StrideAxesSwapped",
]
