"""Test tensors from a small recipe: a distribution, a scale, a sparsity and a seed.

A :class:`DataRecipe` is a handful of numbers that Hypothesis draws and shrinks
(towards ``DataRecipe("ones")``: every tensor all ones); numpy's Generator turns
it into tensors of any size, so a million-element problem costs one vectorized
pass per tensor, never a million Hypothesis draws.

Every value is exactly representable in the problem's dtype (it went through
:func:`conformance.formats.round_to`), so a candidate that converts its inputs
to the dtype loses nothing.  The value ranges are dtype-aware, from the longest
sums of the problem (:func:`reduction_lengths`):

* exact tier (``ones``, ``integers``): integers in ``[-R, R]`` with ``R`` chosen
  per tensor so that the worst case of every sum, ``K * max|x| * max|w| + max|b|``,
  fits the dtype's exact-integer range (2^53, 2^24, 2^11, 2^8): every partial sum
  is then exact in any order, and the rounded oracle must equal the candidate
  bit for bit;
* real tier (``real``, ``cancellation``): spread exponents, or large terms of
  both signs that nearly cancel, kept far enough inside the dtype's range that
  no sum can overflow;
* special tier (``special``): real data with a few NaN, +-Inf, -0.0 and
  subnormals of the dtype placed by the seeded Generator.

The verdict module certifies exactness (or the absence of overflow) from the
actual data; the ranges here only have to make that likely, and where even
``R = 1`` cannot fit they fall back to sparsity tied to the sum's length.  One
exception: grad_output is never thinned, for the long sums of grad_weight and
grad_bias, below what grad_input's short sums need to be mostly nonzero (a mostly
zero reference is mistrusted, which says less than a real-tier verdict on those two).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from conformance.formats import FORMATS, Format, round_to
from conformance.oracle import axis_terms
from conformance.spec import ConvSpec

#: Distributions, simplest first: examples shrink towards the front.
DISTRIBUTIONS: tuple[str, ...] = ("ones", "integers", "real", "cancellation", "special")

#: The comparison tier each distribution's data is judged in.
TIERS: dict[str, str] = {
    "ones": "exact",
    "integers": "exact",
    "real": "real",
    "cancellation": "real",
    "special": "special",
}

#: Largest accepted ``scale``: 2**scale is far past every budget already.
MAX_SCALE = 60

# Real-tier sums stay below max_finite * 2**-4, so a candidate's partial sums,
# in any order and with a little rounding growth, cannot reach infinity.
_REAL_HEADROOM = 2.0**-4
# Relative size of the noise on cancellation data: big enough to survive
# rounding to bfloat16 (8 bits), small enough that the big parts dominate.
_CANCELLATION_NOISE = 0.25
# A tensor that needs sparsity gets half the density the budget allows, so that
# the binomial count of nonzero terms overshoots the budget only in far tails.
_DENSITY_MARGIN = 0.5
# From this scale on, real and cancellation data also have loud and quiet regions: x's exponents fall
# along a random monotone ramp over its spatial positions, by up to the scale (see _envelope).
ENVELOPE_FROM_SCALE = 8
# Separate Generator streams per tensor: changing one tensor's shape leaves the
# others' values alone, and grad_output never repeats x.
_STREAMS = {"x": 0, "w": 1, "b": 2, "grad_output": 3}
# A recipe's sparsity thins x and grad_output (activations and gradients are the
# sparse tensors in practice), never below this many expected nonzero terms per
# sum: a reference that is mostly zeros is mistrusted, so data that makes one is
# wasted (benchdnn ties density to the accumulation length for the same reason).
_MIN_NONZERO_TERMS = 4


@dataclass(frozen=True)
class DataRecipe:
    """How to fill a problem's tensors; see the module docstring for the tiers.

    ``scale`` sets the magnitude: integers reach ``2**scale`` (2 at least: with
    only +-1, half of all two-term sums cancel to an exact zero), real data has
    exponents in ``[-scale, scale]``, cancellation terms are about ``2**scale``;
    each is capped where the problem's sums would not fit the dtype.
    ``sparsity`` is the fraction of x, w and grad_output elements set to zero.
    """

    distribution: str = "ones"
    sparsity: float = 0.0
    seed: int = 0
    scale: int = 0

    def __post_init__(self) -> None:
        if self.distribution not in TIERS:
            raise ValueError(f"distribution={self.distribution!r}, but should be one of {DISTRIBUTIONS}")
        if isinstance(self.sparsity, bool) or not (isinstance(self.sparsity, (int, float)) and 0 <= self.sparsity < 1):
            raise ValueError(f"sparsity={self.sparsity!r}, but should be in [0, 1)")
        if isinstance(self.seed, bool) or not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed={self.seed!r}, but should be a non-negative int")
        if isinstance(self.scale, bool) or not (isinstance(self.scale, int) and 0 <= self.scale <= MAX_SCALE):
            raise ValueError(f"scale={self.scale!r}, but should be an int in [0, {MAX_SCALE}]")
        object.__setattr__(self, "sparsity", float(self.sparsity))

    @property
    def tier(self) -> str:
        return TIERS[self.distribution]

    def describe(self) -> str:
        """``integers scale=2 sparsity=0.5 seed=17``: only what affects the data."""
        parts = [self.distribution]
        if self.distribution != "ones" and self.scale:
            parts.append(f"scale={self.scale}")
        if self.sparsity:
            parts.append(f"sparsity={self.sparsity:g}")
        parts.append(f"seed={self.seed}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.describe()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataRecipe:
        known = {"distribution", "sparsity", "seed", "scale"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DataRecipe fields: {sorted(unknown)}")
        return cls(**data)


# ------------------------------------------------------------- sum lengths


def reduction_lengths(spec: ConvSpec) -> dict[str, int]:
    """The most products summed into one element of each product of ``spec``.

    Keys ``forward``, ``grad_input``, ``grad_weight`` and ``grad_bias``; the
    bias term of the forward sum is not counted.  Counted per axis from the
    actual tap positions (the count factorizes over axes, so the product of the
    per-axis maxima is the maximum), which makes the numbers exact rather than
    bounds: a transposed convolution whose stride and dilation share a factor
    puts more taps on one output than ``ceil(kernel / stride)``, and with
    reflect, replicate or circular padding one input element is read through
    several padded positions, so its gradient gathers more terms than
    ``C_out/G * prod(kernel)``.
    """
    spec.validate()
    cin_g = spec.in_channels // spec.groups
    cout_g = spec.out_channels // spec.groups
    counts = [[int(c.max(initial=0)) for c in axis_terms(spec, a)] for a in range(spec.dims)]
    return {
        "forward": cin_g * math.prod(c[0] for c in counts),
        "grad_input": cout_g * math.prod(c[1] for c in counts),
        "grad_weight": spec.batch * math.prod(c[2] for c in counts),
        "grad_bias": spec.batch * math.prod(spec.output_size),
    }


# ------------------------------------------------------------------ ranges


@dataclass(frozen=True)
class _Plan:
    """Per tensor: the largest magnitude, the smallest exponent, and the density cap."""

    magnitude: dict[str, float]
    low: dict[str, int]
    density: dict[str, float]


def _plan(spec: ConvSpec, recipe: DataRecipe) -> _Plan:
    """Largest magnitudes (powers of two) such that every worst-case sum fits.

    Forward comes first: x and w keep the largest values that fit its sum, and
    grad_output gives way before x or w do for the backward sums.  Where even
    the smallest magnitudes do not fit, the tensor whose elements are distinct
    in every term (w for forward, grad_output for backward) gets sparse.
    """
    fmt = FORMATS[spec.dtype]
    lengths = _lengths_or_ones(spec)
    exact = recipe.tier == "exact"
    if exact:
        limit = float(fmt.max_exact_integer)
        want, floor = (0 if recipe.distribution == "ones" else max(recipe.scale, 1)), 0
    else:
        limit = fmt.max_finite * _REAL_HEADROOM
        # Keep every product of two values normal: values >= 2**floor_low.
        floor_low = fmt.min_exponent // 2 + 1
        want, floor = recipe.scale + 1, floor_low + 1
    level = {"x": want, "w": want, "grad_output": want}
    bias_floor = 2.0**floor if spec.bias else 0.0

    def mag(name: str) -> float:
        return 2.0 ** level[name]

    def shrink(name: str) -> bool:
        if level[name] > floor:
            level[name] -= 1
            return True
        return False

    forward = lengths["forward"]
    while forward * mag("x") * mag("w") + bias_floor > limit:
        if not shrink("x" if level["x"] >= level["w"] else "w") and not shrink("w"):
            break
    while lengths["grad_bias"] * mag("grad_output") > limit and shrink("grad_output"):
        pass
    for length, other in ((lengths["grad_input"], "w"), (lengths["grad_weight"], "x")):
        while length * mag("grad_output") * mag(other) > limit:
            if not shrink("grad_output") and not shrink(other):
                break

    magnitude = {name: mag(name) for name in level}
    density = {"x": 1.0, "w": 1.0, "grad_output": 1.0}
    used = forward * magnitude["x"] * magnitude["w"]
    if used + bias_floor > limit:
        density["w"] = _DENSITY_MARGIN * (limit - bias_floor) / used
    cap = {}
    for product, other in (("grad_input", magnitude["w"]), ("grad_weight", magnitude["x"]), ("grad_bias", 1.0)):
        used_backward = lengths[product] * magnitude["grad_output"] * other
        cap[product] = min(1.0, _DENSITY_MARGIN * limit / used_backward) if used_backward > limit else 1.0
    density["grad_output"] = min(cap.values())
    if exact:
        # The long sums of grad_weight and grad_bias (batch x positions) would thin grad_output
        # until most grad_input sums (a few taps each) had no nonzero term: a mostly zero, so
        # mistrusted, grad_input.  Those two then leave the exact tier instead (the verdict
        # certifies the tier from the data, so they are judged under the bound), never overflow.
        need = min(1.0, _MIN_NONZERO_TERMS / max(lengths["grad_input"] * density["w"], 1.0))
        density["grad_output"] = min(cap["grad_input"], max(density["grad_output"], need))

    # The bias takes what the forward sum leaves, up to the wanted magnitude.
    spare = limit - used
    if not spec.bias:
        magnitude["b"] = 0.0
    elif spare < bias_floor:
        magnitude["b"] = bias_floor
    elif exact:
        magnitude["b"] = float(min(2**want, math.floor(spare)))
    else:
        magnitude["b"] = 2.0 ** min(want, math.floor(math.log2(spare)))
    low = {name: min(-recipe.scale, math.floor(math.log2(m)) - 1) for name, m in magnitude.items() if m > 0}
    if not exact:
        low = {name: max(v, floor_low) for name, v in low.items()}
    return _Plan(magnitude, low, density)


def _lengths_or_ones(spec: ConvSpec) -> dict[str, int]:
    # An invalid problem has no sums to protect, but error-conformance tests
    # still need tensors of its shapes to hand to the candidate.
    if not spec.is_valid():
        return dict.fromkeys(("forward", "grad_input", "grad_weight", "grad_bias"), 1)
    return reduction_lengths(spec)


# ------------------------------------------------------------------ tensors


def make_inputs(spec: ConvSpec, recipe: DataRecipe) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(x, w, b)`` for ``spec`` filled as ``recipe`` says; ``b`` is None without bias.

    float64, C-contiguous, every value exactly representable in ``spec.dtype``,
    and the same arrays every time for the same ``(spec, recipe)``.
    """
    plan = _plan(spec, recipe)
    x = _tensor(spec, recipe, plan, "x", spec.input_shape)
    w = _tensor(spec, recipe, plan, "w", spec.weight_shape)
    b = _tensor(spec, recipe, plan, "b", spec.bias_shape) if spec.bias_shape is not None else None
    return x, w, b


