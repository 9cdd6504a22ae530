"""Hypothesis strategies for convolution problems broken on purpose, one named rule at a time.

Each starts from a valid problem of :func:`conformance.valid_strategies.conv_specs`
and breaks it in one rule of :data:`conformance.spec.RULES`, valid by
construction in every other rule it can be: no ``.filter``, no ``assume``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance.spec import PADDING_FORMS, PADDING_MODES, RULES, ConvSpec
from conformance.valid_strategies import _check, _check_choices, conv_specs

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
    # Crop the whole uncropped transposed output (and maybe one more): evenly from both ends first, which
    # every backend can express (PyTorch's transposed convolution takes symmetric padding only), or all of
    # it from the start, keeping the end's pad.
    axis = _axis(draw, spec)
    i, k, s, d = spec.input_size[axis], spec.kernel_size[axis], spec.stride[axis], spec.dilation[axis]
    full = (i - 1) * s + d * (k - 1) + 1 + spec.output_padding[axis]
    extra = draw(st.integers(0, 1))
    if not draw(st.booleans()):
        even = (full + 1) // 2 + extra
        return spec.replace(padding=_set(spec.pads, axis, (even, even)))
    after = spec.pads[axis][1]
    return spec.replace(padding=_set(spec.pads, axis, (full - after + extra, after)))


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
    # Only the rules that can be drawn: each base is a conv_specs strategy, whose building costs milliseconds
    # (Hypothesis reads its composite's source), and the suite asks for one rule per test.
    wanted = INVALID_RULES if rules is None else _check_choices("rules", rules, INVALID_RULES)
    bases = {rule: _base_strategy(rule, spec_kwargs) for rule in wanted}
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


__all__ = ["INVALID_RULES", "invalid_conv_specs"]
