"""Baselines: the known discrepancies a run expects, each a predicate over one failing case.

A baseline file (``"schema": "conv-conformance/baseline"``, ``"version": 2``)::

    {"schema": "conv-conformance/baseline", "version": 2, "about": "...",
     "entries": [
       {"id": "torch-pad-fold-rounding",              # unique; results and reports name the entry by it
        "adapter": ["torch", "torch-nn"],             # declared adapter name(s)
        "reason": "what the backend does, and a one-line reproducer",
        "when": {"chapter": "backward", "dtype": ["float16", "bfloat16"],
                 "padding_mode": ["reflect", "replicate", "circular"], "product": "grad_input"},
        "signature": {"status": "failed", "max_ratio": 20},          # optional: how the known bug fails
        "scope": {"versions": {"torch": ">=2.13,<2.14"},             # optional: where it is known to hold
                  "cpu_flags": ["avx512_bf16"], "cpu_flags_absent": ["avx512_fp16"],
                  "machine": ["x86_64"], "system": ["Linux"]},
        "measured_on": "AMD EPYC 9R14 (Zen 4), torch 2.13.0+cpu"}]}  # optional: where it was verified

A failing case is *expected* only when an entry for its adapter is in scope, its
``when`` holds for the case (the vocabulary: :mod:`conformance.predicates`) and
the failure fits its ``signature``; every other failing case is an unexpected
failure, whatever cell it is in.  Nothing in the file is evaluated as code, and
a file with an unknown field, a bad condition or a bad version specifier is
refused as a whole (:class:`BaselineError`, one line).

Two older inputs are still read: the version-1 form (``{"expected_failures":
[{"cell": glob, "adapter", "reason"}]}``), each entry becoming ``when: {"cell":
glob}`` with a deprecation message, and a results file, whose failures become
drafted entries (:mod:`conformance.baseline_draft`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.predicates import (
    Condition,
    PredicateError,
    case_facts,
    cell_facts,
    could_hold,
    holds,
    parse_conditions,
)
from conformance.results import Results, ResultsError

#: Case statuses that count as a failure (conformance.session and the draft use these).
BAD = ("failed", "error", "crashed", "hung")
SCHEMA = "conv-conformance/baseline"
VERSION = 2
_ENTRY_KEYS = {"id", "adapter", "reason", "when", "signature", "scope", "measured_on"}
_SIGNATURE_KEYS = {"status", "max_ratio", "expected", "got", "reason_contains"}
#: What the worst element of a failing product was, for a signature's "expected" and "got".
VALUE_CLASSES = ("finite", "inf", "nan")
_SCOPE_KEYS = {"versions", "cpu_flags", "cpu_flags_absent", "machine", "system"}
DEPRECATED_FORM = (
    "uses the deprecated cell-glob form (version 1): each entry expects every failure of its cells; "
    "rewrite it as predicates over the failing case (see the README's Baselines section, or draft entries "
    "with `conv-conformance baseline draft RESULTS.json`)"
)


class BaselineError(ValueError):
    """A baseline file that cannot be used."""


@dataclass(frozen=True)
class Signature:
    """How a known bug fails, so that a different failure of a matching problem is not taken for it."""

    status: tuple[str, ...] = ()
    max_ratio: float | None = None
    #: the classes (finite, inf, nan) the worst failing element's reference and answer must be among
    expected: tuple[str, ...] = ()
    got: tuple[str, ...] = ()
    reason_contains: str | None = None

    def fits(self, failure: dict[str, Any]) -> bool:
        if self.status and failure.get("status") not in self.status:
            return False
        if self.reason_contains is not None and self.reason_contains not in str(failure.get("reason", "")):
            return False
        failing = [v for v in (failure.get("verdicts") or {}).values() if isinstance(v, dict)
                   and v.get("status") == "failed"]  # fmt: skip
        if self.max_ratio is not None:
            ratios = [as_number(v.get("ratio")) for v in failing]
            if not ratios or not all(r <= self.max_ratio for r in ratios):  # NaN compares false: not this bug
                return False
        for name, allowed in (("expected", self.expected), ("got", self.got)):
            if allowed and not (failing and all(_value_class(v.get(name)) in allowed for v in failing)):
                return False
        return True


@dataclass(frozen=True)
class Scope:
    """Where an entry is known to hold: backend versions (PEP 440 specifiers), CPU flags, platform."""

    versions: dict[str, Any] = field(default_factory=dict)  # package -> packaging SpecifierSet
    cpu_flags: tuple[str, ...] = ()
    cpu_flags_absent: tuple[str, ...] = ()
    machine: tuple[str, ...] = ()
    system: tuple[str, ...] = ()

    def why_out(self, versions: dict[str, str], environment: dict[str, Any]) -> str | None:
        """Why the entry does not apply here (None: it does)."""
        for package, specifier in self.versions.items():
            have = versions.get(package)
            if have is None:
                return f"the adapter reports no {package} version"
            if not specifier.contains(str(have), prereleases=True):
                return f"{package} {have} is outside {specifier}"
        if self.cpu_flags or self.cpu_flags_absent:
            flags = environment.get("cpu_flags")
            if flags is None:
                return "this machine's CPU flags are unknown"
            missing = [f for f in self.cpu_flags if f not in flags]
            if missing:
                return f"the CPU lacks {', '.join(missing)}"
            present = [f for f in self.cpu_flags_absent if f in flags]
            if present:
                return f"the CPU has {', '.join(present)}"
        if self.machine and environment.get("machine") not in self.machine:
            return f"the machine is {environment.get('machine')}, not {' or '.join(self.machine)}"
        if self.system and environment.get("system") not in self.system:
            return f"the system is {environment.get('system')}, not {' or '.join(self.system)}"
        return None


@dataclass(frozen=True)
class Entry:
    id: str
    adapters: tuple[str, ...]
    reason: str
    when: tuple[Condition, ...]
    signature: Signature = Signature()
    scope: Scope = Scope()
    measured_on: str = ""

    def explains(self, cell_id: str, failure: dict[str, Any], facts: dict[str, Any] | None = None) -> bool:
        facts = case_facts(cell_id, failure) if facts is None else facts
        return holds(self.when, facts) and self.signature.fits(failure)


@dataclass
class Baseline:
    """A baseline's entries, and which of them apply to each adapter in this run."""

    entries: list[Entry] = field(default_factory=list)
    source: str | None = None
    #: set when the file used an older form: the message to show
    deprecated: str | None = None
    #: adapter -> entry id -> why it is out of scope here (see :meth:`scope_for`)
    out_of_scope: dict[str, dict[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def for_adapter(self, adapter: str) -> list[Entry]:
        return [e for e in self.entries if adapter in e.adapters]

    def scope_for(self, adapter: str, versions: dict[str, str], environment: dict[str, Any]) -> None:
        """Decide, once per adapter, which of its entries apply here; the others are recorded with the reason."""
        self.out_of_scope[adapter] = {}
        for entry in self.for_adapter(adapter):
            why = entry.scope.why_out(versions, environment)
            if why is not None:
                self.out_of_scope[adapter][entry.id] = why

    def explain(self, cell_id: str, adapter: str, failure: dict[str, Any]) -> list[Entry]:
        """The in-scope entries of ``adapter`` that together explain this failing case, or ``[]``.

        A case that failed in several products (grad_input and grad_weight, say) is explained only when every
        failing product is: each is matched on its own (``product`` is that one, the signature sees only its
        verdict), so two narrow entries for two known bugs never need one wide entry for both.
        """
        out = self.out_of_scope.get(adapter, {})
        candidates = [e for e in self.for_adapter(adapter) if e.id not in out]
        if not candidates:
            return []
        facts = case_facts(cell_id, failure)
        verdicts = failure.get("verdicts") or {}
        failing = [p for p in facts.get("product", ()) if isinstance(verdicts.get(p), dict)]
        if not failing:  # an error, crash, hang or a wrong answer to an invalid problem: one failure as a whole
            return [e for e in candidates if e.explains(cell_id, failure, facts)][:1]
        found = []
        for product in failing:
            one = {**failure, "product": product, "verdicts": {product: verdicts[product]}}
            one_facts = {**facts, "product": (product,)}
            entry = next((e for e in candidates if e.explains(cell_id, one, one_facts)), None)
            if entry is None:
                return []
            if entry not in found:
                found.append(entry)
        return found

    def summary(self, results: Results, adapters: list[str]) -> dict[str, Any]:
        """Per entry: how many cases it explained, in which cells, or why it explained nothing here."""
        explained: dict[str, dict[str, int]] = {}
        for (cell, adapter), record in results.cells.items():
            for entry_id, n in record.explained.items():
                cells = explained.setdefault(entry_id, {})
                cells[f"{adapter}: {cell}"] = cells.get(f"{adapter}: {cell}", 0) + n
        rows = []
        for entry in self.entries:
            cells = explained.get(entry.id, {})
            ran = [a for a in entry.adapters if a in adapters]
            scoped_out = {a: self.out_of_scope.get(a, {}).get(entry.id) for a in ran}
            ran_cells = [cell for cell, adapter in results.cells if adapter in ran]
            if cells:
                state, why = "explained", ""
            elif not ran:
                state, why = "not run", f"no adapter named {' or '.join(entry.adapters)} ran"
            elif not any(could_hold(entry.when, cell_facts(cell)) for cell in ran_cells):
                state, why = "not run", "no cell it could apply to ran"
            elif all(scoped_out.values()):
                state = "out of scope"
                why = "; ".join(f"{a}: {w}" for a, w in scoped_out.items())
            else:
                state, why = "stale", "in scope, but no failing case of this run fits it"
            rows.append({"id": entry.id, "adapter": list(entry.adapters), "reason": entry.reason,
                         "state": state, "why": why, "explained": sum(cells.values()), "cells": cells})  # fmt: skip
        return {"source": self.source, "deprecated": self.deprecated, "entries": rows}


# ---------------------------------------------------------------------- reading


def read_baseline(path: str | os.PathLike) -> Baseline:
    """A baseline file (version 2, or the deprecated version 1), a results file whose failures become entries,
    or a folder: every ``*.json`` in it (the shipped baseline keeps one file per backend), ids unique across them."""
    if Path(path).is_dir():
        return _read_folder(Path(path))
    try:
        data = json.loads(Path(path).read_text())
    # ValueError besides JSONDecodeError: json raises a bare one for an integer of over 4,300 digits.
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BaselineError(f"cannot read baseline {path}: {error}") from None
    except RecursionError:  # JSON nested thousands deep: no baseline looks like that
        raise BaselineError(f"cannot read baseline {path}: nested too deeply") from None
    try:
        baseline = parse_baseline(data)
    except (BaselineError, PredicateError) as error:
        raise BaselineError(f"baseline {path}: {error}") from None
    baseline.source = str(path)
    return baseline


def _read_folder(folder: Path) -> Baseline:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise BaselineError(f"baseline folder {folder} holds no *.json file")
    parts = [read_baseline(file) for file in files]
    owner: dict[str, Path] = {}
    for file, part in zip(files, parts):
        for entry in part.entries:
            if entry.id in owner:
                raise BaselineError(f"baseline {file}: id {entry.id!r} is used in {owner[entry.id].name} too; "
                                    "ids must be unique across the folder")  # fmt: skip
            owner[entry.id] = file
    deprecated = next((f"{file.name} {part.deprecated}" for file, part in zip(files, parts) if part.deprecated), None)
    baseline = Baseline([entry for part in parts for entry in part.entries], deprecated=deprecated)
    baseline.source = str(folder)
    return baseline


def parse_baseline(data: Any) -> Baseline:
    if isinstance(data, dict) and data.get("schema") == "conv-conformance/results":
        from conformance.baseline_draft import draft_entries

        try:
            results = Results.from_dict(data)
        except ResultsError as error:
            raise BaselineError(str(error)) from None
        raw = draft_entries(results, reason="failed in the baseline run")
        return Baseline([_entry(e, f"entries[{i}]") for i, e in enumerate(raw)])
    if isinstance(data, dict) and "expected_failures" in data and "schema" not in data:
        return _legacy(data)
    if not isinstance(data, dict):
        raise BaselineError("should be a JSON object with \"schema\": \"conv-conformance/baseline\" and \"entries\"")
    unknown = sorted(set(data) - {"schema", "version", "about", "entries"})
    if unknown:
        raise BaselineError(f"unknown field {unknown[0]!r} (known: schema, version, about, entries)")
    if data.get("schema") != SCHEMA:
        raise BaselineError(f"schema is {data.get('schema')!r}, not {SCHEMA!r}")
    if data.get("version") != VERSION:
        raise BaselineError(f"version {data.get('version')!r} is not one this suite reads ({VERSION})")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise BaselineError("entries: should be a list of entries")
    parsed = [_entry(raw, f"entries[{i}]") for i, raw in enumerate(entries)]
    seen: set[str] = set()
    for i, entry in enumerate(parsed):
        if entry.id in seen:
            raise BaselineError(f"entries[{i}].id: {entry.id!r} is used by an earlier entry; ids must be unique")
        seen.add(entry.id)
    return Baseline(parsed)


def _legacy(data: dict[str, Any]) -> Baseline:
    from conformance.schema import BASELINE, SchemaError, check

    try:
        check(data, BASELINE)
    except SchemaError as error:
        raise BaselineError(f"{error} (expected {{\"expected_failures\": [{{\"cell\": ..., \"adapter\": ..., "
                            f"\"reason\": ...}}]}})") from None  # fmt: skip
    entries = []
    for i, old in enumerate(data["expected_failures"]):
        raw = {"id": f"{old['adapter']}:{old['cell']}", "adapter": old["adapter"], "reason": old["reason"],
               "when": {"cell": old["cell"]}}  # fmt: skip
        entries.append(_entry(raw, f"expected_failures[{i}]"))
    return Baseline(entries, deprecated=DEPRECATED_FORM)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise BaselineError(f"{where}: {value!r} is not a string or a non-empty list of strings")
    return tuple(items)


def _closed(raw: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: should be an object")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise BaselineError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(keys))})")
    return raw


def _entry(raw: Any, where: str) -> Entry:
    raw = _closed(raw, _ENTRY_KEYS, where)
    for key in ("id", "adapter", "reason", "when"):
        if key not in raw:
            raise BaselineError(f"{where}: missing {key!r}")
    if not isinstance(raw["id"], str) or not raw["id"].strip():
        raise BaselineError(f"{where}.id: should be a non-empty string")
    if not isinstance(raw["reason"], str) or not raw["reason"].strip():
        raise BaselineError(f"{where}.reason: should say what the backend does wrong")
    measured = raw.get("measured_on", "")
    if not isinstance(measured, str):
        raise BaselineError(f"{where}.measured_on: should be a string")
    try:
        when = parse_conditions(raw["when"], f"{where}.when")
    except PredicateError as error:
        raise BaselineError(str(error)) from None
    return Entry(
        id=raw["id"], adapters=_strings(raw["adapter"], f"{where}.adapter"), reason=raw["reason"], when=when,
        signature=_signature(raw.get("signature"), where), scope=_scope(raw.get("scope"), where),
        measured_on=measured,
    )  # fmt: skip


def _signature(raw: Any, where: str) -> Signature:
    if raw is None:
        return Signature()
    raw = _closed(raw, _SIGNATURE_KEYS, f"{where}.signature")
    status = _strings(raw["status"], f"{where}.signature.status") if "status" in raw else ()
    bad = [s for s in status if s not in BAD]
    if bad:
        raise BaselineError(f"{where}.signature.status: {bad[0]!r} is not a failing status ({', '.join(BAD)})")
    max_ratio = raw.get("max_ratio")
    if max_ratio is not None and (isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, float))
                                  or not max_ratio > 0):  # fmt: skip
        raise BaselineError(f"{where}.signature.max_ratio: {max_ratio!r} is not a positive number")
    classes = {}
    for name in ("expected", "got"):
        classes[name] = _strings(raw[name], f"{where}.signature.{name}") if name in raw else ()
        unknown = [c for c in classes[name] if c not in VALUE_CLASSES]
        if unknown:
            raise BaselineError(f"{where}.signature.{name}: {unknown[0]!r} is not one of {', '.join(VALUE_CLASSES)}")
    contains = raw.get("reason_contains")
    if contains is not None and (not isinstance(contains, str) or not contains):
        raise BaselineError(f"{where}.signature.reason_contains: should be a non-empty string")
    return Signature(status, None if max_ratio is None else float(max_ratio), classes["expected"], classes["got"],
                     contains)