def make_grad_output(spec: ConvSpec, recipe: DataRecipe) -> np.ndarray:
    """The gradient at the output (``spec.output_shape``) for backward checks.

    Drawn from its own stream of ``recipe.seed``, with magnitudes chosen so that
    grad_input, grad_weight and grad_bias sums fit the dtype as the forward does.
    """
    return _tensor(spec, recipe, _plan(spec, recipe), "grad_output", spec.output_shape)


def _tensor(spec: ConvSpec, recipe: DataRecipe, plan: _Plan, name: str, shape: tuple[int, ...]) -> np.ndarray:
    fmt = FORMATS[spec.dtype]
    rng = np.random.default_rng([recipe.seed, _STREAMS[name]])
    size = math.prod(shape)
    top = plan.magnitude[name]
    kind = recipe.distribution
    if kind == "ones":
        values = np.ones(size)
    elif kind == "integers":
        # Nonzero magnitudes: zeros come only from the sparsity knob, where they are counted.
        signs = rng.integers(0, 2, size=size) * 2.0 - 1.0
        values = signs * rng.integers(1, max(int(top), 1), size=size, endpoint=True)
    elif kind == "cancellation" and name != "b":
        values = _cancellation(rng, size, top, alternate=name != "x")
    else:
        values = _spread(rng, size, plan.low[name], top)
    if name == "x" and kind in ("real", "cancellation") and recipe.scale >= ENVELOPE_FROM_SCALE:
        values = _envelope(rng, values, shape, recipe.scale, plan.low[name])
    if name != "b":
        keep = plan.density[name]
        if name in ("x", "grad_output") and recipe.sparsity:
            keep = min(keep, _sparse_keep(spec, recipe, plan)[name])
        if keep < 1.0:
            values[rng.random(size) >= keep] = 0.0
    values = round_to(values, fmt)
    if kind == "special":
        _place_specials(rng, values, fmt, count=_special_count(name, size))
    return np.ascontiguousarray(values.reshape(shape))


