"""One case: make the data, run the candidate without trusting it, ask the oracle, judge.

:func:`run_case` is the only place where a candidate's answer meets the oracle;
every comparison decision inside it belongs to :mod:`conformance.tolerance`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance import oracle, tolerance
from conformance.calls import clip
from conformance.data import DataRecipe, make_grad_output, make_inputs, reduction_lengths
from conformance.formats import is_representable, round_to
from conformance.heatmap import heatmap
from conformance.spec import RULES, ConvSpec
from conformance.tolerance import Precision, Verdict

PRODUCTS = {"forward": ("output",), "backward": ("grad_input", "grad_weight", "grad_bias")}
# Worst first, for a case with several products.
_SEVERITY = ("failed", "mistrusted", "passed")


@dataclass
class CaseResult:
    """What happened to one (problem, data, operation) on one adapter."""

    status: str  # passed | failed | unsupported | mistrusted | error | crashed | hung
    spec: ConvSpec
    recipe: DataRecipe
    operation: str
    reason: str = ""
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    seconds_candidate: float = 0.0
    seconds_oracle: float = 0.0
    repro: str | None = None
    #: why a failure has no repro script, when the adapter could not give one
    repro_note: str = ""
    #: error/bound over the plane of the worst failing element (see :mod:`conformance.heatmap`)
    heatmap: dict[str, Any] | None = None
    #: the most products summed into one element of the products judged (0 when none was)
    reduction_length: int = 0
    #: what :meth:`add_evidence` needs to make the repro script of a failure run with ``evidence=False``
    pending_repro: tuple | None = field(default=None, repr=False)

    def add_evidence(self) -> CaseResult:
        """Make the repro script run_case(..., evidence=False) left out (a no-op when there is none to make)."""
        if self.pending_repro is not None:
            pending, self.pending_repro = self.pending_repro, None
            self.repro, self.repro_note = _repro(*pending)
        return self

    @property
    def ratio(self) -> float | None:
        ratios = [v.ratio for v in self.verdicts.values() if v.ratio is not None]
        return max(ratios) if ratios else None

    @property
    def near_bound(self) -> float:
        """The largest share of elements near their bound over the products (see ``Verdict.near_bound``)."""
        return max((v.near_bound for v in self.verdicts.values()), default=0.0)

    @property
    def worst_product(self) -> str | None:
        failing = [p for p, v in self.verdicts.items() if v.status != "passed"]
        return (failing or list(self.verdicts) or [None])[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "descriptor": self.spec.descriptor(),
            "spec": self.spec.to_dict(),
            "recipe": self.recipe.to_dict(),
            "operation": self.operation,
            "status": self.status,
            "product": self.worst_product,
            "reason": self.reason,
            "verdicts": {p: v.to_dict() for p, v in self.verdicts.items()},
            "seconds_candidate": self.seconds_candidate,
            "seconds_oracle": self.seconds_oracle,
            "heatmap": self.heatmap,
            "repro": self.repro,
            **({"repro_note": self.repro_note} if self.repro_note else {}),
        }


def run_case(
    caller: Any,
    spec: ConvSpec,
    recipe: DataRecipe,
    operation: str = "forward",
    *,
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
    evidence: bool = True,
) -> CaseResult:
    """Run ``spec`` with ``recipe``'s data (or the given ``data``: golden vectors) on the adapter
    behind ``caller`` (a :class:`~conformance.faults.AdapterCaller`).

    With ``evidence=False`` a failure's standalone repro script (an adapter call and a compressed copy of
    the inputs) is left for :meth:`CaseResult.add_evidence`: the session makes it only for a failure the
    results keep, not for every case of a cell that fails as its baseline entry expects.

    The oracle judges the arrays made here; the adapter gets its own copies (the
    caller makes them), and writing into one is a failure of its own, even when
    the answer is right: a backend that scribbles on its caller's memory does not conform.
    """
    capabilities = caller.capabilities
    why = capabilities.unsupported(spec, operation)
    if why:
        return CaseResult("unsupported", spec, recipe, operation, reason=why)
    precision = capabilities.precision_for(spec)
    if data is None:
        x, w, b = make_inputs(spec, recipe)
    else:  # never the caller's arrays themselves: golden vectors must not be shared mutable state
        x, w, b = (None if a is None else np.array(a, dtype=np.float64) for a in data)
    gy = make_grad_output(spec, recipe) if operation == "backward" else None
    args = (spec, x, w, b) if operation == "forward" else (spec, x, w, b, gy)

    caller.context.update(descriptor=spec.descriptor(), operation=operation)
    outcome = caller.call(operation, *args)
    result = CaseResult(outcome.status, spec, recipe, operation, seconds_candidate=outcome.seconds)
    if outcome.status != "ok":
        result.reason = _clip(outcome.message)
        if cannot_express(outcome):
            result.status = "unsupported"
        return result

    answers, problem = _answers(outcome.value, spec, operation)
    if problem:
        result.status, result.reason = "error", problem
        if outcome.modified:
            result.reason += f"; it also {modified_reason(outcome.modified)}"
        return result

    start = time.perf_counter()
    lengths = reduction_lengths(spec)
    judged = _judge(spec, operation, precision, answers, x, w, b, gy, lengths, always=bool(outcome.modified))
    result.seconds_oracle = time.perf_counter() - start
    result.verdicts = {product: verdict for product, (verdict, _) in judged.items()}
    result.reduction_length = max((lengths["forward" if p == "output" else p] for p in judged), default=0)
    worst = min((v.status for v in result.verdicts.values()), key=_SEVERITY.index, default="passed")
    result.status = worst
    product = result.worst_product
    if worst != "passed":
        result.reason = _clip(f"{product}: {judged[product][0].reason}")
    if outcome.modified:
        note = modified_reason(outcome.modified)
        result.reason = f"{result.reason}; it also {note}" if worst == "failed" else note
        result.status = "failed"
    if result.status == "failed" and product is not None and judged[product][1] is not None:
        requirement = judged[product][1]
        if result.verdicts[product].failed:
            ratios = tolerance.element_ratios(answers[product], requirement)
            result.heatmap = heatmap(ratios, result.verdicts[product].worst_index, product)
        result.pending_repro = (caller, spec, recipe, operation, product, requirement, (x, w, b, gy), result.reason)
        if evidence:
            result.add_evidence()
    return result


def modified_reason(names: tuple[str, ...]) -> str:
    """``"modified its input x"``: what the runner says of an adapter that wrote into what it was given."""
    inputs = " and ".join(names)
    return (f"modified its input{'s' if len(names) > 1 else ''} {inputs} (an adapter must not write into what "
            "it is given: the caller's memory is not the backend's scratch space)")  # fmt: skip


def _clip(text: str) -> str:
    """An adapter's text as a reason: long enough to act on, never a whole tensor printed into a message."""
    return clip(text, 4000)


