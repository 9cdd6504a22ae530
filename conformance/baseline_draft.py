"""Draft baseline entries from a run's unexpected failures: a starting point a person then narrows and explains.

Each failing cell gives one entry, drawn from its minimal failing case (the
last one recorded: Hypothesis replays it last).  The predicate names what the
cell is (chapter, dims, dtype, padding form) and what the minimal problem has
that a simpler one would not: shrinking drives every parameter toward its
simplest value (stride 1, dilation 1, one group, no bias...), so a minimal
problem that still has ``stride > 1`` needs it to fail.  The signature holds the
failing status and products, with the ratio bound at four times the one seen.
The scope pins the backend versions the run reported.  ``reason`` is left for
a person to replace with what the backend does wrong and a one-line reproducer.
"""

from __future__ import annotations

import math
from typing import Any

from conformance.baseline import BAD, as_number
from conformance.predicates import case_facts

#: Facts copied as they are: what the cell and the problem are.
_AS_IS = ("chapter", "dims", "dtype", "padding_form", "groups", "layout", "invalid_rule", "property")
#: Number facts kept as "> simplest" when the minimal problem has more than the simplest value.
_BEYOND_SIMPLEST = {"stride": 1, "dilation": 1, "kernel": 1, "batch": 1, "output_padding": 0}
#: Relations kept when they hold in the minimal problem.
_RELATIONS = ("output_padding_ge_stride", "uncovered_input")


def draft_entry(cell_id: str, adapter: str, failure: dict[str, Any], versions: dict[str, str], *,
                reason: str, entry_id: str) -> dict[str, Any]:  # fmt: skip
    """One entry (as written in a baseline file) describing this minimal failure."""
    facts = case_facts(cell_id, failure)
    when: dict[str, Any] = {k: facts[k] for k in _AS_IS if facts.get(k) is not None}
    if facts.get("padding_form") not in (None, "none") and facts.get("padding_mode") is not None:
        when["padding_mode"] = facts["padding_mode"]
    if facts.get("device") not in (None, "cpu"):
        when["device"] = facts["device"]
    for name, simplest in _BEYOND_SIMPLEST.items():
        if isinstance(facts.get(name), int) and facts[name] > simplest:
            when[name] = f">{simplest}"
    for name in _RELATIONS:
        if facts.get(name):
            when[name] = True
    if facts.get("data") == "special":
        when["data"] = "special"
    if facts.get("product"):
        when["product"] = list(facts["product"])
    signature: dict[str, Any] = {"status": failure["status"]} if failure.get("status") in BAD else {}
    ratios = [as_number(v.get("ratio")) for v in (failure.get("verdicts") or {}).values()
              if isinstance(v, dict) and v.get("status") == "failed"]  # fmt: skip
    if ratios and all(math.isfinite(r) for r in ratios):
        signature["max_ratio"] = _round_up(4 * max(ratios))
    entry: dict[str, Any] = {"id": entry_id, "adapter": adapter, "reason": reason, "when": when}
    if signature:
        entry["signature"] = signature
    pinned = {package: f"=={version}" for package, version in versions.items() if _looks_like_version(version)}
    if pinned:
        entry["scope"] = {"versions": pinned}
    return entry


def draft_entries(results: Any, *, reason: str = "TODO: what the backend does wrong, and a one-line reproducer",
                  include_expected: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Entries for every cell of ``results`` with an unexpected failure (and, if asked, explained ones too)."""
    backends = results.environment.get("backends", {}) or {}
    machine = results.environment.get("cpu") or "an unknown CPU"
    entries, seen = [], set()
    for (cell_id, adapter), record in sorted(results.cells.items()):
        failures = [f for f in record.failures if isinstance(f, dict)]  # a cell keeps only its failing cases
        if include_expected:
            failures += record.expected_examples
        if not failures:
            continue
        versions = {str(k): str(v) for k, v in (backends.get(adapter) or {}).items()}
        entry_id = f"{adapter}/{cell_id}".replace("@", "-at-")
        entry = draft_entry(cell_id, adapter, failures[-1], versions, reason=reason, entry_id=entry_id)
        key = (adapter, repr(sorted(entry["when"].items())), repr(entry.get("signature")))
        if key in seen:
            continue
        seen.add(key)
        entry["measured_on"] = f"{machine}; drafted from {cell_id}"
        entries.append(entry)
    return entries


def _looks_like_version(text: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def _round_up(x: float) -> float:
    """Two significant digits, rounded up: a bound that still holds the value it came from."""
    if x <= 0:
        return 1.0
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale) * scale


__all__ = ["draft_entries", "draft_entry"]
