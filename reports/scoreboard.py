"""The scoreboard: several backends' results files, each from an environment of its own, side by side.

Each framework is run in its own environment (their numpy, protobuf and
ml_dtypes pins clash), so each writes its own results file.  The scoreboard
reads them all, refuses two files that claim one adapter name, and makes one
page: per backend its versions, device, declared precision, run time, pass
rate and coverage; then the report's cell × backend matrix, coverage and
failure cards (each card's repro command names the file it came from).  The
same facts go to ``scoreboard.json`` for tools.

A file that cannot be read does not stop the others: its backend is listed as
missing, with the reason, and the exit status says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from conformance.calls import clip
from conformance.results import Results, ResultsError, now, read, write_json
from reports.model import MAX_TEXT, Report, Summary, build, summary_of

SCHEMA = "conv-conformance/scoreboard"
VERSION = 1
#: Cell outcomes that are a failure nobody explained: any one of them fails the scoreboard.
UNEXPECTED = ("failed", "error", "crashed", "hung")


@dataclass
class Backend:
    """One adapter's row: where its results came from, what it declared, and how it did."""

    adapter: str
    results_path: str
    versions: dict[str, str]
    devices: list[str]
    precision: dict[str, str]
    notes: list[str]
    summary: Summary
    seconds: float | None
    complete: bool
    machine: str
    python: str
    numpy: str
    profile: str
    #: cells whose outcome is an unexplained failure
    unexpected: int
    #: baseline entries of this adapter: id, state, cases explained, reason
    expected: list[dict[str, str]] = field(default_factory=list)
    incomplete_reasons: list[str] = field(default_factory=list)


@dataclass
class Scoreboard:
    report: Report
    backends: list[Backend]
    #: results files that could not be read: (path, why)
    missing: list[tuple[str, str]]
    generated: str

    @property
    def clean(self) -> bool:
        return not self.missing and all(b.complete and not b.unexpected for b in self.backends)


class ScoreboardError(ValueError):
    """The results files contradict each other (two claim one adapter)."""


def gather(paths: list[str]) -> Scoreboard:
    """Read every results file; join their cells into one :class:`Results` and describe each adapter."""
    merged = Results()
    merged.complete = True
    backends: list[Backend] = []
    missing: list[tuple[str, str]] = []
    owner: dict[str, str] = {}  # adapter -> the results file that holds it
    for path in paths:
        try:
            results = read(path)
        except ResultsError as error:
            missing.append((path, clip(str(error), MAX_TEXT)))
            continue
        adapters = sorted({adapter for _, adapter in results.cells} | set(results.adapter_errors))
        for adapter in adapters:
            if adapter in owner:
                raise ScoreboardError(f"{path} and {owner[adapter]} both hold results of adapter {adapter!r}: "
                                      "a scoreboard shows one run per backend")  # fmt: skip
            owner[adapter] = path
        merged.cells.update(results.cells)
        merged.adapter_errors.update(results.adapter_errors)
        if not results.complete:
            merged.mark_incomplete(f"{path}: " + ("; ".join(results.incomplete_reasons) or "incomplete"))
        entries = (results.baseline or {}).get("entries") or []
        for adapter in adapters:
            backends.append(_backend(adapter, path, results, entries))
    report = build(merged, results_path=", ".join(sorted(set(owner.values()))), results_paths=owner)
    report.title = f"Convolution conformance scoreboard: {len(backends)} backends"
    by_adapter = {s.adapter: s for s in report.summaries}
    for backend in backends:
        backend.summary = by_adapter.get(backend.adapter, backend.summary)
    report.header = _header(backends)
    return Scoreboard(report=report, backends=backends, missing=missing, generated=now())


def _backend(adapter: str, path: str, results: Results, entries: list[Any]) -> Backend:
    env = results.environment or {}
    declared = _mapping(_mapping(env.get("capabilities")).get(adapter))
    records = [r for (_, a), r in results.cells.items() if a == adapter]
    mine = [e for e in entries if isinstance(e, dict) and adapter in (e.get("adapter") or [])]
    return Backend(
        adapter=adapter,
        results_path=path,
        versions={str(k): clip(str(v), 200) for k, v in _mapping(_mapping(env.get("backends")).get(adapter)).items()},
        devices=[str(d) for d in declared.get("devices") or []],
        precision={str(k): clip(str(v), 200) for k, v in _mapping(declared.get("precision")).items()},
        notes=[clip(str(n), MAX_TEXT) for n in declared.get("notes") or []][:40],
        summary=summary_of(adapter, records),
        seconds=_seconds(results.started, results.finished),
        complete=results.complete,
        machine=clip(str(env.get("cpu", "?")), 200),
        python=str(env.get("python", "?")),
        numpy=str(env.get("numpy", "?")),
        profile=str(env.get("profile", "?")),
        unexpected=sum(1 for r in records if r.outcome in UNEXPECTED),
        expected=[{"id": clip(str(e.get("id", "")), 200), "state": str(e.get("state", "")),
                   "explained": str(e.get("explained", 0)), "reason": clip(str(e.get("reason", "")), MAX_TEXT)}
                  for e in mine],
        incomplete_reasons=[clip(r, MAX_TEXT) for r in results.incomplete_reasons[:10]],
    )