def _sparse_keep(spec: ConvSpec, recipe: DataRecipe, plan: _Plan) -> dict[str, float]:
    """The fraction of x and of grad_output that the recipe's sparsity keeps.

    At least enough that the longest sum of every product expects ``_MIN_NONZERO_TERMS``
    nonzero terms: x * w (forward), grad_output * w (grad_input), and x * grad_output
    (grad_weight), where both factors are thinned, so their densities multiply.
    Both x and grad_output are kept the same whatever the operation, so that a
    problem's data does not depend on which of its products is checked.
    """
    want = 1.0 - recipe.sparsity
    if not spec.is_valid():
        return {"x": want, "grad_output": want}
    lengths = reduction_lengths(spec)

    def floor(terms: float) -> float:
        return min(1.0, _MIN_NONZERO_TERMS / max(terms, 1.0))

    w = plan.density["w"]
    x = max(want, min(1.0, floor(lengths["forward"]) / w))
    gy = max(want, min(1.0, floor(lengths["grad_input"]) / w))
    joint = floor(lengths["grad_weight"])
    if x * gy < joint:
        # Share the shortfall evenly; whatever one cannot take (it is capped at 1) the other does.
        grow = math.sqrt(joint / (x * gy))
        x, gy = min(1.0, x * grow), min(1.0, gy * grow)
        x, gy = min(1.0, max(x, joint / gy)), min(1.0, max(gy, joint / x))
    return {"x": x, "grad_output": gy}


