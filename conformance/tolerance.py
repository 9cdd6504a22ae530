r"""Every comparison decision of the suite ends here: the verdict on a candidate's answer.

A candidate declares, per dtype and device, *how it rounds* (:class:`Precision`);
:func:`check` compares its output with the float64 oracle under that declaration
and returns one :class:`Verdict`.  Nothing else in the suite compares numbers.
It does so in two halves: :func:`requirement` says what each element must be
(a :class:`Requirement`: a value within a bound, NaN, a matching infinity, or
nothing), without looking at the candidate; :func:`meets` applies it.  A
standalone repro script (:mod:`conformance.repro`) carries the requirement and
an inlined copy of :func:`meets`, so it judges exactly as the suite did.

The two halves live in their own modules: :mod:`conformance.precision` (the
declaration, the exact-tier certificate and the error bound) and
:mod:`conformance.requirement` (what each element must be, special values
included).  This module turns a requirement met or not into a :class:`Verdict`,
decides mistrust, and re-exports the public names of both, so that
``conformance.tolerance`` stays the one place callers import comparisons from.

Mistrust: a case whose reference is more than half exact zeros, and which the
candidate does not fail, is *mistrusted*, not passed (benchdnn's guard: such a
case says little about the arithmetic).  Only elements that sum at least one
product count, when the caller says which do (``terms``): an element no product
reaches is zero by structure, whatever the data (a stride longer than the dilated
kernel leaves such gradients; a transposed convolution such outputs), and it is
checked exactly, so a backend that writes anything else there fails.  It is
evidence, not a lack of it.  A product whose every element is zero by structure
(a batch of 0) passes on those zeros, as an empty output passes on its shape.  A case that fails only under the bound
without the ``subnormal_mag`` term, while the inputs hold values the declared
precision may flush or round without a relative bound, is mistrusted too: the
suite cannot tell a bug from the declared behaviour without that term.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from conformance.formats import get_format
from conformance.precision import (
    Precision,
    certifies_exact,
    default_precision,
    error_bound,
    flush_subnormals,
    gamma,
    input_format,
    subnormal_hazard,
)
from conformance.requirement import (
    FINITE_OR_OVERFLOW,
    FREE,
    INF,
    KINDS,
    NAN,
    TIERS,
    VALUE,
    Requirement,
    element_ratios,
    error_ratios,
    meets,
    requirement,
    structural_zeros,
)

STATUSES = ("passed", "failed", "mistrusted")

#: A case whose reference has more than this fraction of exact zeros is mistrusted.
MOSTLY_ZERO = 0.5
#: An element whose error is at least this fraction of its bound counts as near it (``Verdict.near_bound``).
NEAR_BOUND = 0.5


# --------------------------------------------------------------------- verdict


def _json_float(v: float | None) -> float | str | None:
    """JSON has no NaN or infinities: those become the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else repr(v)


