"""The per-axis geometry of a convolution problem, drawn within a MAC budget.

Kernel, stride, dilation, padding and output_padding per axis, then the batch,
then each input size: every draw is capped by what the smallest problem with
the values drawn so far would cost, so no later draw is ever left empty.

Each padding form is drawn as exactly what :attr:`ConvSpec.padding_form` will
call it, so a cell's minimal failure belongs to that cell: a "symmetric" or
"asymmetric" problem has at least one axis whose pads show the form (the last
one, unless an earlier one already does), and the budget that axis needs is
set aside before anything else is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

#: Forms that need at least one padded axis: all-zero pairs would make the problem "none".
PADDED_FORMS: tuple[str, ...] = ("symmetric", "asymmetric")

# Input sizes are drawn half the time from the few values just above the
# smallest valid one: edges (the kernel covering the whole padded input, one
# spare element past the last window) are where indexing bugs live, and a
# uniform draw over a budget-sized range would almost never land on them.
_NEAR_MINIMUM = 8

# The cheapest pads that show each padded form on an axis.
_SHOWING_PADS = {"symmetric": (1, 1), "asymmetric": (1, 0)}


# ------------------------------------------------------------- draws


def only(value: int) -> st.SearchStrategy[int]:
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


def mostly_first(first: int, high: int, also: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    """``first`` about half the time, else uniform over ``also`` and ``[first, high]``; shrinks to ``first``.

    For the values real problems mostly have (stride 1, dilation 1, batch 1):
    a uniform draw would make a dense, unit-stride 3-D problem rare.  One
    sampled_from is one choice, whichever value comes out (see only).
    """
    rest = (*also, *range(first, high + 1))
    return st.sampled_from((first,) * len(rest) + rest)


# ------------------------------------------------------------- sizes and costs


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
    whose smallest valid value is 1.  Never grows with the stride or the
    dilation, and never shrinks as either pad grows.
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


def _largest_run(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The largest v in [low, high] with ok on all of [low, v], for ok true at low.

    For the kernel of a padded forward axis, whose cost is not monotone: pads
    (1, 1) cost 3 taps-times-positions with k=1, 4 with k=2, 3 again with k=3.
    """
    v = low
    while v < high and ok(v + 1):
        v += 1
    return v


def _iroot(n: int, r: int) -> int:
    """floor(n ** (1/r)) without float surprises."""
    root = round(n ** (1.0 / r))
    while root**r > n:
        root -= 1
    while (root + 1) ** r <= n:
        root += 1
    return max(root, 1)


def _kernel_floor(form: str, transposed: bool, max_dilation: int) -> int:
    """The smallest kernel of an axis that shows ``form``.

    A transposed axis crops at most the kernel's extent less one, d*(k-1) (see
    _draw_axis): a one-sided pad needs k >= 2, pads (1, 1) need k >= 3, or
    k = 2 with dilation 2.
    """
    if not transposed or form not in PADDED_FORMS:
        return 1
    return 3 if form == "symmetric" and max_dilation < 2 else 2


def form_cost(form: str, mode: str, transposed: bool, limits: dict[str, int]) -> int | None:
    """The least cost (see _axis_cost) of an axis that shows ``form``, or None where ``limits`` allow none.

    The budget of every other draw is what this leaves: channels, then the
    other axes, are capped so that the axis showing the form still fits.
    """
    if form not in PADDED_FORMS:
        return 1
    k = _kernel_floor(form, transposed, limits["max_dilation"])
    if limits["max_pad"] < 1 or k > limits["max_kernel"]:
        return None
    return _axis_cost(k, 1, 1, _SHOWING_PADS[form], mode, transposed)


# ------------------------------------------------------------- one axis


