"""Hypothesis strategies for valid convolution problems and the data to run them on.

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

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance.data import DISTRIBUTIONS, MAX_SCALE, DataRecipe
from conformance.geometry import draw_geometry, form_cost, only
from conformance.regimes import (
    LAYERS,
    REGIMES,
    SIMD_EDGE_CHANNELS,
    draw_layer_channels,
    fast_channels,
    fast_kernels,
    kernel_cost,
    layer_channels,
)
from conformance.spec import DTYPES, LAYOUTS, PADDING_FORMS, PADDING_MODES, ConvSpec

#: A transposed convolution takes explicit padding only.
TRANSPOSED_PADDING_FORMS: tuple[str, ...] = ("none", "symmetric", "asymmetric")
#: How channels are split into groups, simplest first.
GROUP_KINDS: tuple[str, ...] = ("one", "depthwise", "depthwise_multiplier", "other")
#: Scales beyond ``max_scale`` that recipes also draw: wide exponent spreads (see data_recipes).
WIDE_SCALES: tuple[int, ...] = (8, 10, 12, 14, 16, 20)
#: The arguments of :func:`conv_cases` that draw the fast-path regimes and the data that exposes
#: normwise-accurate fast algorithms (the suite's fastpath cells draw them; see conformance.regimes and the README).
FAST_PATHS: dict[str, Any] = {"regimes": REGIMES, "wide_scales": WIDE_SCALES, "weigh_first_less": True}
#: Sparsities a recipe is drawn from, simplest (dense) first.
SPARSITIES: tuple[float, ...] = (0.0, 0.5, 0.9)

# The free regime's largest kernel: larger ones come from the fast regime, where they are what an FFT path takes.
_FREE_MAX_KERNEL = 5
# Depthwise-multiplier channel multipliers: 2 and 3 cover even and odd.
_MAX_MULTIPLIER = 3
# The fewest channel MACs (groups * in/groups * out/groups) of each group kind.
_KIND_FLOOR = {"one": 1, "depthwise": 2, "depthwise_multiplier": 4, "other": 2}


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
    max_kernel: int = 11,
    max_stride: int = 4,
    max_dilation: int = 3,
    max_pad: int = 3,
    bias: bool | None = None,
    regimes: Sequence[str] = ("free",),
    simd_channels: Sequence[int] = SIMD_EDGE_CHANNELS,
) -> st.SearchStrategy[ConvSpec]:
    """Valid :class:`ConvSpec` problems whose ``macs`` never exceed ``max_macs``.

    ``transposed``, ``bias``: None draws both.  ``padding_forms`` (default all
    that apply) are "none" (zero explicit padding), "symmetric" (one pad per
    axis, at least 1 on one axis), "asymmetric" (before and after drawn
    independently, unequal on at least one axis), "same" (which forces stride
    1) and "valid"; each problem's :attr:`~ConvSpec.padding_form` is the form
    it was drawn as.  A transposed convolution takes only the first three,
    pads with zeros only, and draws ``output_padding`` per axis in ``[0,
    max(stride, dilation) - 1]``.  A padded form that the limits leave no
    room for (``max_pad=0``, a transposed kernel too small to crop, a budget
    too small) is left out of the default forms, and is an error if named.  ``group_kinds`` (default all that
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

    ``regimes`` (see :mod:`conformance.regimes`; pass
    :data:`~conformance.regimes.REGIMES` for the fast-path weights; the default,
    "free" alone, draws exactly what this strategy always drew): "free" draws every per-axis value on
    its own (kernels up to 5, or ``max_kernel`` if smaller); "fast" draws
    groups 1, stride 1, dilation 1 and one kernel for every axis (3, 5, 7, or
    the largest from 9 up to ``max_kernel`` that fits: the shapes backends
    give Winograd and FFT paths), with channel counts from 1..4 and
    ``simd_channels``; "layer" draws a scaled-down real network layer (1x1
    GEMM-path layers among them).  ``simd_channels`` may exceed
    ``max_channels_per_group`` (only the budget caps them); pass ``()`` to keep
    every channel count within it.

    Shrinks towards: the free regime, the first of ``dims``, forward, the first padding form and
    mode, groups 1 with one channel, kernel 1, stride 1, dilation 1, no
    padding (a padded form: pad 1 on the first axis only, after it 0 in the
    asymmetric form), batch 1, the smallest valid input, the first dtype, layout and
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
    regimes = _check_choices("regimes", regimes, ("free", "fast", "layer"))
    _check(
        isinstance(simd_channels, (tuple, list)) and all(isinstance(c, int) and c >= 1 for c in simd_channels),
        f"simd_channels={simd_channels!r}, but should be a tuple of channel counts >= 1",
    )
    simd_channels = tuple(simd_channels)

    if transposed is True:
        _check(
            any(f in TRANSPOSED_PADDING_FORMS for f in forms),
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
    least_channels = min(_KIND_FLOOR[kind] for kind in kinds)

    def modes_for(form: str, is_transposed: bool) -> tuple[str, ...]:
        """The modes a problem of ``form`` fits in with: a padded axis costs more with some (see form_cost)."""
        if is_transposed and (form not in TRANSPOSED_PADDING_FORMS or "zeros" not in modes):
            return ()
        return tuple(
            mode
            for mode in (("zeros",) if is_transposed else modes)
            if (cost := form_cost(form, mode, is_transposed, limits)) is not None and cost * least_channels <= max_macs
        )

    # form -> modes, per direction; a form with no mode cannot be drawn that way.
    forward_forms = {f: m for f in forms if (m := modes_for(f, False))} if transposed is not True else {}
    transposed_forms = {f: m for f in forms if (m := modes_for(f, True))} if transposed is not False else {}
    if padding_forms is not None:
        for form in forms:
            legal = transposed is not True or form in TRANSPOSED_PADDING_FORMS
            _check(
                not legal or form in forward_forms or form in transposed_forms,
                f"padding_forms={forms!r}, but {form!r} does not fit max_pad={max_pad}, max_kernel={max_kernel}, "
                f"max_dilation={max_dilation}, max_macs={max_macs} with padding_modes={modes!r}",
            )
    can_forward, can_transpose = bool(forward_forms), bool(transposed_forms)
    # The channels leave the axis that shows a padded form its cost: see draw_geometry.
    channel_draws = {
        (is_transposed, form, mode): _channels(
            tuple(k for k in kinds if _KIND_FLOOR[k] * form_cost(form, mode, is_transposed, limits) <= max_macs),
            max_macs // form_cost(form, mode, is_transposed, limits),
            limits,
        )
        for is_transposed, table in ((False, forward_forms), (True, transposed_forms))
        for form, form_modes in table.items()
        for mode in form_modes
    }

    # The free regime's kernels stay small; large ones are the fast regime's (see conformance.regimes).
    free_limits = {**limits, "max_kernel": min(max_kernel, _FREE_MAX_KERNEL)}

    def layers_for(ndim: int, is_transposed: bool, form: str, mode: str) -> tuple[Any, ...]:
        """The real layers this problem's direction, group kinds and budget leave room for."""
        return tuple(
            layer
            for layer in LAYERS
            if layer.transposed == is_transposed
            and layer.kind in kinds
            and (layer.kind == "one" or max_groups >= 2)
            and layer.kernel <= max_kernel
            and kernel_cost(layer.kernel, ndim, form, mode, is_transposed, limits) * _KIND_FLOOR[layer.kind]
            <= max_macs
        )

    @st.composite
    def specs(draw: st.DrawFn) -> ConvSpec:
        # No draw when there is nothing to choose: the free regime alone draws exactly what it always drew.
        regime = draw(st.sampled_from(regimes)) if len(regimes) > 1 else regimes[0]
        ndim = draw(st.sampled_from(dims))
        is_transposed = draw(st.booleans()) if can_forward and can_transpose else can_transpose
        form = draw(st.sampled_from(tuple(transposed_forms if is_transposed else forward_forms)))
        # A transposed problem draws a placeholder instead of a mode: see only.
        mode = PADDING_MODES[draw(only(0))] if is_transposed else draw(st.sampled_from(forward_forms[form]))
        layers = layers_for(ndim, is_transposed, form, mode) if regime == "layer" else ()
        if regime == "fast" and "one" in kinds:
            k = draw(st.sampled_from(fast_kernels(ndim, form, mode, is_transposed, limits)))
            per_position = max_macs // kernel_cost(k, ndim, form, mode, is_transposed, limits)
            groups, (cin_g, cout_g) = draw(only(1)), fast_channels(draw, per_position, simd_channels)
            geometry = draw_geometry(draw, ndim, is_transposed, form, mode, cin_g * cout_g, limits, want=(k, 1, 1))
        elif layers:
            layer = draw(st.sampled_from(layers))
            per_position = kernel_cost(layer.kernel, ndim, form, mode, is_transposed, limits)
            groups, cin_g, cout_g = draw_layer_channels(
                draw, layer_channels(layer, per_position, max_macs, max_groups)
            )
            geometry = draw_geometry(
                draw, ndim, is_transposed, form, mode, groups * cin_g * cout_g, limits,
                want=(layer.kernel, layer.stride, layer.dilation),
            )  # fmt: skip
        else:
            groups, cin_g, cout_g = draw(channel_draws[is_transposed, form, mode])
            geometry = draw_geometry(draw, ndim, is_transposed, form, mode, groups * cin_g * cout_g, free_limits)
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


def _channels(
    kinds: tuple[str, ...], budget: int, limits: dict[str, int]
) -> st.SearchStrategy[tuple[int, int, int]]:
    """``(groups, in_channels/groups, out_channels/groups)`` with ``groups*cin_g*cout_g <= budget``.

    That product is the smallest problem's MACs for forward and transposed
    alike, so the kernel and sizes drawn next always have room.  ``budget`` is
    ``max_macs`` less what a padded form's axis needs: see ``form_cost``.
    """
    return _draw_channels(kinds, budget, limits["max_channels_per_group"], limits["max_groups"])


# Defined once, at module level, and given its bounds as arguments: Hypothesis reads a composite's source
# when it is defined (to check that it draws), and conv_specs builds one per (direction, form, mode), so
# a closure redefined in every call made building a cell's strategy cost more than running the cell.
@st.composite
def _draw_channels(draw: st.DrawFn, kinds: tuple[str, ...], budget: int, per_group: int, max_groups: int
                   ) -> tuple[int, int, int]:  # fmt: skip
    kind = draw(st.sampled_from(kinds))
    # Three draws for every kind (some with one possible value): see only.
    if kind == "one":
        groups = draw(only(1))
        cin_g = draw(st.integers(1, min(per_group, budget)))
        return groups, cin_g, draw(st.integers(1, min(per_group, budget // cin_g)))
    if kind == "depthwise":
        return draw(st.integers(2, min(max_groups, budget))), draw(only(1)), draw(only(1))
    if kind == "depthwise_multiplier":
        groups = draw(st.integers(2, min(max_groups, budget // 2)))
        cin_g = draw(only(1))
        return groups, cin_g, draw(st.integers(2, min(_MAX_MULTIPLIER, per_group, budget // groups)))
    groups = draw(st.integers(2, min(max_groups, budget)))
    cin_g = draw(st.integers(1, min(per_group, budget // groups)))
    return groups, cin_g, draw(st.integers(1, min(per_group, budget // (groups * cin_g))))


# ------------------------------------------------------------- data and cases


def data_recipes(
    *,
    distributions: Sequence[str] = DISTRIBUTIONS,
    sparsities: Sequence[float] = SPARSITIES,
    min_scale: int = 0,
    max_scale: int = 5,
    wide_scales: Sequence[int] = (),
    weigh_first_less: bool = False,
    max_seed: int = 2**32 - 1,
) -> st.SearchStrategy[DataRecipe]:
    """:class:`DataRecipe` values; shrinks towards the first distribution
    (``"ones"``), the first sparsity (dense), ``min_scale`` and seed 0.

    With ``weigh_first_less`` the first distribution is drawn half as often as each of the others: all-ones
    data sees only bugs that change how many terms a sum has (a flipped kernel,
    a fast algorithm's rounding and most channel mix-ups agree with the
    reference on it), and it stays the shrink target all the same.

    The scale is drawn from ``[min_scale, max_scale]`` and the ``wide_scales``
    beyond it alike (:data:`WIDE_SCALES` is the fast-path set; none by default).
    ``max_scale`` 5 keeps real data within ``[2**-5, 2**6]``; the wide
    scales spread real data's exponents over ``[-scale, scale]`` (before the
    dtype-aware caps of :mod:`conformance.data` apply), so that some output
    elements sum only small products while others sum large ones: where a
    normwise-accurate algorithm (FFT, Winograd) spreads the error of the large
    ones over every element, and a componentwise bound catches it.  For
    integers a wide scale means the largest integers that the exact tier allows.
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
    _check(
        isinstance(wide_scales, (tuple, list))
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SCALE for v in wide_scales),
        f"wide_scales={wide_scales!r}, but should be ints in [0, {MAX_SCALE}]",
    )
    # Only those beyond the range: a wide scale inside it would just weigh that scale twice.
    wide = tuple(v for v in wide_scales if v > max_scale)
    _check_int("max_seed", max_seed, 0)
    weighted = (distributions[0], *distributions[1:] * 2) if weigh_first_less else distributions
    return st.builds(
        DataRecipe,
        distribution=st.sampled_from(weighted),
        sparsity=st.sampled_from(tuple(float(v) for v in sparsities)),
        seed=st.integers(0, max_seed),
        # One sampled_from: shrinks to min_scale, whichever scale came out.  Without wide scales, the
        # integers draw recipes always made (so the default draws what it always drew).
        scale=st.sampled_from((*range(min_scale, max_scale + 1), *wide)) if wide else st.integers(min_scale, max_scale),
    )


def conv_cases(
    *,
    distributions: Sequence[str] = DISTRIBUTIONS,
    sparsities: Sequence[float] = SPARSITIES,
    min_scale: int = 0,
    max_scale: int = 5,
    wide_scales: Sequence[int] = (),
    weigh_first_less: bool = False,
    **spec_kwargs: Any,
) -> st.SearchStrategy[tuple[ConvSpec, DataRecipe]]:
    """``(spec, recipe)`` pairs: :func:`conv_specs` (given ``spec_kwargs``) and :func:`data_recipes`.

    ``**FAST_PATHS`` turns on the fast-path regimes, the wide exponent spreads and the lighter
    weight of all-ones data together (see :data:`FAST_PATHS`)."""
    recipes = data_recipes(
        distributions=distributions, sparsities=sparsities, min_scale=min_scale, max_scale=max_scale,
        wide_scales=wide_scales, weigh_first_less=weigh_first_less,
    )  # fmt: skip
    return st.tuples(conv_specs(**spec_kwargs), recipes)


__all__ = [
    "FAST_PATHS",
    "GROUP_KINDS",
    "SPARSITIES",
    "TRANSPOSED_PADDING_FORMS",
    "WIDE_SCALES",
    "conv_cases",
    "conv_specs",
    "data_recipes",
]
