"""What every adapter's unit tests share: one case judged against the oracle, forward or backward.

The suite's chapters judge through the untrusting caller (conformance.runner); an adapter's own unit tests
call the adapter directly and need only the verdicts, product by product.
"""

from __future__ import annotations

from typing import Any

from conformance import oracle, tolerance
from conformance.data import DataRecipe, make_grad_output, make_inputs, reduction_lengths
from conformance.spec import ConvSpec

#: The factors each backward product multiplies, for the bound's input-rounding term.
_FACTORS = ("grad_input", "grad_weight", "grad_bias")


def judge(adapter: Any, spec: ConvSpec, recipe: DataRecipe, operation: str = "forward") -> dict[str, tolerance.Verdict]:
    """``{"output": verdict}`` for forward; ``{"grad_input": ..., "grad_weight": ..., "grad_bias": ...}`` for
    backward (grad_bias only with a bias, and then the adapter must return None for it without one)."""
    x, w, b = make_inputs(spec, recipe)
    precision = adapter.capabilities().precision_for(spec)
    lengths = reduction_lengths(spec)
    if operation == "forward":
        got = adapter.forward(spec, x, w, b)
        return {"output": tolerance.check(
            got, oracle.forward(spec, x, w, b), oracle.magnitude(spec, x, w, b),
            inputs=(x, w, b) if spec.bias else (x, w), reduction_length=lengths["forward"],
            precision=precision, bias=spec.bias,
        )}  # fmt: skip
    gy = make_grad_output(spec, recipe)
    got = adapter.backward(spec, x, w, b, gy)
    refs = oracle.backward(spec, x, w, gy)
    mags = oracle.backward_magnitude(spec, x, w, gy)
    factors = {"grad_input": (w, gy), "grad_weight": (x, gy), "grad_bias": (gy,)}
    verdicts = {}
    for product, g, ref, mag in zip(_FACTORS, got, refs, mags):
        if ref is None:
            assert g is None, f"{product} should be None without a bias"
            continue
        verdicts[product] = tolerance.check(g, ref, mag, inputs=factors[product], reduction_length=lengths[product],
                                            precision=precision)  # fmt: skip
    return verdicts


__all__ = ["judge"]
