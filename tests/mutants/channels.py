"""Channel, group, bias and batch indexing bugs."""

from __future__ import annotations

import torch

from conformance.spec import ConvSpec

from ._base import Mutant

Tensors = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


class GroupsReadGroupZero(Mutant):
    """Every group reads the input channels of group 0: the input pointer is not advanced per group.

    Bug class: a per-group offset missing in a grouped GEMM loop (BVLC/caffe#4134
    is the same family: ``col_buff + col_offset_ * g`` with the wrong offset).
    One group, and depthwise problems on constant data, hide it.
    """

    name = "mutant-groups-read-group-0"
    BUG_CLASS = "group indexing: every group reads group 0's input channels"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        if spec.transposed or spec.groups == 1:
            return x, w, b
        cin_g = spec.in_channels // spec.groups
        return torch.cat([x[:, :cin_g]] * spec.groups, dim=1), w, b


class GroupOutputsInterleaved(Mutant):
    """Output channel ``j`` of group ``g`` is written at ``j * groups + g`` instead of ``g * out_per_group + j``.

    Bug class: grouped output channels stored group-minor (a channel shuffle
    nobody asked for): the GEMM for group g writes with stride ``groups``.
    Depthwise problems (one output channel per group) hide it.
    """

    name = "mutant-group-outputs-interleaved"
    BUG_CLASS = "group indexing: output channels interleaved across groups"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def output(self, spec: ConvSpec, y: torch.Tensor) -> torch.Tensor:
        if spec.transposed or spec.groups == 1:
            return y
        n, c, *rest = y.shape
        return y.reshape(n, spec.groups, c // spec.groups, *rest).transpose(1, 2).reshape(n, c, *rest)


class BiasDropped(Mutant):
    """The bias is never added.

    Bug class: an optional input not wired through, e.g. a graph rewrite that
    fuses or converts a Conv and forgets its optional third (bias) input.
    """

    name = "mutant-bias-dropped"
    BUG_CLASS = "bias missing"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        return x, w, None


class BiasFromFirstGroup(Mutant):
    """Output channel ``o`` gets ``bias[o % out_per_group]``: every group adds the bias values of group 0.

    robertknight/rten#1408 ("Fix bias values used by grouped ConvTranspose":
    col2im indexed the bias by the channel's position within its group),
    OAID/Tengine#5 and openvinotoolkit/openvino#17357 (bias offset per group
    wrong in grouped GEMM convolutions).
    """

    name = "mutant-bias-from-first-group"
    BUG_CLASS = "bias misplaced: indexed by the channel within its group"
    TARGET_CELLS = ("forward/1d/float32/none",)

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        if b is None or spec.groups == 1:
            return x, w, b
        per_group = spec.out_channels // spec.groups
        return x, w, torch.cat([b[:per_group]] * spec.groups)


#: The vector width of the channel blocks in :class:`InputChannelTailDropped` (8 float32 lanes: AVX2, or
#: oneDNN's nChw8c blocking).
SIMD_WIDTH = 8


class InputChannelTailDropped(Mutant):
    """Input channels past the last full block of 8 are not read when there are more than 8.

    Bug class: a vectorised channel loop without its remainder: modular/modular#6248
    (``ops.conv2d`` wrong for C_in >= 8, suspected filter packing at the 8-float
    AVX2 tile width), bhuman/CompiledNN#16 (channel counts that are not a multiple
    of the SSE width).  Fewer than 8 channels take the scalar path and are right.
    """

    name = "mutant-channel-tail-dropped"
    BUG_CLASS = f"SIMD channel tail dropped (input channels beyond a multiple of {SIMD_WIDTH})"
    TARGET_CELLS = ("forward/1d/float32/none", "forward/2d/float32/none")

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        full = SIMD_WIDTH * (spec.in_channels // SIMD_WIDTH)
        if spec.transposed or spec.in_channels <= SIMD_WIDTH or full == spec.in_channels:
            return x, w, b
        x = x.clone()
        x[:, full:] = 0
        return x, w, b


#: Batch items per tile in :class:`BatchTailReadsPreviousTile`.
BATCH_TILE = 2


class BatchTailReadsPreviousTile(Mutant):
    """The batch runs in tiles of 2; an odd last item (the remainder tile) reads the input of the item
    two places before it: the tile pointer is not advanced for the remainder.

    Bug class: tile-remainder handling (Tencent/ncnn#1014: convolution wrong when
    the output size is not a multiple of the tile of 4).  Batches of 1 and 2, and
    identical items, hide it.
    """

    name = "mutant-batch-tail-reads-previous-tile"
    BUG_CLASS = f"batch tile remainder reads another item (tile {BATCH_TILE})"
    TARGET_CELLS = ("forward/2d/float32/none", "forward/3d/float32/none")
    MIN_DETECTION = 0.5
    KNOWN_GAP = (
        "needs an odd batch of 3 or more with items that differ: the batch is 1 about half the time and is "
        "capped by what the MAC budget leaves after the channels and kernel (5 and 9 of 10 seeded draws catch "
        "it); drawing batches of 3 and 5 about as often as batch 1 would catch it"
    )

    def inputs(self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> Tensors:
        n = spec.batch
        if n <= BATCH_TILE or n % BATCH_TILE == 0:
            return x, w, b
        x = x.clone()
        x[n - 1] = x[n - 1 - BATCH_TILE]
        return x, w, b


__all__ = [
    "BatchTailReadsPreviousTile",
    "BiasDropped",
    "BiasFromFirstGroup",
    "GroupOutputsInterleaved",
    "GroupsReadGroupZero",
    "InputChannelTailDropped",
]