def _spread(rng: np.random.Generator, size: int, low: int, top: float) -> np.ndarray:
    """``sign * [1, 2) * 2**e`` with e uniform in ``[low, log2(top) - 1]``: magnitudes up to ``top``."""
    high = max(round(math.log2(top)) - 1, low)
    signs = rng.integers(0, 2, size=size) * 2.0 - 1.0
    return signs * np.ldexp(rng.uniform(1.0, 2.0, size=size), rng.integers(low, high, size=size, endpoint=True))


def _envelope(rng: np.random.Generator, values: np.ndarray, shape: tuple[int, ...], span: int, low: int) -> np.ndarray:
    """``values`` (x, flat) scaled down by ``2**-e`` with ``e`` rising along a random monotone ramp
    over the spatial positions (shared by every batch element and channel), up to ``span``.

    Real signals have loud and quiet regions.  An output element whose window lies in a quiet
    one sums only small products, so its componentwise bound is small, while a normwise-accurate
    algorithm (FFT, Winograd) spreads the rounding error of the loud region over every element:
    this is the data that tells the two apart.  No value drops below ``2**low`` (the plan's floor
    keeps every product normal), and none grows.
    """
    spatial = shape[2:]
    if not spatial or values.size == 0:
        return values
    ramp = np.zeros(spatial)
    for axis, n in enumerate(spatial):
        # A random monotone profile per axis, rising or falling.
        profile = np.sort(rng.random(n))
        if rng.integers(0, 2):
            profile = profile[::-1]
        ramp = ramp + profile.reshape([n if a == axis else 1 for a in range(len(spatial))])
    drop = np.rint(span * ramp / len(spatial))
    magnitude = np.abs(values).reshape(shape)
    with np.errstate(divide="ignore"):
        room = np.floor(np.log2(np.where(magnitude > 0, magnitude, 1.0))) - low
    scaled = values.reshape(shape) * np.exp2(-np.clip(drop, 0, np.maximum(room, 0)))
    return scaled.reshape(-1)


