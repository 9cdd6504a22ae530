"""Validation bugs: an invalid problem answered instead of rejected."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adapters import torch_common as tc
from adapters.torch_functional import Plan
from conformance.spec import ConvSpec

from ._base import Mutant, conv_function


class OutputPaddingUnchecked(Mutant):
    """A transposed convolution with ``output_padding >= max(stride, dilation)`` is computed, not rejected.

    pytorch/pytorch#169236 / #169259 (the MPS backend silently accepted
    ``output_padding >= stride`` and ``>= dilation`` while CPU raised),
    apple/coreai-torch#78 ("converter accepts and executes a config PyTorch
    rejects"), keras-team/keras#22130 (the missing check added).  The answer is
    what a col2im implementation without the check computes: the full transposed
    output, cropped by ``padding`` and extended with zeros (plus bias) to the
    size the formula gives.  Every other check is PyTorch's.
    """

    name = "mutant-output-padding-unchecked"
    BUG_CLASS = "invalid problem answered: output_padding >= max(stride, dilation) accepted"
    # The 1-D cell: in 2-D and 3-D PyTorch itself answers this rule on an empty batch (a baselined
    # discrepancy), so a minimal case there would be PyTorch's bug, not the mutant's.
    TARGET_CELLS = ("invalid/1d/float32/output_padding_smaller_than_stride_or_dilation",)

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        too_large = any(op >= max(s, d) for op, s, d in zip(spec.output_padding, spec.stride, spec.dilation))
        if not spec.transposed or not too_large:
            return super().run(spec, p, x, w, b)
        full = conv_function(spec.dims, transposed=True)(
            x, w, None, stride=spec.stride, padding=0, output_padding=0, groups=spec.groups, dilation=spec.dilation
        )
        size = spec.output_size
        short = [max(0, before + o - n) for (before, _), o, n in zip(spec.pads, size, full.shape[2:])]
        full = F.pad(full, tc.pad_list((0, e) for e in short))
        y = full[(..., *(slice(before, before + o) for (before, _), o in zip(spec.pads, size)))]
        if b is not None:
            y = y + b.reshape(1, -1, *(1,) * spec.dims)
        return y


__all__ = ["OutputPaddingUnchecked"]