def cannot_express(outcome: Any) -> bool:
    """The adapter raised :class:`adapters.base.CannotExpress`: nothing reached the backend."""
    if outcome.status != "error":
        return False
    kind = outcome.message.split(":", 1)[0].strip()
    return kind.rsplit(".", 1)[-1] == "CannotExpress"


# ------------------------------------------------------------------- answers


def _answers(value: Any, spec: ConvSpec, operation: str) -> tuple[dict[str, Any], str]:
    """The candidate's arrays by product, or a description of how it broke the adapter contract."""
    if operation == "forward":
        values: tuple = (value,)
    elif isinstance(value, (tuple, list)) and len(value) == 3:
        values = tuple(value)
    else:
        return {}, f"backward returned {type(value).__name__}, not a (grad_input, grad_weight, grad_bias) tuple"
    answers = {}
    for product, v in zip(PRODUCTS[operation], values):
        if product == "grad_bias" and not spec.bias:
            if v is not None:
                return {}, "grad_bias returned for a problem without bias"
            continue
        if not isinstance(v, np.ndarray) or not np.issubdtype(v.dtype, np.floating):
            kind = type(v).__name__ if not isinstance(v, np.ndarray) else f"ndarray of {v.dtype}"
            return {}, f"{product} returned {kind}, not a floating numpy array"
        answers[product] = v
    return answers, ""


# -------------------------------------------------------------------- judge


