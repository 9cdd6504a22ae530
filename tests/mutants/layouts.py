"""Memory-layout bugs: a kernel that takes the data pointer and assumes the strides."""

from __future__ import annotations

import torch

from conformance.spec import ConvSpec

from ._base import Mutant, read_as_contiguous

Tensors = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


class ChannelsLastReadAsNCHW(Mutant):
    """A channels-last input's memory (N, H, W, C) is read as if it were NCHW.

    Bug class: an operand's memory format misread by the kernel: pytorch/pytorch#82060
    (a channels_last weight with a contiguous one-channel input gave wrong output on
    CPU), tenstorrent/tt-metal#21463 ("we were passing NCHW format, when NHWC was
    expected").  One channel, or one spatial position, hides this mutant's bug.
    """

    name = "mutant-channels-last-read-as-nchw"
    BUG_CLASS = "layout: channels_last memory read as NCHW"
    TARGET_CELLS = ("forward/2d/float32/none",)

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        if spec.layout != "channels_last" or x.dim() < 3:
            return x, w, b
        return read_as_contiguous(x), w, b


class StridedViewReadAsContiguous(Mutant):
    """A non-contiguous input view is read from its first element as if it were contiguous.

    Bug class: strides ignored, NVIDIA/cutlass#1323 ("Stride is ignored for dst
    tensor of a Conv2dFprop"); the suite's strided layout is a view into a
    NaN-filled buffer, so such a kernel reads NaN.
    """

    name = "mutant-strided-read-as-contiguous"
    BUG_CLASS = "layout: strided view read as contiguous"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        if spec.layout != "strided":
            return x, w, b
        return read_as_contiguous(x), w, b


__all__ = ["ChannelsLastReadAsNCHW", "StridedViewReadAsContiguous"]
