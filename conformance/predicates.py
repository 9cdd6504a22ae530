"""The vocabulary a baseline entry describes a known bug with: facts of one failing case, and conditions on them.

A *fact* is a named, plain value read off a recorded failure (its cell id and
its failure record in the results file: spec, recipe, operation, verdicts), so
that the same failure matches the same way in the run that found it, in a
results file read later, and in ``conv-conformance baseline draft``.  A
*condition* is ``fact: value`` in an entry's ``"when"`` object, and an entry's
predicate holds when every one of its conditions holds.  What a value means:

* a scalar (``"float16"``, ``2``, ``true``): the fact equals it;
* a list of scalars (``["reflect", "circular"]``): the fact is one of them;
* for a number fact, a comparison string (``">1"``, ``">= 2"``, ``"!=1"``) or a
  list of them (``[">1", "<4"]``: every one holds);
* ``cell`` is matched as a glob (``fnmatch``), a list of globs meaning any;
* ``product`` holds when every product the case *failed* in is listed.

A fact the case does not have (an invalid problem has no output size) makes any
condition on it false: an entry never explains a case it cannot describe.
Conditions are parsed and checked when the baseline is read
(:func:`parse_conditions`); nothing is evaluated as code.
"""

from __future__ import annotations

import contextlib
import fnmatch
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: fact name -> (kind, what it is).  kind: "str", "int", "bool", "glob" or "products".
FACTS: dict[str, tuple[str, str]] = {
    "cell": ("glob", "the cell id, e.g. backward/2d/float16/symmetric (globs allowed)"),
    "chapter": ("str", "forward, transposed, backward, transposed-backward, special, invalid, properties"),
    "operation": ("str", "forward or backward (an invalid case: forward; a property: its name)"),
    "product": ("products", "the products the case failed in: output, grad_input, grad_weight, grad_bias"),
    "dims": ("int", "spatial dimensions: 1, 2 or 3"),
    "dtype": ("str", "float64, float32, float16 or bfloat16"),
    "transposed": ("bool", "a transposed convolution"),
    "padding_form": ("str", "none, symmetric, asymmetric, same or valid"),
    "padding_mode": ("str", "zeros, reflect, replicate or circular"),
    "layout": ("str", "contiguous, channels_last or strided"),
    "device": ("str", "cpu, cuda, cuda:1, ..."),
    "groups": ("str", "1, depthwise (groups == in_channels > 1) or grouped"),
    "bias": ("bool", "the problem has a bias"),
    "batch": ("int", "batch size"),
    "in_channels": ("int", "input channels"),
    "out_channels": ("int", "output channels"),
    "channels_per_group": ("int", "input channels per group (in_channels // groups)"),
    "min_output_size": ("int", "the smallest output extent over the axes"),
    "stride": ("int", "the largest stride over the axes"),
    "dilation": ("int", "the largest dilation over the axes"),
    "kernel": ("int", "the largest kernel extent over the axes"),
    "padding": ("int", "the largest pad (before or after, 'same' resolved) over the axes"),
    "output_padding": ("int", "the largest output_padding over the axes (0 unless transposed)"),
    "output_padding_ge_stride": ("bool", "some axis has output_padding >= stride (allowed while < dilation)"),
    "uncovered_input": ("bool", "some axis has stride > dilated kernel extent: input positions no window covers"),
    "taps_overlap": ("bool", "transposed: some output position sums two kernel taps of one input channel"),
    "data": ("str", "the data recipe's distribution (normal, exact, cancellation, special, ...)"),
    "sparse": ("bool", "the data recipe zeroes a share of the inputs"),
    "invalid_rule": ("str", "the rule an invalid-chapter problem breaks (the cell's last part)"),
    "property": ("str", "the metamorphic property of a properties-chapter case (the cell's last part)"),
}

_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+)\s*$")
_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}  # fmt: skip


class PredicateError(ValueError):
    """A condition that names no fact, or whose value cannot mean anything for that fact."""


