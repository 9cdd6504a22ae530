"""What the compliance report says, as plain data: the template only lays it out.

Everything here is computed from a :class:`~conformance.results.Results` (and
optionally a baseline run's); every string that came from an adapter stays a
plain string, escaped by the template's autoescaping, never marked safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from conformance.calls import clip as _clip
from conformance.cells import CHAPTERS
from conformance.coverage import ATTRIBUTES
from conformance.results import STATUSES, CellRecord, Results
from conformance.session import BAD

#: The statuses a reader sees, per cell and per case, in the order they are listed.
OUTCOMES = (
    "passed", "failed", "unsupported", "mistrusted", "error", "crashed", "hung", "expected failure",
    "unexpected pass",
)  # fmt: skip
#: Full failure cards on one page; past this the failing cells are listed in a table, counts intact.
MAX_CARDS = 100
#: Recorded failures listed under a card besides its minimal one.
MAX_OTHER_FAILURES = 4
#: A repro script longer than this is not inlined: the card gives the command that writes it.
MAX_INLINE_REPRO = 100_000
#: Characters of any adapter-supplied text shown (a reason, a note, a version): a backend that prints a
#: 200 MB tensor into its exception must not make a 200 MB page.
MAX_TEXT = 2_000

RATE_FORMULA = (
    "pass rate = (passed + unexpected pass) ÷ (passed + unexpected pass + failed + expected failure + error "
    "+ crashed + hung)"
)
RATE_NOTE = (
    "The denominator is what gave a verdict. Unsupported never counts as passed: it ran nothing, and the "
    "adapter's coverage says how much of the matrix it could run at all. Mistrusted is neither a pass nor a "
    "failure: the reference was mostly zero or the declared precision gave no bound, so agreement proved "
    "little; it is counted in its own column. Expected failures, errors, crashes and hangs count against the rate."
)
#: The outcomes that gave a verdict: the pass rate's denominator.
JUDGED = ("passed", "unexpected pass", "failed", "expected failure", "error", "crashed", "hung")
COVERAGE_FORMULA = "coverage = (cells − unsupported cells) ÷ cells"

#: Values each attribute can take, so that values a run never reached show as 0 rather than not at all.
DOMAINS: dict[str, tuple[str, ...]] = {
    "operation": ("forward", "backward"),
    "dims": ("1-D", "2-D", "3-D"),
    "dtype": ("float64", "float32", "float16", "bfloat16"),
    "transposed": ("no", "yes"),
    "stride": ("1", "2", "3"),
    "dilation": ("1", "2", "3"),
    "groups": ("1", "grouped", "depthwise"),
    "padding form": ("none", "symmetric", "asymmetric", "same", "valid"),
    "padding mode": ("zeros", "reflect", "replicate", "circular"),
    "bias": ("no", "yes"),
    "layout": ("contiguous", "channels_last", "strided"),
    "batch": ("0", "1", "2", "3", "4", "5+"),
    "data": ("ones", "integers", "real", "cancellation", "special"),
}


@dataclass
class Summary:
    adapter: str
    cells: dict[str, int]
    cases: dict[str, int]
    cell_rate: float | None
    case_rate: float | None
    coverage: float | None


@dataclass
class Card:
    """One failing (cell, adapter): its minimal failure in full, the other kept failures listed."""

    anchor: str
    cell: str
    adapter: str
    outcome: str
    counts: dict[str, int]
    minimal: dict[str, Any]
    spec_rows: list[tuple[str, str]]
    worst: list[tuple[str, str]]
    heatmap: dict[str, Any] | None
    repro: str | None
    repro_note: str
    repro_command: str
    others: list[dict[str, Any]]
    more: int
    #: the baseline entries that explained this card's case (an expected failure), else ""
    explained_by: str = ""
    #: how the search found the cell's first unexplained failure: label -> value, as text
    detection: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Diff:
    new_failures: list[dict[str, Any]] = field(default_factory=list)
    fixed: list[dict[str, Any]] = field(default_factory=list)
    still_failing: list[dict[str, Any]] = field(default_factory=list)
    appeared: list[dict[str, Any]] = field(default_factory=list)
    vanished: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    title: str
    results_path: str
    header: list[tuple[str, str]]
    complete: bool
    adapters: list[str]
    summaries: list[Summary]
    matrix: list[dict[str, Any]]
    coverage: list[dict[str, Any]]
    cards: list[Card]
    uncarded: list[dict[str, Any]]
    diff: Diff | None
    baseline_path: str | None
    total_cases: int
    incomplete_reasons: list[str] = field(default_factory=list)
    adapter_errors: list[tuple[str, str, str]] = field(default_factory=list)
    #: what each baseline entry explained in this run (results' "baseline"), rows of plain strings
    baseline_entries: list[dict[str, str]] = field(default_factory=list)
    baseline_note: str = ""
    outcomes: tuple[str, ...] = OUTCOMES
    rate_formula: str = RATE_FORMULA
    rate_note: str = RATE_NOTE
    coverage_formula: str = COVERAGE_FORMULA
    #: a scoreboard's rows, one per backend (reports.scoreboard.Backend); empty for one run's report
    backends: list[Any] = field(default_factory=list)
    #: a scoreboard's results files that could not be read: (path, why)
    missing: list[tuple[str, str]] = field(default_factory=list)


def case_outcomes(record: CellRecord) -> dict[str, int]:
    """The record's case counts in the reader's terms: a case a baseline entry explained is an expected
    failure.  (A version-1 results file expected whole cells to fail: there a baselined cell's bad cases are
    expected failures, and the passing cases of a cell that was expected to fail are unexpected passes.)"""
    out = dict.fromkeys(OUTCOMES, 0)
    for status in STATUSES:
        n = int(record.counts.get(status, 0))
        if status == "expected" or (record.expected_failure and status in BAD):
            out["expected failure"] += n
        elif record.outcome == "unexpected pass" and status == "passed":
            out["unexpected pass"] += n
        else:
            out[status] += n
    return out


def pass_rate(counts: dict[str, int]) -> float | None:
    judged = sum(counts.get(outcome, 0) for outcome in JUDGED)
    return (counts.get("passed", 0) + counts.get("unexpected pass", 0)) / judged if judged else None


def build(results: Results, *, results_path: str = "", baseline: Results | None = None,
          baseline_path: str | None = None, results_paths: dict[str, str] | None = None) -> Report:  # fmt: skip
    """``results_paths`` (adapter -> file) is for a page joining several runs: each card's repro command
    names the file its failure is in."""
    records = [results.cells[key] for key in sorted(results.cells)]
    adapters = sorted({r.adapter for r in records})
    env = results.environment or {}
    cards, uncarded = _cards(records, results_path, results_paths or {})
    return Report(
        title=f"Convolution conformance: {', '.join(adapters) or 'no adapters'}",
        results_path=results_path,
        header=_header(results, env),
        complete=results.complete,
        adapters=adapters,
        summaries=[summary_of(a, [r for r in records if r.adapter == a]) for a in adapters],
        matrix=_matrix(records, adapters),
        coverage=_coverage(records, adapters),
        cards=cards,
        uncarded=uncarded,
        diff=_diff(results, baseline) if baseline is not None else None,
        baseline_path=baseline_path,
        total_cases=sum(sum(r.counts.values()) for r in records),
        incomplete_reasons=[_clip(r, MAX_TEXT) for r in results.incomplete_reasons[:20]],
        adapter_errors=[(_clip(name, 200), _clip(e.get("status", ""), 20), _clip(e.get("message", ""), MAX_TEXT))
                        for name, e in sorted(results.adapter_errors.items())],
        baseline_entries=_baseline_entries(results.baseline),
        baseline_note=_clip(_baseline_note(results.baseline), MAX_TEXT),
    )


def _baseline_entries(baseline: dict[str, Any] | None) -> list[dict[str, str]]:
    """Per entry: what it explained here, or why nothing (stale, out of scope, not run)."""
    rows = []
    for entry in (baseline or {}).get("entries") or []:
        if not isinstance(entry, dict):
            continue
        cells = entry.get("cells") if isinstance(entry.get("cells"), dict) else {}
        rows.append({"id": _clip(str(entry.get("id", "")), 200), "state": _clip(str(entry.get("state", "")), 40),
                     "adapter": _clip(", ".join(map(str, entry.get("adapter") or [])), 300),
                     "explained": str(entry.get("explained", 0)),
                     "cells": _clip(", ".join(f"{c} ({n})" for c, n in sorted(cells.items())), MAX_TEXT),
                     "why": _clip(str(entry.get("why", "")), MAX_TEXT),
                     "reason": _clip(str(entry.get("reason", "")), MAX_TEXT)})  # fmt: skip
    return rows


def _baseline_note(baseline: dict[str, Any] | None) -> str:
    if not baseline:
        return ""
    note = f"baseline: {baseline.get('source') or 'given'}"
    if baseline.get("deprecated"):
        note += f" — it {baseline['deprecated']}"
    return note


# --------------------------------------------------------------------- header


def _header(results: Results, env: dict[str, Any]) -> list[tuple[str, str]]:
    backends = env.get("backends") or {}
    versions = "; ".join(
        f"{adapter}: " + (_clip(", ".join(f"{k} {v}" for k, v in sorted(_mapping(found).items())), MAX_TEXT)
                          or "no versions reported")
        for adapter, found in sorted(_mapping(backends).items())
    )
    gpus = env.get("gpus") or []
    rows = [
        ("suite", f"conv-conformance {env.get('suite', '?')}"),
        ("started", str(results.started)),
        ("finished", str(results.finished or "not finished")),
        ("profile", str(env.get("profile", "?"))),
        ("seed", _seed(env)),
        ("examples per cell", str(env.get("max_examples", "?"))),
        ("python", str(env.get("python", "?"))),
        ("numpy", str(env.get("numpy", "?"))),
        ("backends", versions or "none recorded"),
        ("platform", str(env.get("platform", "?"))),
        ("CPU", str(env.get("cpu", "?"))),
        ("GPU", ", ".join(str(g) for g in gpus) if isinstance(gpus, list) and gpus else "none"),
        ("command", str(env.get("command") or "not recorded")),
    ]
    # Every value may have come from another tool or a hostile versions(): none may make the page huge.
    return [(name, _clip(value, MAX_TEXT)) for name, value in rows]


def _seed(env: dict[str, Any]) -> str:
    seed = env.get("seed")
    if seed is None:
        return "derandomized: the same examples on every run" if env.get("profile") == "ci" else "not recorded"
    if seed == "random":
        return "random (pass --hypothesis-seed to repeat a run)"
    return str(seed)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -------------------------------------------------------------------- summary


def summary_of(adapter: str, records: list[CellRecord]) -> Summary:
    cells = dict.fromkeys(OUTCOMES, 0)
    cases = dict.fromkeys(OUTCOMES, 0)
    for record in records:
        cells[record.outcome] += 1
        for outcome, n in case_outcomes(record).items():
            cases[outcome] += n
    total = len(records)
    return Summary(
        adapter=adapter, cells=cells, cases=cases, cell_rate=pass_rate(cells), case_rate=pass_rate(cases),
        coverage=(total - cells["unsupported"]) / total if total else None,
    )  # fmt: skip


# --------------------------------------------------------------------- matrix


def _matrix(records: list[CellRecord], adapters: list[str]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        row = rows.setdefault(record.cell, {"cell": record.cell, "by_adapter": {}})
        row["by_adapter"][record.adapter] = {
            "outcome": record.outcome,
            "cases": sum(record.counts.values()),
            "bad": sum(record.counts.get(s, 0) for s in BAD),
            "worst_ratio": as_float(record.worst_ratio),
            "notes": _clip("; ".join(record.notes), MAX_TEXT),
            "anchor": _anchor(record.cell, record.adapter) if record.status in (*BAD, "expected") else None,
        }
    for row in rows.values():
        row["outcomes"] = " ".join(sorted({c["outcome"] for c in row["by_adapter"].values()}))
    return [rows[cell] for cell in sorted(rows, key=_cell_order)]


def _cell_order(cell: str) -> tuple:
    chapter, _, rest = cell.partition("/")
    order = (*CHAPTERS, "golden", "invalid", "properties")
    return (order.index(chapter) if chapter in order else len(order), chapter, rest)


def _anchor(cell: str, adapter: str) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in f"{adapter}--{cell}")
    return f"card-{safe}"


# ------------------------------------------------------------------- coverage


def _coverage(records: list[CellRecord], adapters: list[str]) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for record in records:
        for attribute, values in record.coverage.items():
            for value, n in values.items():
                by_adapter = counts.setdefault(attribute, {}).setdefault(value, {})
                by_adapter[record.adapter] = by_adapter.get(record.adapter, 0) + n
    known = [a for a in ATTRIBUTES if a in counts or a in DOMAINS] + sorted(set(counts) - set(ATTRIBUTES))
    table = []
    for attribute in known:
        seen = counts.get(attribute, {})
        values = list(DOMAINS.get(attribute, ())) + sorted(set(seen) - set(DOMAINS.get(attribute, ())), key=_natural)
        rows = [{"value": v, "counts": [seen.get(v, {}).get(a, 0) for a in adapters]} for v in values]
        table.append({"attribute": attribute, "rows": rows, "missing": [r["value"] for r in rows
                                                                         if not any(r["counts"])]})  # fmt: skip
    return table


def _natural(value: str) -> tuple:
    head = value.split(",")[0].split("-")[0]
    return (0, int(head), value) if head.isdigit() else (1, 0, value)


# ---------------------------------------------------------------------- cards


def _cards(records: list[CellRecord], results_path: str,
           results_paths: dict[str, str]) -> tuple[list[Card], list[dict[str, Any]]]:  # fmt: skip
    failing = [r for r in records if r.status in (*BAD, "expected")]
    # Unexpected failures first: they are what a reader must act on.
    failing.sort(key=lambda r: (r.outcome == "expected failure", _cell_order(r.cell), r.adapter))
    cards, rest = [], []
    for record in failing:
        if len(cards) < MAX_CARDS and (record.failures or record.expected_examples):
            cards.append(_card(record, results_paths.get(record.adapter, results_path)))
        else:
            last = record.failures[-1] if record.failures else {}
            rest.append({"cell": record.cell, "adapter": record.adapter, "outcome": record.outcome,
                         "bad": sum(record.counts.get(s, 0) for s in BAD),
                         "descriptor": _clip(str(last.get("descriptor", "")), 300),
                         "reason": _clip(str(last.get("reason", "")), 300)})  # fmt: skip
    return cards, rest


def _card(record: CellRecord, results_path: str) -> Card:
    failures = [f for f in record.failures if isinstance(f, dict)]
    explained = not failures  # only explained failures: the card shows one of them, and names its entries
    if explained:
        failures = [f for f in record.expected_examples if isinstance(f, dict)][-1:]
    minimal = failures[-1] if failures else {}
    index = len(record.failures) - 1
    repro = minimal.get("repro")
    repro = repro if isinstance(repro, str) and len(repro) <= MAX_INLINE_REPRO else None
    others = failures[:-1][-MAX_OTHER_FAILURES:]
    return Card(
        anchor=_anchor(record.cell, record.adapter),
        cell=record.cell,
        adapter=record.adapter,
        outcome=record.outcome,
        counts=case_outcomes(record),
        minimal={key: _clip(str(minimal.get(key, "")), MAX_TEXT) for key in _SHOWN},
        spec_rows=_spec_rows(minimal.get("spec")),
        worst=_worst(minimal),
        heatmap=minimal.get("heatmap") if isinstance(minimal.get("heatmap"), dict) else None,
        repro=repro,
        repro_note=_clip(str(minimal.get("repro_note", "")), MAX_TEXT),
        repro_command="" if explained else f"conv-conformance repro {results_path or 'RESULTS.json'} "
        f"{record.adapter}/{record.cell}/{index} --script repro.py",
        others=[_brief(f) for f in reversed(others)],
        more=max(0, len(failures) - 1 - len(others)),
        explained_by=_clip(str(minimal.get("explained_by", "")), 500) if explained else "",
        detection=_detection(record.detection),
    )


def _detection(detection: dict[str, Any]) -> list[tuple[str, str]]:
    """Examples until the first unexplained failure, when it came, and how long shrinking took."""
    labels = (("examples_to_first_failure", "examples until the first failure", "{:.0f}"),
              ("seconds_to_first_failure", "seconds until the first failure", "{:.2f}"),
              ("shrink_seconds", "seconds shrinking", "{:.2f}"))  # fmt: skip
    rows = []
    for key, label, fmt in labels:
        value = as_float(detection.get(key)) if isinstance(detection, dict) else None
        if value is not None and math.isfinite(value):
            rows.append((label, fmt.format(value)))
    return rows


#: The minimal failure's fields a card shows as text.
_SHOWN = ("descriptor", "operation", "status", "reason")


def _brief(failure: dict[str, Any]) -> dict[str, str]:
    return {"descriptor": _clip(str(failure.get("descriptor", "")), 300),
            "status": _clip(str(failure.get("status", "")), 100),
            "reason": _clip(str(failure.get("reason", "")), 300)}  # fmt: skip


def _spec_rows(spec: Any) -> list[tuple[str, str]]:
    if not isinstance(spec, dict):
        return []
    return [(_clip(str(k), 100), _clip(_value(v), 300)) for k, v in spec.items()]


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "(" + ", ".join(_value(x) for x in v) + ")"
    return str(v)


def _worst(failure: dict[str, Any]) -> list[tuple[str, str]]:
    verdicts = failure.get("verdicts")
    product = failure.get("product")
    if not isinstance(verdicts, dict) or product not in verdicts or not isinstance(verdicts[product], dict):
        return []
    v = verdicts[product]
    rows = [("product", _clip(str(product), 100)), ("tier", _clip(str(v.get("tier", "")), 100))]
    for name in ("worst_index", "expected", "got", "error", "bound", "ratio", "mismatches", "checked"):
        if v.get(name) is not None:
            value = v[name]
            text = _value(value) if isinstance(value, list) else _number(value)
            rows.append((name.replace("_", " "), _clip(text, 300)))
    return rows


def _number(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    number = as_float(value)
    return str(value) if number is None else f"{number:.9g}"


def as_float(value: Any) -> float | None:
    """A numeric field as a float, whichever way the file wrote it; None when it is not a number.

    Results files are strict JSON, so non-finite values arrive as the strings "inf", "-inf" and "nan";
    files from before that hold bare floats (json reads Infinity and NaN as floats). Both must render.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float is, for a ratio, infinite
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str) and len(value) <= 64:
        try:
            return float(value)
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------- diff


