"""Transposed-convolution bugs: output_padding and grouped weights."""

from __future__ import annotations

import torch

from conformance.spec import ConvSpec

from ._base import Mutant, along

Tensors = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


class TransposedOutputPaddingLeftZero(Mutant):
    """The ``output_padding`` positions at the end of each axis are left zero: no taps, no bias.

    Bug class: output_padding implemented as "allocate the larger output, compute
    the smaller one": right only without bias and without an ``after`` crop that
    moves computed positions into that band (PyTorch defines the output as the
    full transposed result cropped by ``padding`` and extended by
    ``output_padding``, so those positions can hold real taps).
    """

    name = "mutant-transposed-output-padding-zero"
    BUG_CLASS = "transposed: output_padding rows left zero"
    TARGET_CELLS = ("transposed/1d/float32/none", "transposed/1d/float32/symmetric")
    MIN_DETECTION = 0.5
    KNOWN_GAP = (
        "the bug shows only where output_padding >= 1 meets a bias or an after-crop (without them the band is "
        "zero anyway): about one problem in six of these cells, so 15 examples meet it in most draws, not all"
    )

    def output(self, spec: ConvSpec, y: torch.Tensor) -> torch.Tensor:
        if not spec.transposed or not any(spec.output_padding):
            return y
        y = y.clone()
        for axis, op in enumerate(spec.output_padding):
            if op:
                y[along(axis, slice(-op, None), y.dim())] = 0
        return y


class TransposedGroupWeightsMisread(Mutant):
    """A grouped transposed convolution's weight (in, out/groups, k) is turned into a forward weight
    with one transpose of the whole tensor instead of one per group.

    apache/tvm#10223 and #9465 (Conv2DTranspose with groups wrong), and the
    grouped-weight layout confusion ONNX had to spell out in onnx/onnx#1287: a
    transposed convolution is a forward one with the weight transposed *per
    group*; transposing the whole (in, out/groups) matrix scrambles the groups.
    One group, and depthwise problems, hide it.
    """

    name = "mutant-transposed-group-weights"
    BUG_CLASS = "transposed: grouped weights transposed as a whole, not per group"
    TARGET_CELLS = ("transposed/1d/float32/none",)

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        if not spec.transposed or spec.groups == 1:
            return x, w, b
        g, k = spec.groups, tuple(w.shape[2:])
        cin_g, cout_g = spec.in_channels // g, spec.out_channels // g
        # The wrong conversion to a forward weight (out, in/groups, k)...
        forward_weight = w.transpose(0, 1).reshape(spec.out_channels, cin_g, *k)
        # ... and back with the right, per-group one, so that PyTorch's transposed kernel computes with it.
        return x, forward_weight.reshape(g, cout_g, cin_g, *k).transpose(1, 2).reshape(spec.in_channels, cout_g, *k), b


__all__ = ["TransposedGroupWeightsMisread", "TransposedOutputPaddingLeftZero"]
