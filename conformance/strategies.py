"""Hypothesis strategies for convolution problems, valid or broken on purpose.

Every strategy here builds its examples valid by construction: there is no
``.filter`` and no ``assume`` anywhere, so no example is ever thrown away and
the MAC budget holds for every draw.  Each choice is drawn simplest first, so a
failing example shrinks towards the simplest problem that still fails: one
spatial axis, a forward convolution, no padding, zeros padding mode, one group,
one channel, kernel 1, stride 1, dilation 1, batch 1, the smallest valid input,
the first dtype, no bias.  Every per-axis value is drawn on its own, so a
square problem appears only when it was drawn, never by default.

Arguments are checked when a strategy is built, with ``name=value`` messages,
as Hypothesis's own ``extra.numpy`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance.data import DISTRIBUTIONS, MAX_SCALE, DataRecipe
from conformance.spec import DTYPES, LAYOUTS, PADDING_FORMS, PADDING_MODES, RULES, ConvSpec

#: A transposed convolution takes explicit padding only.
TRANSPOSED_PADDING_FORMS: tuple[str, ...] = ("none", "symmetric", "asymmetric")
#: How channels are split into groups, simplest first.
GROUP_KINDS: tuple[str, ...] = ("one", "depthwise", "depthwise_multiplier", "other")
#: Sparsities a recipe is drawn from, simplest (dense) first.
SPARSITIES: tuple[float, ...] = (0.0, 0.5, 0.9)

# Input sizes are drawn half the time from the few values just above the
# smallest valid one: edges (the kernel covering the whole padded input, one
# spare element past the last window) are where indexing bugs live, and a
# uniform draw over a budget-sized range would almost never land on them.
_NEAR_MINIMUM = 8
# Depthwise-multiplier channel multipliers: 2 and 3 cover even and odd.
_MAX_MULTIPLIER = 3


# ------------------------------------------------------------- arguments


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


def _check_int(name: str, value: Any, low: int) -> None:
    _check(
        isinstance(value, int) and not isinstance(value, bool) and value >= low,
        f"{name}={value!r}, but should be an int >= {low}",
    )


def _check_choices(name: str, value: Any, allowed: Sequence[Any]) -> tuple[Any, ...]:
    _check(
        isinstance(value, (tuple, list)) and len(value) > 0,
        f"{name}={value!r}, but should be a non-empty tuple drawn from {tuple(allowed)}",
    )
    for item in value:
        _check(item in allowed, f"{name}={value!r}, but {item!r} is not one of {tuple(allowed)}")
    return tuple(value)


def _check_optional_bool(name: str, value: Any) -> None:
    _check(value is None or isinstance(value, bool), f"{name}={value!r}, but should be None, True or False")


# ------------------------------------------------------------- geometry


def _same_pads(k: int, d: int) -> tuple[int, int]:
    total = d * (k - 1)
    return total // 2, total - total // 2


def _min_input(k: int, d: int, pads: tuple[int, int], mode: str, transposed: bool) -> int:
    """Smallest valid input size along one axis."""
    if transposed:
        return 1
    before, after = pads
    low = max(1, d * (k - 1) + 1 - before - after)
    if mode == "reflect":
        low = max(low, before + 1, after + 1)
    elif mode == "circular":
        low = max(low, before, after)
    return low


def _out_size(i: int, k: int, s: int, d: int, pads: tuple[int, int], op: int, transposed: bool) -> int:
    before, after = pads
    if transposed:
        return (i - 1) * s - before - after + d * (k - 1) + 1 + op
    return (i + before + after - d * (k - 1) - 1) // s + 1


def _axis_cost(k: int, s: int, d: int, pads: tuple[int, int], mode: str, transposed: bool) -> int:
    """The axis's factor in the smallest problem's MACs: kernel taps times positions.

    Forward MACs count output positions; transposed MACs count input positions,
    whose smallest valid value is 1.
    """
    if transposed:
        return k
    i = _min_input(k, d, pads, mode, transposed)
    return k * _out_size(i, k, s, d, pads, 0, transposed)


def _largest(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The largest v in [low, high] with ok(v), for ok true at low and monotone."""
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _iroot(n: int, r: int) -> int:
    """floor(n ** (1/r)) without float surprises."""
    root = round(n ** (1.0 / r))
    while root**r > n:
        root -= 1
    while (root + 1) ** r <= n:
        root += 1
    return max(root, 1)