def _diff(results: Results, baseline: Results) -> Diff:
    diff = Diff()
    keys = sorted(set(results.cells) | set(baseline.cells), key=lambda k: (_cell_order(k[0]), k[1]))
    for key in keys:
        now, before = results.cells.get(key), baseline.cells.get(key)
        ran_now = now is not None and now.status != "unsupported"
        ran_before = before is not None and before.status != "unsupported"
        bad_now = ran_now and now.status in BAD
        bad_before = ran_before and before.status in BAD
        row = {"cell": key[0], "adapter": key[1], "now": now.outcome if now else "absent",
               "before": before.outcome if before else "absent",
               "reason": _reason(now) if bad_now else _reason(before) if bad_before else ""}  # fmt: skip
        if ran_now and not ran_before:
            diff.appeared.append(row)
        if ran_before and not ran_now:
            diff.vanished.append(row)
        if bad_now and not bad_before:
            diff.new_failures.append(row)
        elif bad_now and bad_before:
            diff.still_failing.append(row)
        elif bad_before and ran_now:
            diff.fixed.append(row)
    return diff


def _reason(record: CellRecord | None) -> str:
    if record is None or not record.failures or not isinstance(record.failures[-1], dict):
        return ""
    return _clip(str(record.failures[-1].get("reason", "")), 200)


__all__ = [
    "MAX_CARDS", "OUTCOMES", "Card", "Diff", "Report", "Summary", "as_float", "build", "case_outcomes", "pass_rate",
]  # fmt: skip
