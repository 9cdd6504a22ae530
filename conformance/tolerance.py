r"""Every comparison decision of the suite: the precision model, the error bound and the verdict.

A candidate declares, per dtype and device, *how it rounds* (:class:`Precision`);
:func:`check` compares its output with the float64 oracle under that declaration
and returns one :class:`Verdict`.  Nothing else in the suite compares numbers.
It does so in two halves: :func:`requirement` says what each element must be
(a :class:`Requirement`: a value within a bound, NaN, a matching infinity, or
nothing), without looking at the candidate; :func:`meets` applies it.  A
standalone repro script (:mod:`conformance.repro`) carries the requirement and
an inlined copy of :func:`meets`, so it judges exactly as the suite did.

Tiers
-----
* **empty** -- the output has a zero-sized axis: the shape is the whole assertion.
* **exact** -- every input is a finite integer, representable in the format the
  candidate reads it in, and the largest magnitude ``max |x|*|w| + |b|`` is at most
  ``2**p`` for the smaller significand of the accumulation and output formats.
  Then every product and every partial sum, in *any* order and with or without
  FMA, is an integer of magnitude ``<= 2**p``, hence exact: the candidate must
  return the oracle rounded to the output format bit for bit (``+0 == -0``; see
  :func:`check`).
* **real** -- per element, ``|got - ref| <= bound`` with the deterministic bound of
  :func:`error_bound`; never a statistical or hand-tuned tolerance.

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

Mistrust: a case whose reference is more than half exact zeros, and which the
candidate does not fail, is *mistrusted*, not passed (benchdnn's guard: such a
case says little about the arithmetic).  A case that fails only under the bound
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

from conformance.formats import Format, get_format, round_to

_F64 = get_format("float64")
_U64 = _F64.unit_roundoff

STATUSES = ("passed", "failed", "mistrusted")
TIERS = ("exact", "real", "empty")

#: A case whose reference has more than this fraction of exact zeros is mistrusted.
MOSTLY_ZERO = 0.5


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
class _Terms:
    """The pieces of the bound that do not depend on the element."""

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


def _terms(reduction_length: int, precision: Precision, bias: bool, input_format: str | None) -> _Terms:
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
    return _Terms(
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


def _bound(ref: np.ndarray, mag: np.ndarray, t: _Terms, subnormal_mag: np.ndarray | float) -> tuple:
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
    :func:`check` for the implicit rounding of inputs the accumulator cannot hold).
    """
    t = _terms(reduction_length, precision, bias, precision.input_rounding)
    sub = 0.0 if subnormal_mag is None else np.asarray(subnormal_mag, dtype=np.float64)
    bound, _, _ = _bound(np.asarray(ref, dtype=np.float64), np.asarray(mag, dtype=np.float64), t, sub)
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

    When this is not None, :func:`check` needs ``subnormal_mag``: the magnitude of the
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


def _finite_part_may_overflow(inputs: tuple, bias: bool, t: _Terms) -> bool:
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


def _inputs_overflow_when_rounded(inputs: tuple, fmt: str | None) -> bool:
    if fmt is None:
        return False
    for a in _arrays(inputs):
        finite = a[np.isfinite(a)]
        if np.any(np.isinf(round_to(finite, fmt))):
            return True
    return False


# ----------------------------------------------------------------- requirement

#: Per-element requirement kinds of a :class:`Requirement` (``Requirement.kind``).
VALUE = 0  # got is finite and |got - expected| <= bound
NAN = 1  # got is NaN
INF = 2  # got equals expected, an infinity
FREE = 3  # no requirement: the float64 magnitude overflowed, or the finite part may overflow
FINITE_OR_OVERFLOW = 4  # got may be +-Inf or NaN (an overflow); a finite got must be within bound
KINDS = ("value", "nan", "inf", "free", "finite_or_overflow")


