"""Binary floating-point formats and correctly rounded conversion to them, in float64.

numpy has no bfloat16 or TF32, and converting through float32 first would round
twice; :func:`round_to` rounds a float64 value to any format of at most 53 bits
of precision in one step (round to nearest, ties to even), with the format's
exponent range: gradual underflow to subnormals and overflow to infinity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Format:
    """A binary format: ``precision`` significand bits (implicit bit included)."""

    name: str
    precision: int
    min_exponent: int  # exponent of the smallest normal: 2**min_exponent
    max_exponent: int  # exponent of the largest finite value's leading bit

    @property
    def unit_roundoff(self) -> float:
        """Largest relative error of round-to-nearest on normal numbers: 2**-precision."""
        return 2.0**-self.precision

    @property
    def smallest_normal(self) -> float:
        return 2.0**self.min_exponent

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.min_exponent - self.precision + 1)

    @property
    def max_finite(self) -> float:
        return (2.0 - 2.0 ** (1 - self.precision)) * 2.0**self.max_exponent

    @property
    def max_exact_integer(self) -> int:
        """Every integer of magnitude <= this is exactly representable."""
        return 2**self.precision


FORMATS: dict[str, Format] = {
    "float64": Format("float64", 53, -1022, 1023),
    "float32": Format("float32", 24, -126, 127),
    # TF32: float32's exponent range with float16's 10 stored mantissa bits.
    "tf32": Format("tf32", 11, -126, 127),
    "float16": Format("float16", 11, -14, 15),
    "bfloat16": Format("bfloat16", 8, -126, 127),
}


def get_format(name: str | Format) -> Format:
    if isinstance(name, Format):
        return name
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}") from None


def round_to(values: np.ndarray, fmt: str | Format) -> np.ndarray:
    """Round float64 ``values`` to the nearest value of ``fmt`` (ties to even), as float64.

    NaN and infinities pass through; magnitudes that round above the largest
    finite value become infinities of the same sign; -0.0 keeps its sign.
    """
    fmt = get_format(fmt)
    x = np.asarray(values, dtype=np.float64)
    if fmt.precision == 53:
        return x.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        _, exponent = np.frexp(x)  # x = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
        # The spacing of fmt around x: 2**(e - p) for normals, fixed below the normal range.
        e = np.maximum(exponent - 1, fmt.min_exponent)
        quantum_exp = (e - (fmt.precision - 1)).astype(np.int64)
        scaled = np.ldexp(x, -quantum_exp)  # exact: only the exponent changes
        rounded = np.ldexp(np.rint(scaled), quantum_exp)  # np.rint rounds half to even
        rounded = np.where(np.isfinite(x), rounded, x)
        # Overflow: values at or beyond max_finite + half an ulp round to infinity.
        limit = fmt.max_finite + 2.0 ** (fmt.max_exponent - fmt.precision)
        rounded = np.where(np.isfinite(x) & (np.abs(x) >= limit), np.copysign(np.inf, x), rounded)
        rounded = np.copysign(rounded, x)  # keeps -0.0 and the sign of values that round to zero
    return rounded


def is_representable(values: np.ndarray, fmt: str | Format) -> bool:
    """True when every value of ``values`` is exactly a value of ``fmt`` (NaN counts as one)."""
    x = np.asarray(values, dtype=np.float64)
    r = round_to(x, fmt)
    return bool(np.all((r == x) | (np.isnan(r) & np.isnan(x))))


__all__ = ["FORMATS", "Format", "get_format", "is_representable", "round_to"]
