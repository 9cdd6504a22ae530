"""Fast-path regimes: the problem shapes on which real backends switch to another algorithm.

Backends choose their algorithm from the problem's shape: Winograd for 3x3
stride-1 dilation-1 ungrouped kernels, FFT for large kernels, a plain GEMM for
1x1, dedicated depthwise kernels, SIMD blocking by channel counts of 8, 16, 32
and 64, tuned paths for the layer shapes of well-known networks.  A bug that
lives in one of those paths shows only on its shapes, and drawing stride,
dilation, kernel and groups independently per axis makes them rare (every axis
stride 1, dilation 1 and groups 1 is 1 in 64 draws in 2-D).  So
:func:`conformance.valid_strategies.conv_specs` can first draw a *regime*
(``regimes=REGIMES``, or ``conv_cases(**FAST_PATHS)``).  The suite's ``fastpath``
cells (:mod:`conformance.cells`) draw the fast and layer regimes only; every other
cell keeps the free regime alone, because sharing a ci cell's 15 examples between
the regimes cost other bug classes their catch (measured in the README):

``free``
    every per-axis value drawn on its own, as before (kernels up to 5).
``fast``
    groups 1, stride 1 and dilation 1 on every axis, the same kernel on every
    axis from :data:`FAST_KERNELS` (1x1, 3x3, 5x5, 7x7) or the largest that the
    budget allows (FFT territory), and channel counts from 1 to 4 or just
    below, at or above a SIMD width (:data:`SIMD_EDGE_CHANNELS`).
``layer``
    one of :data:`LAYERS`, scaled-down layers of ResNet, MobileNet and U-Net:
    their kernel, stride and group structure, with channel counts halved until
    the layer fits the budget with room for a few output positions.

Each regime is drawn within the same MAC budget and by the same per-axis code
(:func:`conformance.geometry.draw_geometry`), so every problem stays valid by
construction.  The regime shrinks to ``free``, and the fast values are drawn as
one-value draws that record the value itself, so a failure that needs 3x3
stride 1 keeps it when the shrinker drops the regime.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from conformance.geometry import _axis_cost, _same_pads, form_cost, only

#: Regimes, simplest (the free draw) first, as weights: free 2/5, fast 2/5, layer 1/5.  A cell's ci
#: budget is 15 examples, so a bug living only in a fast path (caught by, say, 3 of 4 of its draws)
#: needs about a fifth of them in its one kernel shape; the free draw keeps the rest for the bugs that
#: need unequal axes, dilation or groups (see the README for the measured trade-off).
REGIMES: tuple[str, ...] = ("free", "fast", "free", "fast", "layer")
#: Kernels of the fast regime, the same on every axis; 3 twice (Winograd's); 1x1 (GEMM) is the
#: free regime's pointwise draw and the layers'.
FAST_KERNELS: tuple[int, ...] = (3, 5, 3, 7)
#: The fast regime's large kernel is at least this where the budget allows: FFT convolution wins from here.
LARGE_KERNEL = 9
#: Channel counts just below, at and above the SIMD widths backends block channels by (8, 16, 32, 64).
SIMD_EDGE_CHANNELS: tuple[int, ...] = (7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65)
#: Small channel counts beside the SIMD edges, 1 first: a failure shrinks to one channel.
SMALL_CHANNELS: tuple[int, ...] = (1, 2, 3, 4)
# A layer keeps room for this many output positions: one position cannot show a stride.
_LAYER_POSITIONS = 4
# The fast regime's channels leave room for this many output positions, where the budget allows: the
# fast algorithms work on tiles of the output, and one output position has no quiet region for a
# normwise error to show in (see conformance.data._envelope).
FAST_POSITIONS = 16


@dataclass(frozen=True)
class Layer:
    """A real network layer's shape, the same on every axis: kernel, stride, dilation, group
    structure (``kind`` as in :data:`conformance.valid_strategies.GROUP_KINDS`; ``groups`` for
    "other"), total channel counts, direction."""

    name: str
    kernel: int
    stride: int
    kind: str
    in_channels: int
    out_channels: int
    groups: int = 1
    dilation: int = 1
    transposed: bool = False


#: Scaled-down real layers (the full channel counts; :func:`layer_channels` scales them to the budget).
LAYERS: tuple[Layer, ...] = (
    Layer("resnet 3x3", 3, 1, "one", 64, 64),
    Layer("resnet bottleneck 1x1 reduce", 1, 1, "one", 256, 64),
    Layer("resnet 1x1 stride-2 projection", 1, 2, "one", 64, 128),
    Layer("resnet 7x7 stride-2 stem", 7, 2, "one", 3, 64),
    Layer("resnext grouped 3x3 (32 groups)", 3, 1, "other", 128, 128, groups=32),
    Layer("mobilenet depthwise 3x3", 3, 1, "depthwise", 32, 32),
    Layer("mobilenet depthwise 3x3 stride 2", 3, 2, "depthwise", 64, 64),
    Layer("mobilenet pointwise 1x1", 1, 1, "one", 32, 64),
    Layer("deeplab atrous 3x3 dilation 2", 3, 1, "one", 256, 256, dilation=2),
    Layer("u-net 2x2 stride-2 up-convolution", 2, 2, "one", 128, 64, transposed=True),
    Layer("u-net 3x3 (transposed)", 3, 1, "one", 64, 32, transposed=True),
)


def kernel_cost(k: int, ndim: int, form: str, mode: str, transposed: bool, limits: dict[str, int]) -> int:
    """The least MACs per channel product of a problem with kernel ``k`` (stride 1, dilation 1) on every
    axis, counting the budget a padded form sets aside (see :func:`conformance.geometry.form_cost`)."""
    pads = _same_pads(k, 1) if form == "same" else (0, 0)
    reserve = form_cost(form, mode, transposed, limits) or 1
    return _axis_cost(k, 1, 1, pads, mode, transposed) ** ndim * reserve


def fast_kernels(ndim: int, form: str, mode: str, transposed: bool, limits: dict[str, int]) -> tuple[int, ...]:
    """The fast regime's kernel choices that fit ``limits`` with one channel, and the large one."""

    def fits(k: int) -> bool:
        return k <= limits["max_kernel"] and kernel_cost(k, ndim, form, mode, transposed, limits) <= limits["max_macs"]

    chosen = tuple(k for k in FAST_KERNELS if fits(k)) or (1,)
    large = max((k for k in range(LARGE_KERNEL, limits["max_kernel"] + 1) if fits(k)), default=None)
    return chosen + ((large,) if large is not None else ())