def _only(value: int) -> st.SearchStrategy[int]:
    """A draw with one possible value.

    Where a branch has nothing to choose it draws one of these, so that the
    branches of a choice make the same number of draws.  Hypothesis's mutator
    copies runs of choices from one place in an example to another and
    replays the result with no more choices than it had; a branch that needed
    more would end as an overrun, which observability reports as "gave_up".
    (The number of axes still sets the number of draws; measured over
    thousands of examples that costs no overruns, so it is left alone.)
    """
    return st.integers(value, value)


def _mostly_first(first: int, high: int, also: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    """``first`` about half the time, else uniform over ``also`` and ``[first, high]``; shrinks to ``first``.

    For the values real problems mostly have (stride 1, dilation 1, batch 1):
    a uniform draw would make a dense, unit-stride 3-D problem rare.  One
    sampled_from is one choice, whichever value comes out (see _only).
    """
    rest = (*also, *range(first, high + 1))
    return st.sampled_from((first,) * len(rest) + rest)


# ------------------------------------------------------------- conv_specs


def conv_specs(
    *,
    dims: Sequence[int] = (1, 2, 3),
    dtypes: Sequence[str] = DTYPES,
    transposed: bool | None = None,
    padding_forms: Sequence[str] | None = None,
    padding_modes: Sequence[str] | None = None,
    group_kinds: Sequence[str] | None = None,
    layouts: Sequence[str] | None = None,
    devices: Sequence[str] = ("cpu",),
    max_macs: int = 100_000,
    max_batch: int = 6,
    max_channels_per_group: int = 9,
    max_groups: int = 4,
    max_kernel: int = 5,
    max_stride: int = 4,
    max_dilation: int = 3,
    max_pad: int = 3,
    bias: bool | None = None,
) -> st.SearchStrategy[ConvSpec]:
    """Valid :class:`ConvSpec` problems whose ``macs`` never exceed ``max_macs``.

    ``transposed``, ``bias``: None draws both.  ``padding_forms`` (default all
    that apply) are "none" (zero explicit padding), "symmetric" (one pad per
    axis), "asymmetric" (before and after drawn independently), "same" (which
    forces stride 1) and "valid"; a transposed convolution takes only the
    first three, pads with zeros only, and draws ``output_padding`` per axis
    in ``[0, max(stride, dilation) - 1]``.  ``group_kinds`` (default all that
    fit the limits): "one" (groups=1), "depthwise" (groups = in = out),
    "depthwise_multiplier" (groups = in, out = 2 or 3 times in) and "other"
    (2..max_groups groups, channels per group drawn independently for input
    and output).  Stride, dilation (per axis) and batch are 1 about half the
    time, as in most real problems, and otherwise uniform up to their limits;
    the batch range starts at 0, so empty batches occur too.

    The budget holds by construction: channels, then kernel, stride, dilation
    and padding per axis are capped by what the smallest problem with them
    would cost; then the batch and each input size are drawn from what is left.
    Each input size is drawn upwards from its smallest valid value (the dilated
    kernel covering the whole padded input, or the reflect/circular limit).

    Shrinks towards: the first of ``dims``, forward, the first padding form and
    mode, groups 1 with one channel, kernel 1, stride 1, dilation 1, no
    padding, batch 1, the smallest valid input, the first dtype, layout and
    device, and no bias.
    """
    dims = _check_choices("dims", dims, (1, 2, 3))
    dtypes = _check_choices("dtypes", dtypes, DTYPES)
    _check_optional_bool("transposed", transposed)
    _check_optional_bool("bias", bias)
    forms = _check_choices("padding_forms", PADDING_FORMS if padding_forms is None else padding_forms, PADDING_FORMS)
    modes = _check_choices(
        "padding_modes", PADDING_MODES if padding_modes is None else padding_modes, PADDING_MODES
    )
    layouts = _check_choices("layouts", LAYOUTS if layouts is None else layouts, LAYOUTS)
    _check(
        isinstance(devices, (tuple, list)) and len(devices) > 0 and all(isinstance(d, str) and d for d in devices),
        f"devices={devices!r}, but should be a non-empty tuple of device names",
    )
    devices = tuple(devices)
    for name, value, low in (
        ("max_macs", max_macs, 1),
        ("max_batch", max_batch, 0),
        ("max_channels_per_group", max_channels_per_group, 1),
        ("max_groups", max_groups, 1),
        ("max_kernel", max_kernel, 1),
        ("max_stride", max_stride, 1),
        ("max_dilation", max_dilation, 1),
        ("max_pad", max_pad, 0),
    ):
        _check_int(name, value, low)

    forward_forms = forms
    transposed_forms = tuple(f for f in forms if f in TRANSPOSED_PADDING_FORMS)
    can_forward = transposed is not True
    can_transpose = transposed is not False and bool(transposed_forms) and "zeros" in modes
    if transposed is True:
        _check(
            bool(transposed_forms),
            f"padding_forms={forms!r}, but transposed=True needs one of {TRANSPOSED_PADDING_FORMS}",
        )
        _check("zeros" in modes, f"padding_modes={modes!r}, but transposed=True pads with 'zeros' only")

    fits = {
        "one": True,
        "depthwise": max_groups >= 2 and max_macs >= 2,
        "depthwise_multiplier": max_groups >= 2 and max_channels_per_group >= 2 and max_macs >= 4,
        "other": max_groups >= 2 and max_macs >= 2,
    }
    if group_kinds is None:
        kinds = tuple(k for k in GROUP_KINDS if fits[k])
    else:
        kinds = _check_choices("group_kinds", group_kinds, GROUP_KINDS)
        for kind in kinds:
            _check(
                fits[kind],
                f"group_kinds={kinds!r}, but {kind!r} does not fit max_groups={max_groups}, "
                f"max_channels_per_group={max_channels_per_group}, max_macs={max_macs}",
            )

    limits = {
        "max_macs": max_macs,
        "max_batch": max_batch,
        "max_channels_per_group": max_channels_per_group,
        "max_groups": max_groups,
        "max_kernel": max_kernel,
        "max_stride": max_stride,
        "max_dilation": max_dilation,
        "max_pad": max_pad,
    }

    @st.composite
    def specs(draw: st.DrawFn) -> ConvSpec:
        ndim = draw(st.sampled_from(dims))
        is_transposed = draw(st.booleans()) if can_forward and can_transpose else can_transpose
        form = draw(st.sampled_from(transposed_forms if is_transposed else forward_forms))
        # A transposed problem draws a placeholder instead of a mode: see _only.
        mode = PADDING_MODES[draw(_only(0))] if is_transposed else draw(st.sampled_from(modes))
        groups, cin_g, cout_g = draw(_channels(kinds, limits))
        geometry = _draw_geometry(draw, ndim, is_transposed, form, mode, groups * cin_g * cout_g, limits)
        has_bias = draw(st.booleans()) if bias is None else bias
        return ConvSpec(
            in_channels=groups * cin_g,
            out_channels=groups * cout_g,
            groups=groups,
            transposed=is_transposed,
            padding_mode=mode,
            bias=has_bias,
            dtype=draw(st.sampled_from(dtypes)),
            layout=draw(st.sampled_from(layouts)),
            device=draw(st.sampled_from(devices)),
            **geometry,
        )

    return specs()


def _channels(kinds: tuple[str, ...], limits: dict[str, int]) -> st.SearchStrategy[tuple[int, int, int]]:
    """``(groups, in_channels/groups, out_channels/groups)`` with ``groups*cin_g*cout_g <= max_macs``.

    That product is the smallest problem's MACs for forward and transposed
    alike, so the kernel and sizes drawn next always have room.
    """
    budget, per_group, max_groups = limits["max_macs"], limits["max_channels_per_group"], limits["max_groups"]

    @st.composite
    def draw_channels(draw: st.DrawFn) -> tuple[int, int, int]:
        kind = draw(st.sampled_from(kinds))
        # Three draws for every kind (some with one possible value): see _only.
        if kind == "one":
            groups = draw(_only(1))
            cin_g = draw(st.integers(1, min(per_group, budget)))
            return groups, cin_g, draw(st.integers(1, min(per_group, budget // cin_g)))
        if kind == "depthwise":
            return draw(st.integers(2, min(max_groups, budget))), draw(_only(1)), draw(_only(1))
        if kind == "depthwise_multiplier":
            groups = draw(st.integers(2, min(max_groups, budget // 2)))
            cin_g = draw(_only(1))
            return groups, cin_g, draw(st.integers(2, min(_MAX_MULTIPLIER, per_group, budget // groups)))
        groups = draw(st.integers(2, min(max_groups, budget)))
        cin_g = draw(st.integers(1, min(per_group, budget // groups)))
        return groups, cin_g, draw(st.integers(1, min(per_group, budget // (groups * cin_g))))

    return draw_channels()


def _draw_axis(
    draw: st.DrawFn, room: int, transposed: bool, form: str, mode: str, limits: dict[str, int], pointwise: bool
) -> dict[str, Any]:
    """Kernel, stride, dilation, padding and output_padding of one axis.

    Each is capped so that the axis's cost in the smallest problem stays within
    ``room``, which keeps every later draw non-empty.
    """

    def cost(k: int, s: int, d: int, pads: tuple[int, int]) -> int:
        return _axis_cost(k, s, d, pads, mode, transposed)

    def cheapest(k: int, d: int) -> tuple[int, int]:
        return _same_pads(k, d) if form == "same" else (0, 0)

    top_k = _largest(1, limits["max_kernel"], lambda k: cost(k, 1, 1, cheapest(k, 1)) <= room)
    k = draw(_only(1) if pointwise else st.integers(1, top_k))
    # 'same' keeps the size only at stride 1, so the form is drawn first.
    s = draw(_mostly_first(1, 1 if form == "same" else limits["max_stride"]))
    d = draw(_mostly_first(1, _largest(1, limits["max_dilation"], lambda d: cost(k, s, d, cheapest(k, d)) <= room)))
    # A transposed convolution crops at most the kernel's extent, so that even
    # a single input position leaves an output of size >= 1.
    crop = d * (k - 1) if transposed else limits["max_pad"]
    top = min(limits["max_pad"], crop)
    if form == "symmetric":
        top = min(top, crop // 2) if transposed else top
        p = draw(st.integers(0, _largest(0, top, lambda p: cost(k, s, d, (p, p)) <= room)))
        pads = (p, draw(_only(p)))
    elif form == "asymmetric":
        # One-sided pads are their own case: code that slices x[-(before + after):-after] breaks at after == 0.
        side = draw(st.sampled_from(("both", "before only", "after only")))
        top_before = 0 if side == "after only" else top
        before = draw(st.integers(0, _largest(0, top_before, lambda p: cost(k, s, d, (p, 0)) <= room)))
        top_after = 0 if side == "before only" else min(top, crop - before) if transposed else top
        after = draw(st.integers(0, _largest(0, top_after, lambda p: cost(k, s, d, (before, p)) <= room)))
        pads = (before, after)
    else:
        pads = tuple(draw(_only(p)) for p in cheapest(k, d))
    # output_padding half the time where it is allowed: its rows are where transposed kernels go wrong.
    top_op = max(s, d) - 1 if transposed else 0
    op = draw(st.integers(1, top_op)) if top_op and draw(st.booleans()) else draw(_only(0))
    low = _min_input(k, d, pads, mode, transposed)
    smallest = low if transposed else _out_size(low, k, s, d, pads, 0, False)
    return {"k": k, "s": s, "d": d, "pads": pads, "op": op, "low": low, "smallest": smallest}


def _draw_geometry(
    draw: st.DrawFn, ndim: int, transposed: bool, form: str, mode: str, channels: int, limits: dict[str, int]
) -> dict[str, Any]:
    """Every axis's parameters, then the batch, then each input size, within the MAC budget.

    ``room`` is what the budget leaves for the product of the axes' costs in
    the smallest problem (kernel taps times the fewest output positions).
    """
    budget = limits["max_macs"]
    room = budget // channels
    # Unpadded pointwise (1x1) kernels a third of the time: they are common in real networks, and
    # backends give them a fast path of their own (a plain GEMM) that must still honour the stride.
    # (Padded forms keep every kernel size: a 1x1 kernel makes 'same' padding vanish.)
    pointwise = draw(st.sampled_from((False, False, True))) if form in ("none", "valid") else bool(draw(_only(0)))
    axes = []
    for _ in range(ndim):
        axis = _draw_axis(draw, room, transposed, form, mode, limits, pointwise)
        room //= axis["k"] * axis["smallest"]
        axes.append(axis)

    base = channels * math.prod(a["k"] * a["smallest"] for a in axes)
    top_batch = min(limits["max_batch"], budget // base)
    # Empty and large batches both occur, and a failure shrinks to batch 1.
    batch = draw(_mostly_first(1, top_batch, also=(0,))) if top_batch else 0

    # What is left for the product of output sizes (input sizes when transposed).
    room = budget // (channels * math.prod(a["k"] for a in axes) * max(batch, 1))
    sizes = []
    for index, a in enumerate(axes):
        later = math.prod(b["smallest"] for b in axes[index + 1 :])
        available = room // later
        # An even share of what is left, so the first axis cannot starve the others.
        cap = max(a["smallest"], _iroot(available, ndim - index))
        if transposed:
            high = cap
        else:
            extent = a["d"] * (a["k"] - 1) + 1
            high = a["s"] * cap - 1 + extent - sum(a["pads"])
        span = high - a["low"]
        # Not st.one_of: it merges equal branches, and a varying number of
        # choices costs overruns (see _only).
        wide = draw(st.booleans())
        extra = draw(st.integers(0, span if wide else min(_NEAR_MINIMUM, span)))
        size = a["low"] + extra
        sizes.append(size)
        used = size if transposed else _out_size(size, a["k"], a["s"], a["d"], a["pads"], 0, False)
        room //= used

    if form == "same":
        padding: Any = "same"
    elif form == "valid":
        padding = "valid"
    else:
        padding = tuple(a["pads"] for a in axes)
    return {
        "batch": batch,
        "input_size": tuple(sizes),
        "kernel_size": tuple(a["k"] for a in axes),
        "stride": tuple(a["s"] for a in axes),
        "dilation": tuple(a["d"] for a in axes),
        "padding": padding,
        "output_padding": tuple(a["op"] for a in axes),
    }


# ------------------------------------------------------------- data and cases


def data_recipes(
    *,
    distributions: Sequence[str] = DISTRIBUTIONS,
    sparsities: Sequence[float] = SPARSITIES,
    min_scale: int = 0,
    max_scale: int = 5,
    max_seed: int = 2**32 - 1,
) -> st.SearchStrategy[DataRecipe]:
    """:class:`DataRecipe` values; shrinks towards the first distribution
    (``"ones"``), the first sparsity (dense), ``min_scale`` and seed 0.

    ``max_scale`` 5 keeps real data within ``[2**-5, 2**6]`` before the
    dtype-aware caps of :mod:`conformance.data` apply.
    """
    distributions = _check_choices("distributions", distributions, DISTRIBUTIONS)
    _check(
        isinstance(sparsities, (tuple, list))
        and len(sparsities) > 0
        and all(isinstance(v, (int, float)) and 0.0 <= v < 1.0 for v in sparsities),
        f"sparsities={sparsities!r}, but should be a non-empty tuple of fractions in [0, 1)",
    )
    _check_int("min_scale", min_scale, 0)
    _check_int("max_scale", max_scale, min_scale)
    _check(max_scale <= MAX_SCALE, f"max_scale={max_scale!r}, but should be <= {MAX_SCALE}")
    _check_int("max_seed", max_seed, 0)
    return st.builds(
        DataRecipe,
        distribution=st.sampled_from(distributions),
        sparsity=st.sampled_from(tuple(float(v) for v in sparsities)),
        seed=st.integers(0, max_seed),
        scale=st.integers(min_scale, max_scale),
    )


def conv_cases(
    *,
    distributions: Sequence[str] = DISTRIBUTIONS,
    sparsities: Sequence[float] = SPARSITIES,
    min_scale: int = 0,
    max_scale: int = 5,
    **spec_kwargs: Any,
) -> st.SearchStrategy[tuple[ConvSpec, DataRecipe]]:
    """``(spec, recipe)`` pairs: :func:`conv_specs` (given ``spec_kwargs``) and :func:`data_recipes`."""
    recipes = data_recipes(
        distributions=distributions, sparsities=sparsities, min_scale=min_scale, max_scale=max_scale
    )
    return st.tuples(conv_specs(**spec_kwargs), recipes)


# ------------------------------------------------------------- invalid problems

_FORWARD = {"transposed": False}
_TRANSPOSED = {"transposed": True}
_EXPLICIT = ("none", "symmetric", "asymmetric", "valid")

Breaker = Callable[[st.DrawFn, ConvSpec], ConvSpec]


def _axis(draw: st.DrawFn, spec: ConvSpec) -> int:
    return draw(st.integers(0, spec.dims - 1))


def _set(values: tuple, axis: int, value: Any) -> tuple:
    return (*values[:axis], value, *values[axis + 1 :])


def _break_rank(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    how = draw(st.sampled_from(("extra_entry", "missing_entry", "four_axes")))
    if how == "four_axes":
        extra = 4 - spec.dims
        padding = spec.padding if isinstance(spec.padding, str) else (*spec.padding, *((0, 0),) * extra)
        return spec.replace(
            input_size=(*spec.input_size, *(1,) * extra),
            kernel_size=(*spec.kernel_size, *(1,) * extra),
            stride=(*spec.stride, *(1,) * extra),
            dilation=(*spec.dilation, *(1,) * extra),
            output_padding=(*spec.output_padding, *(0,) * extra),
            padding=padding,
        )
    name = draw(st.sampled_from(("kernel_size", "stride", "dilation", "output_padding")))
    values = getattr(spec, name)
    fill = 0 if name == "output_padding" else 1
    return spec.replace(**{name: (*values, fill) if how == "extra_entry" else values[:-1]})


def _break_divisible(which: str) -> Breaker:
    other = "out_channels" if which == "in_channels" else "in_channels"

    def breaker(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
        groups = spec.groups if spec.groups >= 2 else draw(st.integers(2, 4))
        kept = getattr(spec, other)
        kept = kept if kept % groups == 0 else kept * groups
        broken = getattr(spec, which)
        broken = (broken if broken % groups == 0 else broken * groups) + draw(st.integers(1, groups - 1))
        return spec.replace(groups=groups, **{which: broken, other: kept})

    return breaker


def _break_per_axis(name: str, values: Sequence[int]) -> Breaker:
    def breaker(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
        return spec.replace(**{name: _set(getattr(spec, name), _axis(draw, spec), draw(st.sampled_from(values)))})

    return breaker


def _break_padding_sign(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # Move n from one side to the other: the padded size, and so the kernel
    # fit and the output size, stay as they were.
    axis, side, n = _axis(draw, spec), draw(st.integers(0, 1)), draw(st.integers(1, 3))
    pair = (-n, sum(spec.pads[axis]) + n) if side == 0 else (sum(spec.pads[axis]) + n, -n)
    return spec.replace(padding=_set(spec.pads, axis, pair))


def _break_padding_size(mode: str) -> Breaker:
    # reflect needs pad < input; circular pad <= input: go just past the limit.
    def breaker(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
        axis, side = _axis(draw, spec), draw(st.integers(0, 1))
        past = spec.input_size[axis] + (0 if mode == "reflect" else 1) + draw(st.integers(0, 1))
        return spec.replace(padding=_set(spec.pads, axis, _set(spec.pads[axis], side, past)))

    return breaker


def _break_kernel_fit(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # Grow the kernel or its dilation, never shrink the input: a smaller input
    # could break the reflect or circular limits as well.
    axis = _axis(draw, spec)
    k, d = spec.kernel_size[axis], spec.dilation[axis]
    padded = spec.input_size[axis] + sum(spec.pads[axis])
    if k >= 2 and draw(st.booleans()):
        return spec.replace(dilation=_set(spec.dilation, axis, padded // (k - 1) + 1))
    return spec.replace(kernel_size=_set(spec.kernel_size, axis, (padded - 1) // d + 2 + draw(st.integers(0, 1))))


def _break_same_stride(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    return spec.replace(padding="same", stride=_set(spec.stride, _axis(draw, spec), draw(st.integers(2, 4))))


def _break_output_padding_forward(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    axis = _axis(draw, spec)
    if max(spec.stride[axis], spec.dilation[axis]) == 1:
        # Stride 2 first, so that output_padding 1 is small enough and only
        # "forward has no output_padding" is broken; 'same' becomes the
        # explicit pads it stands for, since it allows no stride 2.
        spec = spec.replace(stride=_set(spec.stride, axis, 2), padding=spec.pads)
    top = max(spec.stride[axis], spec.dilation[axis]) - 1
    return spec.replace(output_padding=_set(spec.output_padding, axis, draw(st.integers(1, top))))


def _break_output_padding_sign(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # A longer input makes up for the output position that a negative
    # output_padding removes, so the output stays non-empty.
    axis = _axis(draw, spec)
    value = draw(st.sampled_from((-1, -2)))
    lost = spec.output_padding[axis] - value
    longer = spec.input_size[axis] + -(-lost // spec.stride[axis])
    return spec.replace(
        output_padding=_set(spec.output_padding, axis, value), input_size=_set(spec.input_size, axis, longer)
    )


def _break_output_padding_size(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    axis = _axis(draw, spec)
    value = max(spec.stride[axis], spec.dilation[axis]) + draw(st.integers(0, 1))
    return spec.replace(output_padding=_set(spec.output_padding, axis, value))


def _break_stride(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    axis = _axis(draw, spec)
    if not spec.transposed:
        # A forward output size divides by the stride: no value <= 0 can keep
        # it meaningful, so output_size_positive goes with this rule.
        return spec.replace(stride=_set(spec.stride, axis, draw(st.sampled_from((0, -1)))))
    # Stride 0 keeps a transposed output >= 1; output_padding must then stay
    # below the dilation alone.
    op = min(spec.output_padding[axis], spec.dilation[axis] - 1)
    return spec.replace(stride=_set(spec.stride, axis, 0), output_padding=_set(spec.output_padding, axis, op))


def _break_dilation(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    axis = _axis(draw, spec)
    if not spec.transposed:
        # The extent d*(k-1)+1 drops to <= 1: the kernel still fits.
        return spec.replace(dilation=_set(spec.dilation, axis, draw(st.sampled_from((0, -1)))))
    # Dilation 0 collapses the transposed extent to 1: drop that axis's crop
    # so the output stays >= 1, and keep output_padding below the stride.
    op = min(spec.output_padding[axis], spec.stride[axis] - 1)
    return spec.replace(
        dilation=_set(spec.dilation, axis, 0),
        padding=_set(spec.pads, axis, (0, 0)),
        output_padding=_set(spec.output_padding, axis, op),
    )


def _break_transposed_padding_string(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # 'same' only where the stride is 1 everywhere, or same_requires_stride_1 breaks too.
    strings = ("valid", "same") if all(s == 1 for s in spec.stride) else ("valid",)
    return spec.replace(padding=draw(st.sampled_from(strings)))


def _break_transposed_padding_mode(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # reflect and circular only where their size limits hold, so they are not broken too.
    modes = ["replicate"]
    if all(max(p) < i for p, i in zip(spec.pads, spec.input_size)):
        modes.insert(0, "reflect")
    if all(max(p) <= i for p, i in zip(spec.pads, spec.input_size)):
        modes.append("circular")
    return spec.replace(padding_mode=draw(st.sampled_from(modes)))


def _break_output_size(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # Crop the whole uncropped transposed output (and maybe one more).
    axis = _axis(draw, spec)
    i, k, s, d = spec.input_size[axis], spec.kernel_size[axis], spec.stride[axis], spec.dilation[axis]
    full = (i - 1) * s + d * (k - 1) + 1 + spec.output_padding[axis]
    after = spec.pads[axis][1]
    return spec.replace(padding=_set(spec.pads, axis, (full - after + draw(st.integers(0, 1)), after)))


def _replace_with(name: str, values: Sequence[Any]) -> Breaker:
    def breaker(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
        return spec.replace(**{name: draw(st.sampled_from(values))})

    return breaker


def _break_groups(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    # 0, or minus the groups: both still divide the channel counts, so only
    # groups_positive is broken.
    return spec.replace(groups=draw(st.sampled_from((0, -spec.groups))))


def _break_channels(draw: st.DrawFn, spec: ConvSpec) -> ConvSpec:
    which = draw(st.sampled_from(("in_channels", "out_channels")))
    return spec.replace(**{which: draw(st.sampled_from((0, -spec.groups)))})


#: rule -> (what the valid base problem must be, how to break it).  Each
#: breaker changes the base so that it violates its rule and, as far as the
#: rule allows, no other.  Five rules cannot break alone: an input of size 0
#: cannot hold the kernel, a kernel that does not fit leaves no output, an
#: unknown padding string cannot be resolved, and groups 0 or a forward
#: stride <= 0 leave a division undefined.
_BREAKERS: dict[str, tuple[dict[str, Any], Breaker]] = {
    "rank": ({}, _break_rank),
    "batch_nonnegative": ({}, _replace_with("batch", (-1, -2))),
    "channels_positive": ({}, _break_channels),
    "groups_positive": ({}, _break_groups),
    "in_channels_divisible_by_groups": ({}, _break_divisible("in_channels")),
    "out_channels_divisible_by_groups": ({}, _break_divisible("out_channels")),
    "input_size_positive": ({}, _break_per_axis("input_size", (0, -1))),
    # Forward only: a transposed output size with kernel <= 0 can be <= 0 too.
    "kernel_size_positive": (_FORWARD, _break_per_axis("kernel_size", (0, -1))),
    "stride_positive": ({}, _break_stride),
    # 0 first: the seed article's mistake of calling dilation 0 "ordinary".
    "dilation_positive": ({}, _break_dilation),
    "output_padding_nonnegative": (_TRANSPOSED, _break_output_padding_sign),
    "padding_string_known": (
        _FORWARD,
        _replace_with("padding", ("SAME", "Valid", "full", "causal", "")),
    ),
    # Modes without size limits: the padding moved to the other side may be
    # larger than reflect or circular allow.
    "padding_nonnegative": ({"padding_modes": ("zeros", "replicate")}, _break_padding_sign),
    "padding_mode_known": (
        _FORWARD,
        _replace_with("padding_mode", ("constant", "Zeros", "mirror", "symmetric", "wrap", "edge")),
    ),
    "dtype_known": ({}, _replace_with("dtype", ("half", "float8_e4m3fn", "int8", "tf32", "complex64", "float"))),
    "layout_known": ({}, _replace_with("layout", ("nhwc", "channels_first", "NCHW", "contiguous_format"))),
    "transposed_padding_explicit": (_TRANSPOSED, _break_transposed_padding_string),
    "transposed_padding_mode_zeros": (_TRANSPOSED, _break_transposed_padding_mode),
    # zeros or replicate: 'same' pads could also break a reflect/circular limit.
    "same_requires_stride_1": ({**_FORWARD, "padding_modes": ("zeros", "replicate")}, _break_same_stride),
    "output_padding_requires_transposed": (_FORWARD, _break_output_padding_forward),
    "output_padding_smaller_than_stride_or_dilation": (_TRANSPOSED, _break_output_padding_size),
    "reflect_padding_smaller_than_input": (
        {**_FORWARD, "padding_modes": ("reflect",)},
        _break_padding_size("reflect"),
    ),
    "circular_padding_not_larger_than_input": (
        {**_FORWARD, "padding_modes": ("circular",)},
        _break_padding_size("circular"),
    ),
    # Not 'same': it always fits, and resizing the kernel would resize its pads.
    "kernel_fits_padded_input": ({**_FORWARD, "padding_forms": _EXPLICIT}, _break_kernel_fit),
    "output_size_positive": (_TRANSPOSED, _break_output_size),
}

#: Every rule :func:`invalid_conv_specs` can break: all of :data:`conformance.spec.RULES`.
INVALID_RULES: tuple[str, ...] = tuple(rule for rule in RULES if rule in _BREAKERS)


def _base_strategy(rule: str, spec_kwargs: dict[str, Any]) -> st.SearchStrategy[ConvSpec] | None:
    """The valid problems ``rule`` can be broken from, or None where the user's arguments exclude them."""
    needs, _ = _BREAKERS[rule]
    kwargs = dict(spec_kwargs)
    if "transposed" in needs:
        if kwargs.get("transposed") not in (None, needs["transposed"]):
            return None
        kwargs["transposed"] = needs["transposed"]
    for name, everything in (("padding_modes", PADDING_MODES), ("padding_forms", PADDING_FORMS)):
        if name in needs:
            allowed = kwargs.get(name) or everything
            kept = tuple(v for v in needs[name] if v in allowed)
            if not kept:
                return None
            kwargs[name] = kept
    try:
        return conv_specs(**kwargs)
    except InvalidArgument:
        return None


def invalid_conv_specs(
    *, rules: Sequence[str] | None = None, **spec_kwargs: Any
) -> st.SearchStrategy[tuple[ConvSpec, str]]:
    """``(spec, rule)``: a valid problem from :func:`conv_specs` broken in one named rule.

    ``spec.validate()`` raises :class:`~conformance.spec.InvalidSpec` with
    ``.rule == rule``, and every other rule holds except where breaking this
    one necessarily breaks a later one too (see ``_BREAKERS``).  ``rules`` (default :data:`INVALID_RULES`, less those
    the ``spec_kwargs`` exclude, e.g. transposed-only rules under
    ``transposed=False``) are keys of :data:`conformance.spec.RULES`.
    Shrinks towards the first rule in ``RULES`` order, broken in the simplest
    base problem.
    """
    # Build-time check of the shared arguments, with conv_specs' own messages.
    conv_specs(**spec_kwargs)
    bases = {rule: _base_strategy(rule, spec_kwargs) for rule in INVALID_RULES}
    if rules is None:
        chosen = tuple(rule for rule in INVALID_RULES if bases[rule] is not None)
        _check(bool(chosen), f"no rule can be broken under {spec_kwargs!r}")
    else:
        chosen = _check_choices("rules", rules, INVALID_RULES)
        for rule in chosen:
            _check(
                bases[rule] is not None,
                f"rules={chosen!r}, but {rule!r} needs problems that {spec_kwargs!r} exclude",
            )

    @st.composite
    def broken(draw: st.DrawFn) -> tuple[ConvSpec, str]:
        rule = draw(st.sampled_from(chosen))
        base = draw(bases[rule])
        return _BREAKERS[rule][1](draw, base), rule

    return broken()


__all__ = [
    "GROUP_KINDS",
    "INVALID_RULES",
    "PADDING_FORMS",
    "SPARSITIES",
    "TRANSPOSED_PADDING_FORMS",
    "conv_cases",
    "conv_specs",
    "data_recipes",
    "invalid_conv_specs",
]