def _cancellation(rng: np.random.Generator, size: int, top: float, *, alternate: bool) -> np.ndarray:
    """Terms near ``top/2`` that cancel in sums.

    x is all positive and nearly constant; w and grad_output alternate in sign
    along their last axes, so each sum adds pairs ``a*(B + e1) - a'*(B + e2)``
    whose big parts cancel and whose noise survives: the result is far smaller
    than its magnitude, which is where a too-short accumulator shows.
    """
    big = top / 2
    values = big * (1.0 + _CANCELLATION_NOISE * rng.random(size))
    if alternate:
        values[1::2] *= -1.0
    return values


def _special_count(name: str, size: int) -> int:
    # A few, not many: one of each kind once a tensor has room for them, and
    # at most one in the bias (a NaN there already poisons a whole channel).
    if name == "b":
        return min(1, size // 4)
    return min(len(_SPECIAL_KINDS), -(-size // 4))


_SPECIAL_KINDS = ("nan", "inf", "-inf", "-0", "subnormal")


def _place_specials(rng: np.random.Generator, values: np.ndarray, fmt: Format, count: int) -> None:
    if count <= 0:
        return
    where = rng.choice(values.size, size=count, replace=False)
    kinds = rng.permutation(len(_SPECIAL_KINDS))[:count]
    if count == values.size:
        # Every element special: a -0.0 would zero every product it enters, and a case whose
        # reference is all zeros is mistrusted.  The other kinds still come in turn.
        kinds = np.where(kinds == _SPECIAL_KINDS.index("-0"), _SPECIAL_KINDS.index("subnormal"), kinds)
    for position, kind in zip(where, kinds):
        values[position] = _special_value(rng, _SPECIAL_KINDS[kind], fmt)


def _special_value(rng: np.random.Generator, kind: str, fmt: Format) -> float:
    if kind == "nan":
        return math.nan
    if kind == "inf":
        return math.inf
    if kind == "-inf":
        return -math.inf
    if kind == "-0":
        return -0.0
    # A random multiple of the smallest subnormal below the smallest normal.
    steps = int(rng.integers(1, 2 ** (fmt.precision - 1) - 1, endpoint=True))
    sign = -1.0 if rng.integers(0, 2) else 1.0
    return sign * steps * fmt.smallest_subnormal


__all__ = [
    "DISTRIBUTIONS",
    "TIERS",
    "DataRecipe",
    "make_grad_output",
    "make_inputs",
    "reduction_lengths",
]