def fast_channels(draw: st.DrawFn, budget: int, simd_channels: tuple[int, ...]) -> tuple[int, int]:
    """``(in, out)`` channels with ``in * out <= budget``: small ones or SIMD edges.

    ``budget`` is the MACs per output position the kernel leaves; the channels take at most a
    :data:`FAST_POSITIONS` share of it, or 1x1 channels when even that does not fit.
    """
    budget = max(budget // FAST_POSITIONS, 1)

    def choices(room: int) -> tuple[int, ...]:
        return tuple(c for c in (*SMALL_CHANNELS, *simd_channels) if c <= room) or (1,)

    cin = draw(st.sampled_from(choices(budget)))
    return cin, draw(st.sampled_from(choices(budget // cin)))


def layer_channels(layer: Layer, per_position: int, budget: int, max_groups: int) -> tuple[int, int, int]:
    """``(groups, in/groups, out/groups)`` of ``layer``: at most ``max_groups`` groups, and channel
    counts halved until the layer costs at most ``budget`` with room for a few output positions
    (``per_position``: MACs per channel product per position).  The group structure stays."""
    if layer.kind == "depthwise":
        groups, cin_g, cout_g = min(layer.in_channels, max_groups), 1, 1
    else:
        groups = 1 if layer.kind == "one" else min(layer.groups, max_groups)
        cin_g, cout_g = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    while (cin_g > 1 or cout_g > 1) and groups * cin_g * cout_g * per_position * _LAYER_POSITIONS > budget:
        cin_g, cout_g = max(cin_g // 2, 1), max(cout_g // 2, 1)
    floor = 1 if layer.kind == "one" else 2
    while groups > floor and groups * cin_g * cout_g * per_position * _LAYER_POSITIONS > budget:
        groups //= 2
    return groups, cin_g, cout_g


def draw_layer_channels(draw: st.DrawFn, channels: tuple[int, int, int]) -> tuple[int, int, int]:
    """The layer's channels as one-value draws: the free regime's channel draw makes three (see only)."""
    return draw(only(channels[0])), draw(only(channels[1])), draw(only(channels[2]))


__all__ = [
    "FAST_KERNELS",
    "FAST_POSITIONS",
    "LARGE_KERNEL",
    "LAYERS",
    "REGIMES",
    "SIMD_EDGE_CHANNELS",
    "SMALL_CHANNELS",
    "Layer",
    "draw_layer_channels",
    "fast_channels",
    "fast_kernels",
    "kernel_cost",
    "layer_channels",
]
