"""Near-threshold precision bugs: an error of one to a few times the bound, and only on some problems.

These are the bugs a blind search meets rarely: most of their cases pass, and the
failing ones need a long reduction or an output near cancellation.  They are what
the targeted search of the dev and fuzz profiles (``conformance.session.aim``:
``hypothesis.target`` on each case's worst error/bound ratio) is for, and
``benchmarks/targeting_bench.py`` measures how many examples each takes to catch
with and without it.  Each declares PyTorch's own precision model, which is what
makes each a bug.
"""

from __future__ import annotations

import math

import torch

from conformance.spec import ConvSpec

from ._base import Mutant
from .precision import round_to_tf32

#: Input channels per block of a blocked kernel (32 float16 values fill one AVX-512 register): the partial sums
#: of one block are accumulated in float32, then added into the destination, which holds them in its own dtype.
CHANNEL_BLOCK = 32
#: The reduction length (products per output element) from which the kernel below switches to TF32.
TF32_FROM = 512


class HalfPartialsAcrossChannelBlocks(Mutant):
    """float16 convolution that accumulates each block of 32 input channels in float32, but carries the
    running sum from one block to the next in the float16 destination.

    Bug class: channel-blocked kernels that accumulate across input-channel blocks
    through ``dst`` (oneDNN's "sum" across ic blocks in its blocked-layout jit
    kernels, split-K GEMMs whose partial sums go through a workspace in the output
    type: NVIDIA/cutlass split-K "serial" reduction in ``ElementOutput``); each
    re-read of a rounded partial adds one float16 rounding of the running sum,
    where the declared model (float32 accumulation) allows one rounding of the
    result.  With at most 32 input channels per group it is exact to the model;
    with more, the error is about the bound (near cancellation, a few times it).
    """

    name = "mutant-half-partials-across-channel-blocks"
    BUG_CLASS = "float16 running sum carried between channel blocks in float16"
    TARGET_CELLS = ("forward/1d/float16/fastpath", "forward/2d/float16/fastpath")
    #: Near-threshold: it needs more than 32 input channels per group and cancelling data.
    MIN_DETECTION = 0.0
    KNOWN_GAP = ("needs > 32 input channels per group and an output near cancellation (or a long reduction), which "
                 "the 15 ci examples rarely draw; the dev and fuzz profiles' targeted search climbs to it")  # fmt: skip

    def run(self, spec: ConvSpec, p, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        per_group = spec.in_channels // spec.groups
        if spec.dtype != "float16" or spec.transposed or per_group <= CHANNEL_BLOCK:
            return super().run(spec, p, x, w, b)
        x32, w32 = x.to(torch.float32), w.to(torch.float32)
        dst = None
        for start in range(0, per_group, CHANNEL_BLOCK):
            stop = min(start + CHANNEL_BLOCK, per_group)
            channels = [g * per_group + c for g in range(spec.groups) for c in range(start, stop)]
            bias = b.to(torch.float32) if b is not None and start == 0 else None
            partial = p.run(x32[:, channels], w32[:, start:stop], bias)
            dst = (partial if dst is None else dst.to(torch.float32) + partial).to(torch.float16)
        return dst


class TF32OnLongReductions(Mutant):
    """float32 convolution that reads its inputs as TF32 once the reduction is long (512 products or more),
    while declaring IEEE float32.

    Bug class: a heuristic that picks a "fast math" kernel by problem size
    (cuDNN's algorithm choice with TF32 allowed, pytorch/pytorch#67384; oneDNN's
    ``fpmath_mode`` honoured only by its GEMM-based kernels), so small problems
    are exact to the declaration and large ones are not.  The bound grows with the
    reduction (``gamma_K``) while the TF32 error grows like its square root, so the
    error is about 2.4 times the bound at 512 products and sinks under it near a
    thousand: a narrow band a blind search seldom lands in.
    """

    name = "mutant-tf32-on-long-reductions"
    BUG_CLASS = "float32 read as TF32 on long reductions only, undeclared"
    TARGET_CELLS = ("forward/1d/float32/fastpath", "forward/2d/float32/fastpath")
    MIN_DETECTION = 0.0
    KNOWN_GAP = ("needs a reduction of 512 to about 1,000 products, which the ci budget of 15 examples rarely "
                 "draws; the dev and fuzz profiles' targeted search climbs to it")  # fmt: skip

    def run(self, spec: ConvSpec, p, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        reduction = spec.in_channels // spec.groups * math.prod(spec.kernel_size)
        if spec.dtype == "float32" and not spec.transposed and reduction >= TF32_FROM:
            x = torch.from_numpy(round_to_tf32(x.numpy())).to(torch.float32)
            w = torch.from_numpy(round_to_tf32(w.numpy())).to(torch.float32)
        return super().run(spec, p, x, w, b)


__all__ = ["CHANNEL_BLOCK", "TF32_FROM", "HalfPartialsAcrossChannelBlocks", "TF32OnLongReductions"]