def _header(backends: list[Backend]) -> list[tuple[str, str]]:
    machines = sorted({b.machine for b in backends})
    profiles = sorted({b.profile for b in backends})
    return [
        ("generated", now()),
        ("machine" if len(machines) == 1 else "machines", "; ".join(machines) or "?"),
        ("profile" if len(profiles) == 1 else "profiles", ", ".join(profiles) or "?"),
        ("backends", ", ".join(b.adapter for b in backends) or "none"),
    ]


def _seconds(started: str | None, finished: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def to_dict(board: Scoreboard) -> dict[str, Any]:
    """The scoreboard's facts as JSON: per backend its row, and the cell × backend outcomes."""
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "generated": board.generated,
        "clean": board.clean,
        "missing": [{"results": path, "why": why} for path, why in board.missing],
        "backends": [
            {"adapter": b.adapter, "results": b.results_path, "versions": b.versions, "devices": b.devices,
             "precision": b.precision, "machine": b.machine, "python": b.python, "numpy": b.numpy,
             "profile": b.profile, "seconds": b.seconds, "complete": b.complete,
             "cells": b.summary.cells, "cases": b.summary.cases, "cell_pass_rate": b.summary.cell_rate,
             "case_pass_rate": b.summary.case_rate, "coverage": b.summary.coverage,
             "unexpected_failing_cells": b.unexpected, "baseline_entries": b.expected,
             "notes": b.notes}
            for b in board.backends
        ],
        "matrix": {row["cell"]: {a: c["outcome"] for a, c in row["by_adapter"].items()} for row in board.report.matrix},
    }


def to_markdown(board: Scoreboard) -> str:
    """The backends table in Markdown (a README's or a pull request's): versions, cells passed / failed /
    expected failure / unsupported, the ci profile's time, and each baseline entry that explained a case."""
    lines = [
        f"Generated {board.generated} on {'; '.join(sorted({b.machine for b in board.backends})) or '?'}.",
        "",
        "| backend | versions | passed | failed | expected failure | unsupported | coverage | time "
        "| expected failures |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for b in board.backends:
        cells = b.summary.cells
        failed = sum(cells[o] for o in UNEXPECTED)
        versions = ", ".join(f"{k} {v}" for k, v in b.versions.items())
        explained = "; ".join(f"`{e['id']}` ({e['explained']} cases)" for e in b.expected if e["state"] == "explained")
        coverage = "—" if b.summary.coverage is None else f"{100 * b.summary.coverage:.0f} %"
        seconds = "—" if b.seconds is None else f"{b.seconds:.0f} s"
        lines.append(f"| `{b.adapter}` | {versions} | {cells['passed']} | {failed} | {cells['expected failure']} | "
                     f"{cells['unsupported']} | {coverage} | {seconds} | {explained or '—'} |")  # fmt: skip
    for path, why in board.missing:
        lines.append(f"| (missing) | `{path}` | | | | | | | {why} |")
    return "\n".join(lines) + "\n"


def write_scoreboard(paths: list[str], output: str | os.PathLike, json_output: str | os.PathLike | None = None,
                     markdown_output: str | os.PathLike | None = None) -> Scoreboard:  # fmt: skip
    """Gather ``paths`` and write the page (and the JSON, the Markdown table); :class:`ScoreboardError` before
    writing anything."""
    from reports.render import render_report, write_page

    board = gather(paths)
    report = board.report
    report.backends = board.backends
    report.missing = board.missing
    write_page(render_report(report), Path(output))
    if json_output is not None:
        write_json(json_output, to_dict(board))
    if markdown_output is not None:
        write_page(to_markdown(board), Path(markdown_output))
    return board


__all__ = ["Backend", "Scoreboard", "ScoreboardError", "gather", "to_dict", "to_markdown", "write_scoreboard"]