def _judge(spec, operation, precision: Precision, answers, x, w, b, gy, lengths: dict[str, int], always: bool = False
           ) -> dict[str, tuple[Verdict, Any]]:
    """Per product, its verdict and (when it failed, or ``always``) its per-element requirement; ``lengths``
    are :func:`~conformance.data.reduction_lengths` of ``spec``."""
    # Elements no product reaches are zero by structure: tolerance checks them exactly
    # and does not count them as data when it weighs mistrust.
    terms = oracle.term_counts(spec)
    if operation == "forward":
        ref = {"output": oracle.forward(spec, x, w, b)}
        mag = {"output": oracle.magnitude(spec, x, w, b)}
        products = {"output": ((x, w, b) if spec.bias else (x, w), lengths["forward"], spec.bias)}
    else:
        gx, gw, gb = oracle.backward(spec, x, w, gy)
        mgx, mgw, mgb = oracle.backward_magnitude(spec, x, w, gy)
        ref = {"grad_input": gx, "grad_weight": gw, "grad_bias": gb}
        mag = {"grad_input": mgx, "grad_weight": mgw, "grad_bias": mgb}
        products = {
            "grad_input": ((w, gy), lengths["grad_input"], False),
            "grad_weight": ((x, gy), lengths["grad_weight"], False),
            "grad_bias": ((gy,), lengths["grad_bias"], False),
        }
    judged = {}
    for product, got in answers.items():
        inputs, k, bias = products[product]
        expected = ref[product]
        if got.shape != expected.shape:
            verdict = tolerance.check(got, expected, mag[product], inputs=inputs, reduction_length=k,
                                      precision=precision, bias=bias)  # fmt: skip
            judged[product] = (verdict, None)
            continue
        finite = got[np.isfinite(got)]
        if not is_representable(finite, precision.output):
            verdict = _not_in_format(got, expected, precision)
            judged[product] = (verdict, None)
            continue
        sub, free = _subnormal_terms(spec, operation, product, inputs, precision, expected, mag[product], x, w, b, gy)
        if product == "output":
            padding = _padding_meets_nonfinite_weight(spec, x, w)
            free = padding if free is None else (free if padding is None else free | padding)
        kwargs = {"inputs": inputs, "reduction_length": k, "precision": precision, "bias": bias,
                  "subnormal_mag": sub, "free": free, "terms": terms[product]}  # fmt: skip
        verdict = tolerance.check(got, expected, mag[product], **kwargs)
        wanted = verdict.failed or always
        requirement = tolerance.requirement(expected, mag[product], **kwargs) if wanted else None
        judged[product] = (verdict, requirement)
    return judged


def _not_in_format(got: np.ndarray, expected: np.ndarray, precision: Precision) -> Verdict:
    """A value the declared output format cannot hold: the backend returned another dtype than it declared."""
    finite = np.where(np.isfinite(got), got, 0.0)
    bad = round_to(finite, precision.output) != finite
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), got.shape))
    reason = (
        f"value at {index}: got {float(got[index])!r}, which is not a {precision.output} value: the output "
        f"is not in the declared output format ({int(bad.sum())} of {got.size} elements)"
    )
    return Verdict("failed", "real", got.size, index, float(expected[index]), float(got[index]), None, None,
                   float("inf"), float("nan"), 0.0, reason, mismatches=int(bad.sum()))  # fmt: skip