def _draw_axis(
    draw: st.DrawFn,
    room: int,
    transposed: bool,
    form: str,
    mode: str,
    limits: dict[str, int],
    pointwise: bool,
    shows_form: bool,
    want: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Kernel, stride, dilation, padding and output_padding of one axis.

    Each is capped so that the axis's cost in the smallest problem stays within
    ``room``, which keeps every later draw non-empty.  ``shows_form``: this
    axis's pads must make a padded form what it says (``room`` then holds
    :func:`form_cost` at least).  ``want``: the ``(kernel, stride, dilation)``
    a regime asks for (see :func:`draw_geometry`); each is drawn as a one-value
    draw, moved into its valid range where the form or the room needs that.
    """

    def cost(k: int, s: int, d: int, pads: tuple[int, int]) -> int:
        return _axis_cost(k, s, d, pads, mode, transposed)

    def cheapest(k: int, d: int) -> tuple[int, int]:
        if form == "same":
            return _same_pads(k, d)
        return _SHOWING_PADS[form] if shows_form else (0, 0)

    low_k = _kernel_floor(form, transposed, limits["max_dilation"]) if shows_form else 1
    top_k = _largest_run(low_k, limits["max_kernel"], lambda k: cost(k, 1, 1, cheapest(k, 1)) <= room)
    if want is not None:
        # A one-value draw records the value itself, so a shrink that drops the regime replays it.
        k = draw(only(min(max(want[0], low_k), top_k)))
    elif shows_form and transposed and form == "symmetric" and low_k == 2:
        # k=2 needs dilation >= 2 (see _kernel_floor), so it comes last: a shrinking kernel stops at 3,
        # whose dilation is free, and never lands where the dilation and the draws after it must change.
        k = draw(st.sampled_from((*range(3, top_k + 1), 2)))
    else:
        k = draw(only(1) if pointwise else st.integers(low_k, top_k))
    # 'same' keeps the size only at stride 1, so the form is drawn first.
    top_s = 1 if form == "same" else limits["max_stride"]
    s = draw(only(min(want[1], top_s)) if want is not None else mostly_first(1, top_s))
    # A transposed k=2 crops at most d, and pads (1, 1) need 2 of it.
    low_d = 2 if shows_form and transposed and form == "symmetric" and k == 2 else 1
    top_d = _largest(low_d, limits["max_dilation"], lambda d: cost(k, s, d, cheapest(k, d)) <= room)
    d = draw(only(min(max(want[2], low_d), top_d)) if want is not None else mostly_first(low_d, top_d))
    # A transposed convolution crops at most the kernel's extent, so that even
    # a single input position leaves an output of size >= 1.
    crop = d * (k - 1) if transposed else limits["max_pad"]
    top = min(limits["max_pad"], crop)
    if form == "symmetric":
        top = min(top, crop // 2) if transposed else top
        low_p = 1 if shows_form else 0
        p = draw(st.integers(low_p, _largest(low_p, top, lambda p: cost(k, s, d, (p, p)) <= room)))
        pads = (p, draw(only(p)))
    elif form == "asymmetric" and shows_form:
        pads = _draw_uneven_pads(draw, top, crop if transposed else None, lambda b, a: cost(k, s, d, (b, a)) <= room)
    elif form == "asymmetric":
        # One-sided pads are their own case: code that slices x[-(before + after):-after] breaks at after == 0.
        side = draw(st.sampled_from(("both", "before only", "after only")))
        top_before = 0 if side == "after only" else top
        before = draw(st.integers(0, _largest(0, top_before, lambda p: cost(k, s, d, (p, 0)) <= room)))
        top_after = 0 if side == "before only" else min(top, crop - before) if transposed else top
        after = draw(st.integers(0, _largest(0, top_after, lambda p: cost(k, s, d, (before, p)) <= room)))
        pads = (before, after)
    else:
        pads = tuple(draw(only(p)) for p in cheapest(k, d))
    # output_padding half the time where it is allowed: its rows are where transposed kernels go wrong.
    top_op = max(s, d) - 1 if transposed else 0
    op = draw(st.integers(1, top_op)) if top_op and draw(st.booleans()) else draw(only(0))
    low = _min_input(k, d, pads, mode, transposed)
    smallest = low if transposed else _out_size(low, k, s, d, pads, 0, False)
    return {"k": k, "s": s, "d": d, "pads": pads, "op": op, "low": low, "smallest": smallest}


def _draw_uneven_pads(
    draw: st.DrawFn, top: int, crop: int | None, fits: Callable[[int, int], bool]
) -> tuple[int, int]:
    """``(before, after)`` with before != after: one side only, or both unequal; shrinks to (1, 0).

    Three draws in every branch, as the free asymmetric axis makes (see only).
    ``crop`` bounds before + after on a transposed axis; ``fits`` is the
    budget, symmetric in the two sides and monotone in each, and holds at
    (1, 0), as ``top`` >= 1 and ``crop`` >= 1 do.
    """

    def ok(before: int, after: int) -> bool:
        return max(before, after) <= top and (crop is None or before + after <= crop) and fits(before, after)

    side = draw(st.sampled_from(("before only", "after only", "both") if ok(1, 2) else ("before only", "after only")))
    if side == "before only":
        before = draw(st.integers(1, _largest(1, top, lambda p: ok(p, 0))))
        return before, draw(only(0))
    if side == "after only":
        draw(only(0))
        return 0, draw(st.integers(1, _largest(1, top, lambda p: ok(0, p))))
    # Some after != before must fit: 1 beside any before >= 2, 2 beside 1.
    before = draw(st.integers(1, _largest(1, top, lambda b: ok(b, 1 if b > 1 else 2))))
    top_after = _largest(1, top, lambda a: ok(before, a))
    # [1, top_after] less before, numbered from 1 so that it shrinks to the smallest other pad.
    n = draw(st.integers(1, top_after - 1 if before <= top_after else top_after))
    return before, n if n < before else n + 1


# ------------------------------------------------------------- the whole problem


def draw_geometry(
    draw: st.DrawFn,
    ndim: int,
    transposed: bool,
    form: str,
    mode: str,
    channels: int,
    limits: dict[str, int],
    *,
    want: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Every axis's parameters, then the batch, then each input size, within the MAC budget.

    ``room`` is what the budget leaves for the product of the axes' costs in
    the smallest problem (kernel taps times the fewest output positions).
    ``channels`` must leave room for :func:`form_cost`.  ``want``: the
    ``(kernel, stride, dilation)`` of every axis, as a fast-path regime or a
    real layer asks (each still moved into range where the form or the budget
    needs it).  Returns the geometry's :class:`ConvSpec` fields.
    """
    budget = limits["max_macs"]
    room = budget // channels
    # Unpadded pointwise (1x1) kernels a third of the time: they are common in real networks, and
    # backends give them a fast path of their own (a plain GEMM) that must still honour the stride.
    # (Padded forms keep every kernel size: a 1x1 kernel makes 'same' padding vanish.)
    # Drawn in every regime, so that each regime makes the same draws (see only).
    pointwise = draw(st.sampled_from((False, False, True))) if form in ("none", "valid") else bool(draw(only(0)))
    pointwise = pointwise and want is None
    reserve = form_cost(form, mode, transposed, limits)
    assert reserve is not None, "conv_specs draws only the forms its limits leave room for"
    # The last axis shows a padded form unless an earlier one already does.  Each axis shrinks to
    # unpadded on its own, so a failure shrinks to padding on just the axes it needs: the last
    # one where any will do.  Until an axis shows the form, the others leave its cost free.
    shown = form not in PADDED_FORMS
    axes = []
    for index in range(ndim):
        last = index == ndim - 1
        axis_room = room if shown or last else room // reserve
        axis = _draw_axis(
            draw, axis_room, transposed, form, mode, limits, pointwise, shows_form=last and not shown, want=want
        )
        before, after = axis["pads"]
        shown = shown or (before != after if form == "asymmetric" else before > 0)
        room //= axis["k"] * axis["smallest"]
        axes.append(axis)

    base = channels * math.prod(a["k"] * a["smallest"] for a in axes)
    top_batch = min(limits["max_batch"], budget // base)
    # Empty and large batches both occur, and a failure shrinks to batch 1.
    batch = draw(mostly_first(1, top_batch, also=(0,))) if top_batch else 0

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
        # choices costs overruns (see only).
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