def _from_json_float(v: float | str | None) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison.

    ``expected``, ``got``, ``error`` and ``bound`` describe the worst element
    (``worst_index``): the first-ranked failure, or on a pass the element closest
    to its bound.  ``ratio`` is that element's ``error / bound`` (0 when every
    element matched exactly; ``inf`` for a special-value or exact-tier mismatch).
    ``sum_sq_error`` is ``sum (got - ref)**2`` over the elements where both are
    finite, as TOSA records it.  ``mismatches`` counts failing elements,
    ``excused`` those that carried no requirement (overflow, see the module docstring).
    ``zero_fraction`` is the share of exact zeros among the elements that sum at least
    one product (among all elements when :func:`check` was not told which do).
    ``near_bound`` is the share of the bounded elements whose error is at least
    ``NEAR_BOUND`` of their bound: how close the answer as a whole came to failing,
    which a targeted search (``hypothesis.target``) can climb along with ``ratio``.
    """

    status: str
    tier: str
    checked: int
    worst_index: tuple[int, ...] | None
    expected: float | None
    got: float | None
    error: float | None
    bound: float | None
    ratio: float
    sum_sq_error: float
    zero_fraction: float
    reason: str
    mismatches: int = 0
    excused: int = 0
    near_bound: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: NaN and infinities are written as strings (``"nan"``, ``"inf"``)."""
        out = asdict(self)
        out["worst_index"] = None if self.worst_index is None else list(self.worst_index)
        for name in ("expected", "got", "error", "bound", "ratio", "sum_sq_error", "zero_fraction", "near_bound"):
            out[name] = _json_float(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        data = dict(data)
        if data.get("worst_index") is not None:
            data["worst_index"] = tuple(data["worst_index"])
        for name in ("expected", "got", "error", "bound", "ratio", "sum_sq_error", "zero_fraction"):
            data[name] = _from_json_float(data.get(name))
        data["near_bound"] = _from_json_float(data.get("near_bound")) or 0.0
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _num(v: float, digits: int = 9) -> str:
    """``3.0``, ``1.25``, ``-inf``, ``NaN``: short, but never mistakable for an integer index."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    text = format(v, f".{digits}g")
    return text if any(c in text for c in ".ein") else text + ".0"


def _where(index: tuple[int, ...]) -> str:
    return str(tuple(int(i) for i in index))


def check(
    got: np.ndarray,
    ref: np.ndarray,
    mag: np.ndarray,
    *,
    inputs: tuple[np.ndarray | None, ...],
    reduction_length: int,
    precision: Precision,
    bias: bool = False,
    subnormal_mag: np.ndarray | None = None,
    free: np.ndarray | None = None,
    terms: np.ndarray | None = None,
) -> Verdict:
    """Judge a candidate's output ``got`` against the oracle's ``ref`` (magnitude ``mag``).

    ``inputs`` are the arrays that entered the product, factors first and, when
    ``bias`` is true, the bias array last (``(x, w, b)``; ``(w, grad_out)`` for a
    grad_input): the tier is certified from them, not assumed.  ``reduction_length``
    is ``K``, the products summed per output element.  ``subnormal_mag`` is needed
    only when :func:`subnormal_hazard` says so.  ``terms`` (broadcastable to ``ref``;
    :func:`conformance.oracle.term_counts`) counts the products each element sums: the
    elements with none are zero by structure, checked exactly and left out of the
    mistrust count.  A shape mismatch is a failed verdict, never an exception.

    In the exact tier, ``+0`` and ``-0`` compare equal: the sign of an exact zero
    sum depends on the summation order (``(-1 + 1) + -0`` vs ``-0 + (-1 + 1)``), so
    it is not a conformance property of a convolution.
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    mag = np.asarray(mag, dtype=np.float64)
    if mag.shape != ref.shape:
        # The caller's bug, not the candidate's: refuse loudly.
        raise ValueError(f"mag has shape {mag.shape}, ref has {ref.shape}")
    size = int(ref.size)
    summed = np.ones(ref.shape, dtype=bool) if terms is None else np.broadcast_to(terms, ref.shape) > 0
    structural = structural_zeros(ref, terms)
    counted = int(np.count_nonzero(summed))
    zeros = int(np.count_nonzero(summed & (ref == 0)))
    zero_fraction = zeros / counted if counted else 0.0
    common = {"checked": size, "zero_fraction": zero_fraction}

    if got.shape != ref.shape:
        return Verdict(
            "failed", "empty" if size == 0 else "real", worst_index=None, expected=None, got=None,
            error=None, bound=None, ratio=math.inf, sum_sq_error=math.nan,
            reason=f"shape mismatch: got {got.shape}, expected {ref.shape}", mismatches=size, **common,
        )  # fmt: skip
    if size == 0:
        return Verdict(
            "passed", "empty", worst_index=None, expected=None, got=None, error=None, bound=None,
            ratio=0.0, sum_sq_error=0.0, reason=f"empty output of shape {ref.shape}: the shape is the assertion",
            **common,
        )  # fmt: skip

    with np.errstate(invalid="ignore", over="ignore"):
        both = np.isfinite(got) & np.isfinite(ref)
        diff = np.where(both, got - ref, 0.0)
        sum_sq = float(np.sum(diff * diff))
        error = np.abs(diff)

    req = requirement(
        ref, mag, inputs=inputs, reduction_length=reduction_length, precision=precision, bias=bias,
        subnormal_mag=subnormal_mag, free=free, terms=terms,
    )  # fmt: skip
    ok = meets(got, req)
    if req.tier == "exact":
        verdict = _exact(got, req.expected, ~ok, error, sum_sq, precision, structural, common)
    else:
        hazard = subnormal_hazard(inputs, precision) if subnormal_mag is None else None
        verdict = _real(got, req, ~ok, error, sum_sq, precision, hazard, structural, common)
    if verdict.status != "passed":
        return verdict
    bounded = (req.kind == VALUE) | (req.kind == FINITE_OR_OVERFLOW)
    if req.tier == "real" and np.any(np.isinf(req.bound[bounded])):
        reason = (
            f"the declared {precision.accumulation} accumulation gives no error bound for "
            f"{reduction_length} terms, so no answer could fail"
        )
        return _replace(verdict, status="mistrusted", reason=reason)
    n_structural = int(np.count_nonzero(structural))
    if zero_fraction > MOSTLY_ZERO:
        # Only elements that sum products count: a zero by structure was checked exactly
        # (any other value fails), so it is evidence, not a lack of it.
        of = f"{counted} reference values that sum products" if terms is not None else f"{size} reference values"
        reason = f"{zeros} of {of} ({zero_fraction:.0%}) are exactly zero, "
        reason += "so agreement says little about the arithmetic"
        if n_structural:
            reason += f" ({n_structural} more are zero by structure)"
        return _replace(verdict, status="mistrusted", reason=reason)
    if n_structural:
        verdict = _replace(verdict, reason=f"{verdict.reason}; {n_structural} that no product reaches are exactly 0")
    return verdict


_NO_PRODUCTS = "no product reaches this element, so it is zero whatever the data"


def _replace(v: Verdict, **changes: Any) -> Verdict:
    return Verdict(**{**{f.name: getattr(v, f.name) for f in fields(v)}, **changes})


def _exact(got, expected, bad, error, sum_sq, precision: Precision, structural, common) -> Verdict:
    # meets() with bound 0: +0 and -0 are equal, and NaN or Inf never equal a finite expected value
    count = int(np.count_nonzero(bad))
    if not count:
        return Verdict(
            "passed", "exact", worst_index=None, expected=None, got=None, error=0.0, bound=0.0, ratio=0.0,
            sum_sq_error=sum_sq, reason="every element equals the exactly rounded reference", **common,
        )  # fmt: skip
    # Rank non-finite answers first, then the largest error.
    rank = np.where(np.isfinite(got), error, math.inf)
    flat = int(np.argmax(np.where(bad, rank, -1.0)))
    index = tuple(int(i) for i in np.unravel_index(flat, got.shape))
    g, e = float(got[index]), float(expected[index])
    p = min(get_format(precision.accumulation).precision, get_format(precision.output).precision)
    why = (
        _NO_PRODUCTS
        if structural[index]
        else f"exact tier: integer data whose every partial sum fits {p} significand bits"
    )
    reason = f"value at {_where(index)}: got {_num(g, 17)}, expected exactly {_num(e, 17)} ({why}); "
    reason += f"{count} of {got.size} elements differ"
    return Verdict(
        "failed", "exact", worst_index=index, expected=e, got=g, error=abs(g - e) if math.isfinite(g) else math.inf,
        bound=0.0, ratio=math.inf, sum_sq_error=sum_sq, reason=reason, mismatches=count, **common,
    )  # fmt: skip


def _real(got, req: Requirement, bad, error, sum_sq, precision: Precision, hazard, structural, common) -> Verdict:
    ref, bound, kind = req.expected, req.bound, req.kind
    got_finite = np.isfinite(got)
    # Excused: no requirement, or an overflow where one was possible.
    excused = (kind == FREE) | ((kind == FINITE_OR_OVERFLOW) & ~got_finite)
    nan_bad = bad & (kind == NAN)
    inf_bad = bad & (kind == INF)
    ratio = error_ratios(got, req, bad, error)
    count, n_excused = int(np.count_nonzero(bad)), int(np.count_nonzero(excused))
    bounded = (kind == VALUE) | (kind == FINITE_OR_OVERFLOW)
    n_bounded = int(np.count_nonzero(bounded))
    common = {**common, "near_bound": int(np.count_nonzero(bounded & (ratio >= NEAR_BOUND))) / n_bounded
              if n_bounded else 0.0}  # fmt: skip

    flat = int(np.argmax(np.where(bad, ratio, -1.0))) if count else int(np.argmax(ratio))
    index = tuple(int(i) for i in np.unravel_index(flat, ref.shape))
    r, g, b, e = float(ratio[index]), float(got[index]), float(bound[index]), float(ref[index])
    err = float(error[index]) if math.isfinite(g) and math.isfinite(e) else math.inf
    where = _where(index)
    if not count:
        excuse = f"; {n_excused} element(s) excused by overflow" if n_excused else ""
        if r == 0:
            return Verdict(
                "passed", "real", worst_index=None, expected=None, got=None, error=0.0, bound=None, ratio=0.0,
                sum_sq_error=sum_sq, reason=f"every element equals the reference{excuse}", excused=n_excused,
                **common,
            )  # fmt: skip
        return Verdict(
            "passed", "real", worst_index=index, expected=e, got=g, error=err, bound=b, ratio=r,
            sum_sq_error=sum_sq, excused=n_excused, **common,
            reason=f"all {got.size} elements within bound: worst error/bound {r:.3g} at {where}{excuse}",
        )  # fmt: skip

    if nan_bad[index]:
        what = f"NaN expected at {where}: got {_num(g)}"
    elif inf_bad[index]:
        what = f"{_num(e)} expected at {where}: got {_num(g)}"
    elif structural[index]:
        what = f"value at {where}: got {_num(g)}, expected exactly {_num(e)} ({_NO_PRODUCTS})"
    elif not math.isfinite(g):
        what = f"value at {where}: got {_num(g)}, expected {_num(e)} ± {_num(b, 3)} (no overflow is possible there)"
    else:
        what = f"value at {where}: got {_num(g)}, expected {_num(e)} ± {_num(b, 3)} (error/bound {r:.3g})"
    reason = f"{what}; {count} of {got.size} elements fail under {precision.describe()}"
    status = "failed"
    # Flushing or rounding a subnormal input moves a finite result; it cannot make NaN or Inf,
    # nor move an element that sums no products.
    if hazard is not None and not np.any(nan_bad | inf_bad | (bad & ~got_finite) | (bad & structural)):
        status = "mistrusted"
        reason += (
            f"; but the inputs hold values below {hazard}'s smallest normal, which the declared precision "
            "may perturb without a relative bound: pass subnormal_mag to decide"
        )
    return Verdict(
        status, "real", worst_index=index, expected=e, got=g, error=err, bound=b, ratio=r,
        sum_sq_error=sum_sq, reason=reason, mismatches=count, excused=n_excused, **common,
    )  # fmt: skip


__all__ = [
    "FINITE_OR_OVERFLOW",
    "FREE",
    "INF",
    "KINDS",
    "MOSTLY_ZERO",
    "NAN",
    "NEAR_BOUND",
    "STATUSES",
    "TIERS",
    "VALUE",
    "Precision",
    "Requirement",
    "Verdict",
    "certifies_exact",
    "check",
    "default_precision",
    "element_ratios",
    "error_bound",
    "flush_subnormals",
    "gamma",
    "input_format",
    "meets",
    "requirement",
    "structural_zeros",
    "subnormal_hazard",
]
