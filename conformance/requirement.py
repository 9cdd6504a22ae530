r"""What each element of a candidate's output must be, decided without looking at the candidate.

:func:`requirement` turns the oracle's reference and magnitude, the inputs and the
declared :class:`~conformance.precision.Precision` into a :class:`Requirement`:
per element a value within a bound, NaN, a matching infinity, or nothing;
:func:`meets` applies it.  A standalone repro script (:mod:`conformance.repro`)
carries the requirement and an inlined copy of :func:`meets`, so it judges
exactly as the suite did.  The verdict built on it is :func:`conformance.tolerance.check`.

Tiers
-----
* **empty** -- the output has a zero-sized axis: the shape is the whole assertion.
* **exact** -- the data is certified exact (:func:`~conformance.precision.certifies_exact`):
  the candidate must return the oracle rounded to the output format bit for bit
  (``+0 == -0``; see :func:`conformance.tolerance.check`).
* **real** -- per element, ``|got - ref| <= bound`` with the deterministic bound of
  :func:`~conformance.precision.error_bound`; never a statistical or hand-tuned tolerance.

Special values, per element (``finite part may overflow`` is decided once per
tensor: the largest finite partial sum any element could see, ``n * prod(max |finite
factor|) + max |finite bias|``, might pass the accumulation format's largest value,
or some finite input rounds to infinity in the declared input-rounding format)::

    ref      mag                     requirement on got
    -------  ----------------------  --------------------------------------------------------
    NaN      any                     NaN -- a NaN input, inf*0 and inf-inf give NaN in every
                                     summation order, so a NaN-skipping kernel is caught;
                                     no requirement if the finite part may overflow (then the
                                     NaN may be an overflow artefact of the float64 oracle)
    +-Inf    inf                     the same infinity -- inf absorbs finite terms in any order;
                                     no requirement if the finite part may overflow (the
                                     candidate's own partial sums may overflow to the other inf)
    finite   inf / NaN               none: the float64 magnitude overflowed
    finite   finite, may overflow    got may be +-Inf or NaN; a finite got must meet the bound
                                     (a finite result means none of its operations overflowed,
                                     so the error analysis holds for it)
    finite   finite, cannot overflow got finite and within the bound

An element "may overflow" when ``M * (1 + 2u_in + u_in**2) * (1 + gamma_n(u_acc)) + U_acc``
passes the accumulation format's largest finite value (a partial sum may overflow),
when ``(|ref| + before) * (1 + u_out) + U_out`` passes the output format's (the final
rounding may overflow), or, for every element, when some finite input rounds to
infinity in the declared input-rounding format.

The rows of the table are the kinds of a :class:`Requirement`: :data:`NAN`, :data:`INF`,
:data:`FREE` (no requirement), :data:`FINITE_OR_OVERFLOW` and :data:`VALUE`; the exact
tier demands :data:`VALUE` with a bound of 0 everywhere.

Zeros by structure
------------------
An element that sums no products at all (``terms``, from
:func:`conformance.oracle.term_counts`: an input position that no window of a
stride longer than the dilated kernel reads, a transposed output that no input
reaches, a gradient over a batch of 0) is zero whatever the data.  No rounding,
underflow or flushing can move it, so where its reference is 0 a finite answer must
be exactly 0 in every tier (either sign: the sign of an empty sum is the backend's
convention), not merely within the bound's underflow allowance.  Only the geometry
tells such an element from one whose terms happen to be zero data, so without
``terms`` every element is taken to sum something.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conformance.formats import round_to
from conformance.precision import (
    Precision,
    bound_parts,
    bound_terms,
    certifies_exact,
    finite_part_may_overflow,
    input_format,
    inputs_overflow_when_rounded,
)

TIERS = ("exact", "real", "empty")

#: Per-element requirement kinds of a :class:`Requirement` (``Requirement.kind``).
VALUE = 0  # got is finite and |got - expected| <= bound
NAN = 1  # got is NaN
INF = 2  # got equals expected, an infinity
FREE = 3  # no requirement: the float64 magnitude overflowed, or the finite part may overflow
FINITE_OR_OVERFLOW = 4  # got may be +-Inf or NaN (an overflow); a finite got must be within bound
KINDS = ("value", "nan", "inf", "free", "finite_or_overflow")


@dataclass(frozen=True, eq=False)
class Requirement:
    """What each element of a candidate's output must be: the half of :func:`conformance.tolerance.check` that
    does not look at the candidate, so that a standalone repro script can carry it.

    ``expected`` is float64 (in the exact tier, the oracle rounded to the output
    format); ``bound`` is float64 per element (0 in the exact tier; for the
    NAN, INF and FREE kinds it is whatever the formula gave and is never read);
    ``kind`` is int8 per element, one of :data:`VALUE`, :data:`NAN`, :data:`INF`,
    :data:`FREE`, :data:`FINITE_OR_OVERFLOW`.  :func:`meets` applies it.
    """

    tier: str
    expected: np.ndarray
    bound: np.ndarray
    kind: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.expected.shape)


def requirement(
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
) -> Requirement:
    """The per-element :class:`Requirement` on a candidate's output, with the arguments of
    :func:`conformance.tolerance.check` (which applies exactly this through :func:`meets`).
    ``free`` marks elements the caller knows to carry no requirement (e.g. zero padding
    times an infinite weight, which frameworks legitimately either multiply, giving NaN,
    or skip).  ``terms`` (broadcastable to ``ref``) counts the products each element sums;
    where it is 0 and the reference is 0, a finite answer must be exactly 0 (see
    "Zeros by structure" in the module docstring)."""
    ref = np.asarray(ref, dtype=np.float64)
    mag = np.asarray(mag, dtype=np.float64)
    if mag.shape != ref.shape:
        # The caller's bug, not the candidate's: refuse loudly.
        raise ValueError(f"mag has shape {mag.shape}, ref has {ref.shape}")
    if ref.size == 0:
        return Requirement("empty", ref.copy(), np.zeros(ref.shape), np.full(ref.shape, VALUE, dtype=np.int8))
    if certifies_exact(inputs, mag, precision):
        expected = round_to(ref, precision.output)
        # Bit for bit: got == expected.  (Certified data makes every expected value finite;
        # should an infinity slip in anyway, equality is still what is demanded.)
        kind = np.where(np.isinf(expected), INF, VALUE).astype(np.int8)
        if free is not None:
            kind[free] = FREE
        return Requirement("exact", expected, np.zeros(ref.shape), kind)

    fmt_in = input_format(inputs, precision)
    t = bound_terms(reduction_length, precision, bias, fmt_in)
    sub = 0.0 if subnormal_mag is None else np.asarray(subnormal_mag, dtype=np.float64)
    bound, before, m = bound_parts(ref, mag, t, sub)
    with np.errstate(over="ignore", invalid="ignore"):
        rounds_to_inf = inputs_overflow_when_rounded(inputs, fmt_in)
        finite_overflow = rounds_to_inf or finite_part_may_overflow(inputs, bias, t)
        may_overflow = (
            (m * (1 + t.d_in) * (1 + t.g_acc) + t.under_acc > t.max_acc)
            | ((np.abs(ref) + before) * (1 + t.u_out) + t.under_out > t.max_out)
            | rounds_to_inf
        )
    regular = np.isfinite(ref) & np.isfinite(mag)
    # Everything not assigned below carries no requirement: a finite ref whose float64
    # magnitude overflowed, and NaN / Inf refs when the finite part may overflow.
    kind = np.full(ref.shape, FREE, dtype=np.int8)
    if not finite_overflow:
        kind[np.isnan(ref)] = NAN
        kind[np.isinf(ref)] = INF
    kind[regular & ~may_overflow] = VALUE
    kind[regular & may_overflow] = FINITE_OR_OVERFLOW
    if free is not None:
        kind[free] = FREE
    bound = np.broadcast_to(bound, ref.shape).astype(np.float64)
    # The kind stays: a backend that multiplies zeros it inserted by an input that
    # overflows may still give NaN there; what goes is the underflow allowance.
    bound[structural_zeros(ref, terms)] = 0.0
    return Requirement("real", ref, bound, kind)


def structural_zeros(ref: np.ndarray, terms: np.ndarray | None) -> np.ndarray:
    """Where ``ref`` is zero because its element sums no products at all (all False without ``terms``)."""
    ref = np.asarray(ref, dtype=np.float64)
    if terms is None:
        return np.zeros(ref.shape, dtype=bool)
    return (np.broadcast_to(terms, ref.shape) == 0) & (ref == 0)


def meets(got: np.ndarray, req: Requirement) -> np.ndarray:
    """Per element of ``req``, whether ``got`` meets its requirement (a bool array of ``req.shape``).

    A ``got`` of another shape meets nothing: every element is False.  Mirrored, for
    standalone scripts, by :data:`conformance.repro.MEETS_SOURCE` (a test keeps the two equal).
    """
    got = np.asarray(got, dtype=np.float64)
    if got.shape != req.expected.shape:
        return np.zeros(req.expected.shape, dtype=bool)
    kind = req.kind
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(got)
        # NaN on either side compares False, so a NaN bound is never met.
        within = np.abs(got - req.expected) <= req.bound
    return (
        ((kind == VALUE) & finite & within)
        | ((kind == NAN) & np.isnan(got))
        | ((kind == INF) & (got == req.expected))
        | (kind == FREE)
        | ((kind == FINITE_OR_OVERFLOW) & (~finite | within))
    )


def element_ratios(got: np.ndarray, req: Requirement) -> np.ndarray:
    """Per element, ``error / bound``: above 1 fails.  0 where the element equals its reference or
    carries no requirement; ``inf`` where a special value or an exact-tier value is wrong (no
    bound applies there).  The failure heatmaps of the report draw this."""
    got = np.asarray(got, dtype=np.float64)
    bad = ~meets(got, req)
    if req.tier == "exact":
        return np.where(bad, math.inf, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        both = np.isfinite(got) & np.isfinite(req.expected)
        error = np.abs(np.where(both, got - req.expected, 0.0))
    return error_ratios(got, req, bad, error)


def error_ratios(got: np.ndarray, req: Requirement, bad: np.ndarray, error: np.ndarray) -> np.ndarray:
    """:func:`element_ratios` with ``bad`` (not :func:`meets`) and ``|got - ref|`` already at hand."""
    kind = req.kind
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        got_finite = np.isfinite(got)
        valued = (kind == VALUE) | (kind == FINITE_OR_OVERFLOW)
        ratio = np.where(valued & got_finite, np.where(error > 0, error / req.bound, 0.0), 0.0)
        return np.where(bad & ~(valued & got_finite), math.inf, ratio)


__all__ = [
    "FINITE_OR_OVERFLOW",
    "FREE",
    "INF",
    "KINDS",
    "NAN",
    "TIERS",
    "VALUE",
    "Requirement",
    "element_ratios",
    "error_ratios",
    "meets",
    "requirement",
    "structural_zeros",
]
