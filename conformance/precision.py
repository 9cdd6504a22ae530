r"""The precision model and the error bound: how a candidate declares it rounds, and how far
that lets its answer move.

A candidate declares, per dtype and device, *how it rounds* (:class:`Precision`).
From that declaration and the actual data this module derives the two things a
verdict (:mod:`conformance.tolerance`) rests on: whether the data puts a case in
the exact tier (:func:`certifies_exact`) and, otherwise, the deterministic
per-element bound on ``|got - ref|`` (:func:`error_bound`).  It makes no decision
about a candidate's answer; it never sees one.

The exact tier: every input is a finite integer, representable in the format the
candidate reads it in, and the largest magnitude ``max |x|*|w| + |b|`` is at most
``2**p`` for the smaller significand of the accumulation and output formats.  Then
every product and every partial sum, in *any* order and with or without FMA, is an
integer of magnitude ``<= 2**p``, hence exact.

The bound is the inner-product analysis of Higham (*Accuracy and Stability of
Numerical Algorithms*, 2nd ed., ch. 3), with underflow from the model
``fl(a op b) = (a op b)(1 + d) + e``.  With ``K`` products per output element,
``n = K + bias`` terms, ``u`` the unit roundoff of a format (``u_in`` that of the
input rounding, 0 when none; see :func:`input_format`) and
``gamma_n(u) = n*u/(1-n*u)``::

    M       = mag * (1 + 2*gamma_n(u_64))                  upper bound of the exact sum of |terms|
    oracle  = gamma_n(u_64) * M                             the float64 oracle's own error
    inputs  = (2*u_in + u_in**2) * M  +  3 * subnormal_mag  input rounding (TF32, ...), when declared
    accum   = gamma_n(u_acc) * (1 + 2*u_in + u_in**2) * M   recursive / blocked / pairwise / FMA: any order
            + U_acc * (1 + gamma_n(u_acc))                  absolute underflow of the accumulation
    before  = oracle + inputs + accum                       bounds |s_candidate - ref| before output rounding
    output  = u_out * (|ref| + before) + U_out              0 when the output format holds the accumulator's
    bound   = before + output

where ``U_acc = K * smallest_subnormal_acc / 2`` (gradual underflow: only the
products can underflow, a sum that lands in the subnormal range is exact), or
``U_acc = (2K - 1 + bias) * smallest_normal_acc`` when the candidate flushes
subnormals (every product and every addition may flush); ``U_out`` likewise is
``smallest_subnormal_out / 2`` or ``smallest_normal_out``.  The input-rounding
term is a bound, not a re-rounding of the inputs: which way TF32 hardware breaks
ties (or whether it rounds at all before the multiplier) is not observable, so the
oracle never re-rounds; the declaration means "rounds to nearest in that format",
``|x_hat - x| <= u_in |x|`` per factor.  (A unit that *truncates* to TF32 moves a
factor by up to ``2 u_in |x|`` and is outside that declaration.)  Below the smallest
normal of the input format the relative bound fails (any rounding to nearest
moves ``x`` by at most ``|x|``, a flush by exactly ``|x|``): a product with such a
factor moves by at most ``3 |x w|``, which is the ``subnormal_mag`` term (the
magnitude of the products that have a subnormal factor, see :func:`subnormal_hazard`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from conformance.formats import Format, get_format, round_to

_F64 = get_format("float64")
_U64 = _F64.unit_roundoff


# ------------------------------------------------------------------- precision


@dataclass(frozen=True)
class Precision:
    """How a candidate rounds, for one dtype on one device.

    * ``input_rounding``: the format the candidate rounds its inputs to before
      multiplying (``"tf32"`` for TF32 tensor cores), or None when the inputs
      are used as given.
    * ``accumulation``: the format of products and partial sums.
    * ``output``: the format of the returned values.
    * ``flushes_subnormals``: results below the smallest normal may become zero
      (FTZ), and inputs below it may be read as zero (DAZ).  To declare that
      float16 subnormal *inputs* are flushed, also declare
      ``input_rounding="float16"`` (a no-op on float16 data).
    """

    input_rounding: str | None
    accumulation: str
    output: str
    flushes_subnormals: bool = False

    def __post_init__(self) -> None:
        # An unknown format name is a declaration bug; say so when it is made.
        for name in (self.input_rounding, self.accumulation, self.output):
            if name is not None:
                get_format(name)

    def describe(self) -> str:
        """``"tf32 inputs, float32 accumulation, float16 output, flushes subnormals"``."""
        parts = [f"{self.input_rounding} inputs"] if self.input_rounding else []
        parts += [f"{self.accumulation} accumulation", f"{self.output} output"]
        if self.flushes_subnormals:
            parts.append("flushes subnormals")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Precision:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Precision fields: {sorted(unknown)}")
        return cls(**data)


def default_precision(dtype: str) -> Precision:
    """The honest common case: float64 and float32 round in their own format; float16
    and bfloat16 accumulate in float32 and round once to the output.  (Measured on
    PyTorch 2.13 CPU: its float16 and bfloat16 convolutions do exactly that; on a CPU
    with AVX512-BF16 its bfloat16 path also flushes subnormals, which its adapter
    must add to this declaration.)"""
    if dtype in ("float64", "float32"):
        return Precision(None, dtype, dtype)
    if dtype in ("float16", "bfloat16"):
        return Precision(None, "float32", dtype)
    raise ValueError(f"no default precision for dtype {dtype!r}")


# ----------------------------------------------------------------------- bound


def gamma(n: int, u: float) -> float:
    """Higham's ``gamma_n(u) = n*u / (1 - n*u)``; infinite once ``n*u >= 1`` (no bound)."""
    nu = n * u
    return math.inf if nu >= 1 else nu / (1 - nu)