def _padding_meets_nonfinite_weight(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """Outputs where a zero of the padding meets an infinite or NaN weight.

    IEEE says ``0 * inf`` is NaN, and a backend that multiplies the padding gives
    NaN there; one that skips padded taps (as PyTorch's float16 and bfloat16 CPU
    paths do) gives the finite sum of the real taps.  Neither is wrong, so those
    outputs carry no requirement; everywhere else a NaN is still demanded.
    """
    if spec.transposed or spec.padding_mode != "zeros" or np.all(np.isfinite(w)):
        return None
    if not any(p for pair in spec.pads for p in pair):
        return None
    nonfinite = (~np.isfinite(w)).astype(np.float64)
    # Per output: nonfinite weights met by real input positions, against all nonfinite taps of its channel.
    real = oracle.forward(spec.replace(bias=False), np.ones(x.shape), nonfinite, None)
    every = nonfinite.reshape(nonfinite.shape[0], -1).sum(axis=1).reshape((1, -1) + (1,) * spec.dims)
    return every - real > 0


def _subnormal_terms(spec, operation, product, inputs, precision, ref, mag, x, w, b, gy):
    """Where the declared precision may flush or round subnormal inputs without a relative bound
    (see tolerance.subnormal_hazard): the magnitude of the products with such a factor, and the
    outputs whose special value depends on it (``inf * subnormal`` is inf, but NaN once flushed)."""
    fmt = tolerance.subnormal_hazard(inputs, precision)
    if fmt is None:
        return None, None

    def flush(a):
        return None if a is None else tolerance.flush_subnormals(a, fmt)

    if operation == "forward":
        flushed_ref = oracle.forward(spec, flush(x), flush(w), flush(b))
        flushed_mag = oracle.magnitude(spec, flush(x), flush(w), flush(b))
    else:
        index = PRODUCTS["backward"].index(product)
        flushed_ref = oracle.backward(spec, flush(x), flush(w), flush(gy))[index]
        flushed_mag = oracle.backward_magnitude(spec, flush(x), flush(w), flush(gy))[index]
    with np.errstate(invalid="ignore"):
        nan_differs = np.isnan(ref) != np.isnan(flushed_ref)
        inf_differs = (np.isinf(ref) | np.isinf(flushed_ref)) & (ref != flushed_ref)
        return mag - flushed_mag, nan_differs | inf_differs


# -------------------------------------------------------------------- repro


def _repro(caller, spec, recipe, operation, product, requirement, inputs, reason) -> tuple[str | None, str]:
    """The standalone script and "", or None and why there is none (repro_source() is optional and untrusted)."""
    from conformance.repro import repro_script

    source, why = caller.repro_source(spec, operation)
    if source is None:
        return None, why
    x, w, b, gy = inputs
    arrays = {"x": x, "w": w, "b": b}
    if operation == "backward":
        arrays["grad_out"] = gy
    try:
        script = repro_script(
            adapter_name=caller.info().name, backend_source=source, spec_descriptor=spec.descriptor(),
            operation=operation, product=product, inputs=arrays, requirement=requirement, recipe=recipe.describe(),
            reason=reason,
        )  # fmt: skip
    except ValueError as error:  # the adapter's source cannot serve a script (no candidate(), not Python)
        return None, f"no standalone script: repro_source() gave unusable source: {error}"
    return script, ""


def run_invalid_case(caller: Any, spec: ConvSpec, rule: str) -> CaseResult:
    """An invalid problem must be rejected: raising passes, answering fails (crashes and hangs stay themselves)."""
    recipe = DataRecipe()
    x, w, b = _shaped_like(spec)
    caller.context.update(descriptor=_descriptor(spec), operation="forward")
    outcome = caller.call("forward", spec, x, w, b)
    result = CaseResult(outcome.status, spec, recipe, "forward", seconds_candidate=outcome.seconds)
    if cannot_express(outcome):
        result.status, result.reason = "unsupported", _clip(f"the adapter cannot pass this on: {outcome.message}")
    elif outcome.status == "error":
        first = outcome.message.splitlines()[0] if outcome.message else "an exception"
        result.status, result.reason = "passed", _clip(f"rejected ({rule}): {first}")
    elif outcome.status == "ok":
        value = outcome.value
        answer = f"an output of shape {value.shape}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
        result.status = "failed"
        result.reason = f"answered an invalid problem ({rule}: {RULES[rule]}) with {answer}"
    else:
        result.reason = _clip(outcome.message)
    return result


def _descriptor(spec: ConvSpec) -> str:
    try:
        return spec.descriptor()
    except Exception:  # an invalid problem may not even print
        return repr(spec)


def _shaped_like(spec: ConvSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Ones of the shapes the invalid problem names, with impossible sizes clamped so they exist."""

    def ones(shape: Any) -> np.ndarray:
        try:
            return np.ones(tuple(max(int(n), 0) for n in shape))
        except (TypeError, ValueError):
            return np.ones((1,))

    def shape_of(name: str) -> Any:
        try:
            return getattr(spec, name)
        except Exception:  # an invalid spec may not even have a shape
            return (1,)

    b = ones(shape_of("bias_shape")) if spec.bias else None
    return ones(shape_of("input_shape")), ones(shape_of("weight_shape")), b
__all__ = ["PRODUCTS", "CaseResult", "run_case", "run_invalid_case"]