@dataclass(frozen=True, eq=False)
class Requirement:
    """What each element of a candidate's output must be: the half of :func:`check` that
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
) -> Requirement:
    """The per-element :class:`Requirement` on a candidate's output, with the arguments of :func:`check`
    (which applies exactly this through :func:`meets`).  ``free`` marks elements the caller knows
    to carry no requirement (e.g. zero padding times an infinite weight, which frameworks legitimately
    either multiply, giving NaN, or skip)."""
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
    t = _terms(reduction_length, precision, bias, fmt_in)
    sub = 0.0 if subnormal_mag is None else np.asarray(subnormal_mag, dtype=np.float64)
    bound, before, m = _bound(ref, mag, t, sub)
    with np.errstate(over="ignore", invalid="ignore"):
        rounds_to_inf = _inputs_overflow_when_rounded(inputs, fmt_in)
        finite_overflow = rounds_to_inf or _finite_part_may_overflow(inputs, bias, t)
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
    return Requirement("real", ref, np.broadcast_to(bound, ref.shape).astype(np.float64), kind)


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
    return _ratios(got, req, bad, error)


def _ratios(got: np.ndarray, req: Requirement, bad: np.ndarray, error: np.ndarray) -> np.ndarray:
    kind = req.kind
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        got_finite = np.isfinite(got)
        valued = (kind == VALUE) | (kind == FINITE_OR_OVERFLOW)
        ratio = np.where(valued & got_finite, np.where(error > 0, error / req.bound, 0.0), 0.0)
        return np.where(bad & ~(valued & got_finite), math.inf, ratio)


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

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: NaN and infinities are written as strings (``"nan"``, ``"inf"``)."""
        out = asdict(self)
        out["worst_index"] = None if self.worst_index is None else list(self.worst_index)
        for name in ("expected", "got", "error", "bound", "ratio", "sum_sq_error", "zero_fraction"):
            out[name] = _json_float(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        data = dict(data)
        if data.get("worst_index") is not None:
            data["worst_index"] = tuple(data["worst_index"])
        for name in ("expected", "got", "error", "bound", "ratio", "sum_sq_error", "zero_fraction"):
            data[name] = _from_json_float(data.get(name))
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
) -> Verdict:
    """Judge a candidate's output ``got`` against the oracle's ``ref`` (magnitude ``mag``).

    ``inputs`` are the arrays that entered the product, factors first and, when
    ``bias`` is true, the bias array last (``(x, w, b)``; ``(w, grad_out)`` for a
    grad_input): the tier is certified from them, not assumed.  ``reduction_length``
    is ``K``, the products summed per output element.  ``subnormal_mag`` is needed
    only when :func:`subnormal_hazard` says so.  A shape mismatch is a failed
    verdict, never an exception.

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
    zeros = int(np.count_nonzero(ref == 0))
    zero_fraction = zeros / size if size else 0.0
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
        subnormal_mag=subnormal_mag, free=free,
    )  # fmt: skip
    ok = meets(got, req)
    if req.tier == "exact":
        verdict = _exact(got, req.expected, ~ok, error, sum_sq, precision, common)
    else:
        hazard = subnormal_hazard(inputs, precision) if subnormal_mag is None else None
        verdict = _real(got, req, ~ok, error, sum_sq, precision, hazard, common)
    bounded = (req.kind == VALUE) | (req.kind == FINITE_OR_OVERFLOW)
    if verdict.status == "passed" and req.tier == "real" and np.any(np.isinf(req.bound[bounded])):
        reason = (
            f"the declared {precision.accumulation} accumulation gives no error bound for "
            f"{reduction_length} terms, so no answer could fail"
        )
        verdict = _replace(verdict, status="mistrusted", reason=reason)
    if verdict.status == "passed" and zero_fraction > MOSTLY_ZERO:
        reason = (
            f"{zeros} of {size} reference values ({zero_fraction:.0%}) are exactly zero, "
            "so agreement says little about the arithmetic"
        )
        verdict = _replace(verdict, status="mistrusted", reason=reason)
    return verdict


def _replace(v: Verdict, **changes: Any) -> Verdict:
    return Verdict(**{**{f.name: getattr(v, f.name) for f in fields(v)}, **changes})


def _exact(got, expected, bad, error, sum_sq, precision: Precision, common) -> Verdict:
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
    reason = (
        f"value at {_where(index)}: got {_num(g, 17)}, expected exactly {_num(e, 17)} "
        f"(exact tier: integer data whose every partial sum fits {p} significand bits); "
        f"{count} of {got.size} elements differ"
    )
    return Verdict(
        "failed", "exact", worst_index=index, expected=e, got=g, error=abs(g - e) if math.isfinite(g) else math.inf,
        bound=0.0, ratio=math.inf, sum_sq_error=sum_sq, reason=reason, mismatches=count, **common,
    )  # fmt: skip


def _real(got, req: Requirement, bad, error, sum_sq, precision: Precision, hazard, common) -> Verdict:
    ref, bound, kind = req.expected, req.bound, req.kind
    got_finite = np.isfinite(got)
    # Excused: no requirement, or an overflow where one was possible.
    excused = (kind == FREE) | ((kind == FINITE_OR_OVERFLOW) & ~got_finite)
    nan_bad = bad & (kind == NAN)
    inf_bad = bad & (kind == INF)
    ratio = _ratios(got, req, bad, error)
    count, n_excused = int(np.count_nonzero(bad)), int(np.count_nonzero(excused))

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
    elif not math.isfinite(g):
        what = f"value at {where}: got {_num(g)}, expected {_num(e)} ± {_num(b, 3)} (no overflow is possible there)"
    else:
        what = f"value at {where}: got {_num(g)}, expected {_num(e)} ± {_num(b, 3)} (error/bound {r:.3g})"
    reason = f"{what}; {count} of {got.size} elements fail under {precision.describe()}"
    status = "failed"
    # Flushing or rounding a subnormal input moves a finite result; it cannot make NaN or Inf.
    if hazard is not None and not np.any(nan_bad | inf_bad | (bad & ~got_finite)):
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
    "subnormal_hazard",
]