def _holds(out: Format, acc: Format) -> bool:
    """True when every value of ``acc`` is a value of ``out`` (the final rounding is a no-op)."""
    return (
        out.precision >= acc.precision
        and out.max_exponent >= acc.max_exponent
        and out.smallest_subnormal <= acc.smallest_subnormal
    )


@dataclass(frozen=True)
class BoundTerms:
    """The pieces of the bound that do not depend on the element (names as in the module docstring):
    what :mod:`conformance.requirement` needs beside the bound itself to decide overflow."""

    n: int
    g_acc: float
    g64: float
    d_in: float
    under_acc: float
    u_out: float
    under_out: float
    rounds_output: bool
    max_acc: float
    max_out: float


def bound_terms(reduction_length: int, precision: Precision, bias: bool, input_format: str | None) -> BoundTerms:
    """The element-independent pieces for ``K = reduction_length`` products read in ``input_format``."""
    k = max(int(reduction_length), 0)
    n = k + int(bool(bias))
    acc, out = get_format(precision.accumulation), get_format(precision.output)
    u_in = get_format(input_format).unit_roundoff if input_format else 0.0
    if precision.flushes_subnormals:
        under_acc = max(2 * k - 1 + int(bool(bias)), 0) * acc.smallest_normal
        under_out = out.smallest_normal
    else:
        under_acc = k * acc.smallest_subnormal / 2
        under_out = out.smallest_subnormal / 2
    rounds_output = not _holds(out, acc)
    return BoundTerms(
        n=n,
        g_acc=gamma(n, acc.unit_roundoff),
        g64=gamma(n, _U64),
        d_in=2 * u_in + u_in * u_in,
        under_acc=under_acc,
        u_out=out.unit_roundoff if rounds_output else 0.0,
        under_out=under_out if rounds_output else 0.0,
        rounds_output=rounds_output,
        max_acc=acc.max_finite,
        max_out=out.max_finite,
    )


def bound_parts(
    ref: np.ndarray, mag: np.ndarray, t: BoundTerms, subnormal_mag: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bound, before_output, certified magnitude)`` per element; see the module docstring."""
    with np.errstate(over="ignore", invalid="ignore"):
        m = mag * (1 + 2 * t.g64)
        before = t.g64 * m + t.d_in * m + 3 * subnormal_mag
        before = before + t.g_acc * (1 + t.d_in) * m + t.under_acc * (1 + t.g_acc)
        bound = before + t.u_out * (np.abs(ref) + before) + t.under_out
    if not math.isfinite(t.g_acc):
        # n*u >= 1: the declared accumulation bounds nothing (and 0 * inf would make NaN bounds).
        bound, before = np.full(np.shape(ref), math.inf), np.full(np.shape(ref), math.inf)
    return bound, before, m


def error_bound(
    ref: np.ndarray,
    mag: np.ndarray,
    *,
    reduction_length: int,
    precision: Precision,
    bias: bool = False,
    subnormal_mag: np.ndarray | None = None,
) -> np.ndarray:
    """The per-element bound on ``|got - ref|`` for a candidate rounding as ``precision``.

    ``ref`` and ``mag`` come from the oracle; ``reduction_length`` is ``K``, the
    products summed per element; ``bias`` adds one term.  The formula is in the
    module docstring.  ``input_rounding`` counts only when declared (use
    :func:`conformance.tolerance.check` for the implicit rounding of inputs the accumulator cannot hold).
    """
    t = bound_terms(reduction_length, precision, bias, precision.input_rounding)
    sub = 0.0 if subnormal_mag is None else np.asarray(subnormal_mag, dtype=np.float64)
    bound, _, _ = bound_parts(np.asarray(ref, dtype=np.float64), np.asarray(mag, dtype=np.float64), t, sub)
    return bound


# --------------------------------------------------------------------- inputs


def input_format(inputs: tuple[np.ndarray | None, ...], precision: Precision) -> str | None:
    """The format the candidate really reads its inputs in: the declared input rounding,
    else the accumulation format when some input is not a value of it (float64 data
    fed to a float32 accumulator is rounded on the way in, declared or not), else None."""
    if precision.input_rounding:
        return precision.input_rounding
    acc = precision.accumulation
    for a in _arrays(inputs):
        finite = a[np.isfinite(a)]
        if np.any(round_to(finite, acc) != finite):
            return acc
    return None


def flush_subnormals(a: np.ndarray, fmt: str | Format) -> np.ndarray:
    """``a`` with every nonzero value below ``fmt``'s smallest normal replaced by a signed zero."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.abs(a) < get_format(fmt).smallest_normal, np.copysign(0.0, a), a)