@dataclass(frozen=True)
class Condition:
    fact: str
    value: Any  # as written in the file, for drafts and messages
    test: Callable[[Any], bool]

    def holds(self, facts: dict[str, Any]) -> bool:
        if self.fact not in facts or facts[self.fact] is None:
            return False
        return self.test(facts[self.fact])


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _number_test(where: str, value: Any) -> Callable[[Any], bool]:
    comparisons = value if isinstance(value, list) and value and all(isinstance(v, str) for v in value) else None
    if isinstance(value, str):
        comparisons = [value]
    if comparisons is not None:
        checks = []
        for text in comparisons:
            match = _COMPARISON.match(text)
            if match is None:
                raise PredicateError(f"{where}: {text!r} is not a comparison such as '>1', '>=2' or '!=1'")
            checks.append((_OPERATORS[match[1]], int(match[2])))
        return lambda fact: all(op(fact, bound) for op, bound in checks)
    return _choice_test(where, "int", value)


def _choice_test(where: str, kind: str, value: Any) -> Callable[[Any], bool]:
    choices = value if isinstance(value, list) else [value]
    if not choices or not all(_scalar_ok(kind, v) for v in choices):
        raise PredicateError(f"{where}: {value!r} is not a {kind} or a non-empty list of them")
    allowed = set(choices)
    return lambda fact: fact in allowed


def _condition(fact: str, value: Any, where: str) -> Condition:
    if fact not in FACTS:
        known = ", ".join(FACTS)
        raise PredicateError(f"{where}: unknown fact {fact!r} (known: {known})")
    kind = FACTS[fact][0]
    if kind == "int":
        test = _number_test(where, value)
    elif kind == "glob":
        globs = value if isinstance(value, list) else [value]
        if not globs or not all(isinstance(g, str) and g for g in globs):
            raise PredicateError(f"{where}: {value!r} is not a cell glob or a non-empty list of them")
        test = lambda cell: any(fnmatch.fnmatchcase(cell, g) for g in globs)  # noqa: E731
    elif kind == "products":
        allowed = _choice_test(where, "str", value)
        test = lambda products: bool(products) and all(allowed(p) for p in products)  # noqa: E731
    else:
        test = _choice_test(where, kind, value)
    return Condition(fact, value, test)


def parse_conditions(when: Any, where: str = "when") -> tuple[Condition, ...]:
    """An entry's ``"when"`` object as conditions; a :class:`PredicateError` names what is wrong and where."""
    if not isinstance(when, dict) or not when:
        raise PredicateError(f"{where}: should be a non-empty object of conditions such as {{\"dtype\": \"float16\"}}")
    return tuple(_condition(fact, value, f"{where}.{fact}") for fact, value in when.items())


def holds(conditions: tuple[Condition, ...], facts: dict[str, Any]) -> bool:
    return all(c.holds(facts) for c in conditions)


# ---------------------------------------------------------------------- facts of a case


def case_facts(cell_id: str, failure: dict[str, Any]) -> dict[str, Any]:
    """The facts of one recorded failure of cell ``cell_id`` (see :data:`FACTS`); those it lacks are left out."""
    from conformance.spec import ConvSpec

    parts = cell_id.split("@")[0].split("/")
    chapter = parts[0]
    facts: dict[str, Any] = {"cell": cell_id, "chapter": chapter, "operation": failure.get("operation")}
    if chapter == "invalid" and len(parts) == 4:
        facts["invalid_rule"] = parts[3]
    if chapter == "properties" and len(parts) == 4:
        facts["property"] = parts[3]
    verdicts = failure.get("verdicts") or {}
    # mistrusted is not failed: a product the verdict could not judge is no part of the failure
    failed = [p for p, v in verdicts.items() if isinstance(v, dict) and v.get("status") == "failed"]
    if not failed and failure.get("product"):
        failed = [failure["product"]]
    facts["product"] = tuple(failed)
    recipe = failure.get("recipe") or {}
    if isinstance(recipe, dict):
        facts["data"] = recipe.get("distribution")
        facts["sparse"] = bool(recipe.get("sparsity"))
    try:
        spec = ConvSpec.from_dict(failure["spec"])
    except Exception:  # no spec, or one too broken to build: the cell's facts are all there is
        return facts
    facts.update(_spec_facts(spec))
    return facts