def _scope(raw: Any, where: str) -> Scope:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if raw is None:
        return Scope()
    raw = _closed(raw, _SCOPE_KEYS, f"{where}.scope")
    versions = {}
    wanted = raw.get("versions", {})
    if not isinstance(wanted, dict):
        raise BaselineError(f"{where}.scope.versions: should be an object of package: specifier")
    for package, text in wanted.items():
        try:
            if not isinstance(text, str) or not text.strip():
                raise InvalidSpecifier(repr(text))
            versions[package] = SpecifierSet(text)
        except InvalidSpecifier:
            raise BaselineError(f"{where}.scope.versions.{package}: {text!r} is not a version specifier "
                                "such as '>=2.13,<2.14' or '==2.13.*'") from None  # fmt: skip
    words = {k: _strings(raw[k], f"{where}.scope.{k}") if k in raw else () for k in _SCOPE_KEYS - {"versions"}}
    return Scope(versions=versions, **words)


def _value_class(value: Any) -> str:
    x = as_number(value)
    return "nan" if x != x else ("finite" if math.isfinite(x) else "inf")


def as_number(value: Any) -> float:
    """A numeric field of a results file as a float ("inf", "nan" strings included); NaN when it is not one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = ["BAD", "Baseline", "BaselineError", "Entry", "Scope", "Signature", "as_number", "parse_baseline",
           "read_baseline"]  # fmt: skip