def subnormal_hazard(inputs: tuple[np.ndarray | None, ...], precision: Precision) -> str | None:
    """The format below whose smallest normal the candidate may perturb inputs without a
    relative bound, when some input holds such a value; else None.

    When this is not None, :func:`conformance.tolerance.check` needs ``subnormal_mag``: the magnitude of the
    products with such a factor, i.e. ``mag - magnitude(flush_subnormals(each input, fmt))``.
    """
    fmt = input_format(inputs, precision)
    if fmt is None and precision.flushes_subnormals:
        fmt = precision.accumulation
    if fmt is None:
        return None
    tiny = get_format(fmt).smallest_normal
    for a in _arrays(inputs):
        small = a[(a != 0) & (np.abs(a) < tiny)]
        if small.size == 0:
            continue
        # Without flushing, values already representable in fmt are read exactly.
        if precision.flushes_subnormals or np.any(round_to(small, fmt) != small):
            return fmt
    return None


def certifies_exact(inputs: tuple[np.ndarray | None, ...], mag: np.ndarray, precision: Precision) -> bool:
    """True when the data puts the case in the exact tier (see the module docstring)."""
    arrays = _arrays(inputs)
    if not arrays:
        return False
    mag = np.asarray(mag, dtype=np.float64)
    fmt_in = input_format(inputs, precision)
    for a in arrays:
        if not np.all(np.isfinite(a)) or np.any(a != np.rint(a)):
            return False
        if fmt_in is not None and np.any(round_to(a, fmt_in) != a):
            return False
    if mag.size and not np.all(np.isfinite(mag)):
        return False
    p = min(get_format(precision.accumulation).precision, get_format(precision.output).precision)
    return mag.size == 0 or float(mag.max()) <= 2.0**p


def _arrays(inputs: tuple[np.ndarray | None, ...]) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64).ravel() for a in inputs if a is not None]


def finite_part_may_overflow(inputs: tuple[np.ndarray | None, ...], bias: bool, t: BoundTerms) -> bool:
    """Could any element's finite partial sums overflow the accumulator (or the oracle)?"""
    arrays = [a for a in inputs if a is not None]
    factors, extra = (arrays[:-1], arrays[-1]) if bias and len(arrays) > 1 else (arrays, None)

    def largest(a: np.ndarray) -> float:
        a = np.abs(np.asarray(a, dtype=np.float64))
        a = a[np.isfinite(a)]
        return float(a.max()) if a.size else 0.0

    with np.errstate(over="ignore"):
        worst = float(np.prod([largest(f) for f in factors])) if factors else 0.0
        worst = t.n * worst + (largest(extra) if extra is not None else 0.0)
        worst = worst * (1 + t.d_in) * (1 + t.g_acc) * (1 + 2 * t.g64) + t.under_acc
    return not worst <= min(t.max_acc, _F64.max_finite)


def inputs_overflow_when_rounded(inputs: tuple[np.ndarray | None, ...], fmt: str | None) -> bool:
    """True when some finite input becomes an infinity once rounded to ``fmt``."""
    if fmt is None:
        return False
    for a in _arrays(inputs):
        finite = a[np.isfinite(a)]
        if np.any(np.isinf(round_to(finite, fmt))):
            return True
    return False


__all__ = [
    "BoundTerms",
    "Precision",
    "bound_parts",
    "bound_terms",
    "certifies_exact",
    "default_precision",
    "error_bound",
    "finite_part_may_overflow",
    "flush_subnormals",
    "gamma",
    "input_format",
    "inputs_overflow_when_rounded",
    "subnormal_hazard",
]