def cell_facts(cell_id: str) -> dict[str, Any]:
    """The facts every case of a cell shares, read off its id alone (for "could this entry match in that cell?")."""
    parts = cell_id.split("@")[0].split("/")
    facts: dict[str, Any] = {"cell": cell_id, "chapter": parts[0]}
    if len(parts) == 4:
        if parts[1].endswith("d") and parts[1][:-1].isdigit():
            facts["dims"] = int(parts[1][:-1])
        facts["dtype"] = parts[2]
        key = {"invalid": "invalid_rule", "properties": "property"}.get(parts[0], "padding_form")
        if parts[3] not in ("any", "fastpath"):  # cells whose cases come in several padding forms
            facts[key] = parts[3]
    return facts


def could_hold(conditions: tuple[Condition, ...], facts: dict[str, Any]) -> bool:
    """Whether the conditions on the facts known here hold (the others are not judged)."""
    return all(c.holds(facts) for c in conditions if c.fact in facts)


def _spec_facts(spec: Any) -> dict[str, Any]:
    """What a problem is, each fact computed on its own so that a broken field loses only its own facts."""
    out: dict[str, Any] = {}

    def fact(name: str, compute: Callable[[], Any]) -> None:
        with contextlib.suppress(Exception):  # an invalid problem: this fact does not exist for it
            out[name] = compute()

    fact("dims", lambda: spec.dims)
    fact("dtype", lambda: str(spec.dtype))
    fact("transposed", lambda: bool(spec.transposed))
    fact("padding_form", lambda: spec.padding_form)
    fact("padding_mode", lambda: str(spec.padding_mode))
    fact("layout", lambda: str(spec.layout))
    fact("device", lambda: str(spec.device))
    fact("groups", lambda: _groups_kind(spec))
    fact("bias", lambda: bool(spec.bias))
    fact("batch", lambda: int(spec.batch))
    fact("in_channels", lambda: int(spec.in_channels))
    fact("out_channels", lambda: int(spec.out_channels))
    fact("channels_per_group", lambda: int(spec.in_channels) // int(spec.groups))
    fact("min_output_size", lambda: min(spec.output_size))
    fact("stride", lambda: max(spec.stride))
    fact("dilation", lambda: max(spec.dilation))
    fact("kernel", lambda: max(spec.kernel_size))
    fact("padding", lambda: max(max(pair) for pair in spec.pads))
    fact("output_padding", lambda: max(spec.output_padding) if spec.transposed else 0)
    fact("output_padding_ge_stride", lambda: spec.transposed and any(
        op >= s for op, s in zip(spec.output_padding, spec.stride, strict=True)))
    fact("uncovered_input", lambda: any(
        s > d * (k - 1) + 1 for s, d, k in zip(spec.stride, spec.dilation, spec.kernel_size, strict=True)))
    fact("taps_overlap", lambda: _taps_overlap(spec))
    return out


def _groups_kind(spec: Any) -> str:
    if spec.groups == 1:
        return "1"
    return "depthwise" if spec.groups == spec.in_channels else "grouped"


def _taps_overlap(spec: Any) -> bool:
    """Whether some output position of a transposed problem sums two kernel taps of one input channel: along an
    axis, taps ``gap`` apart meet when ``gap * dilation`` is a multiple of the stride that the input spans."""
    return spec.transposed and any(
        any((gap * d) % s == 0 and gap * d // s < n for gap in range(1, k))
        for s, d, k, n in zip(spec.stride, spec.dilation, spec.kernel_size, spec.input_size, strict=True)
    )


__all__ = [
    "FACTS", "Condition", "PredicateError", "case_facts", "cell_facts", "could_hold", "holds", "parse_conditions",
]  # fmt: skip
