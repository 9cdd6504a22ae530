"""The results file: every verdict of a run, per cell and adapter, as versioned JSON.

Schema (``"schema": "conv-conformance/results"``, ``"version": 2``; version 1 is still read)::

    {
      "schema": "conv-conformance/results", "version": 2,
      "complete": true,                       # false when not every selected test finished in a live process
      "incomplete_reasons": [],               # why not: "interrupted by SIGTERM", "worker gw1 died: ...", ...
      "adapter_errors": {},                   # adapters that could not be run at all:
                                              #   {"name": {"status": "error"|"crashed"|"hung", "message": "..."}}
      "not_reached": [],                      # "adapter: cell" a time budget (fuzz --minutes) left out; not incomplete
      "run_id": "12345-0badc0de",             # which run wrote the file (the supervisor's own check)
      "started": "2026-11-25T20:00:00+00:00", "finished": "...",
      "environment": {"suite": "0.1.0", "python": "3.11.7", "numpy": "2.4.6", "platform": "...",
                      "cpu": "...", "cpu_flags": [...], "machine": "x86_64", "system": "Linux",
                      "gpus": [...], "profile": "ci", "seed": 0, "command": "...",
                      "backends": {"torch": {"torch": "2.13.0+cpu"}},   # keyed by declared adapter name
                      "adapters": {"torch": "torch"},                   # declared name -> the --adapter spec
                      "capabilities": {"torch": {"dtypes": [...], "devices": ["cpu"], "backward": true, ...,
                          "precision": {"float16@cpu": "float32 accumulation, float16 output"}, "notes": [...]}}},
      "baseline": {"source": "known.json", "deprecated": null,       # each entry: what it explained here
                   "entries": [{"id": "...", "adapter": ["torch"], "reason": "...", "explained": 12,
                                "state": "explained"|"stale"|"out of scope"|"not run", "why": "...",
                                "cells": {"torch: backward/2d/float16/same": 12}}]},
      "cells": [
        {"cell": "forward/2d/float32/same", "adapter": "torch",
         "outcome": "passed",                # the cell's worst status ("expected" reads "expected failure")
         "counts": {"passed": 24, "failed": 0, "expected": 0, "unsupported": 0, "mistrusted": 1,
                    "error": 0, "crashed": 0, "hung": 0},  # expected: failing cases a baseline entry explains
         "explained": {"entry-id": 3},       # cases each baseline entry explained in this cell
         "detection": {"examples_to_first_failure": 4, "seconds_to_first_failure": 0.8,
                       "shrink_seconds": 2.1},  # for a cell with an unexplained failure
         "worst_ratio": 0.41,                # largest error/bound among the cell's verdicts
         "notes": ["layout channels_last: unsupported"],
         "seconds": {"candidate": 0.12, "oracle": 0.05},   # time inside the adapter and the oracle
         "coverage": {"stride": {"1": 20, "2": 5}, ...},   # cases per attribute value
         "failures": [                       # the cell's minimal failing case last
           {"descriptor": "conv2d_mb1_...", "spec": {...}, "recipe": {...}, "operation": "forward",
            "status": "failed", "product": "output", "reason": "...", "verdicts": {...},
            "heatmap": {...},                  # error/bound over one output plane (conformance.heatmap)
            "repro": "#!/usr/bin/env python3 ..."}],
         "expected_examples": [{..., "explained_by": "entry-id"}]}   # a few explained failures, as evidence
      ]
    }

Each pytest-xdist worker writes its own shard after every cell, so a worker
that dies loses at most the cell it was running; :func:`merge` joins shards.
The file is strict JSON (RFC 8259): a non-finite float is written as the string
"inf", "-inf" or "nan", and every reader of a numeric field reads it with float().
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = "conv-conformance/results"
VERSION = 2
#: Versions :func:`read` accepts: version 1 has no "expected" status, no per-entry explanations and no
#: detection statistics; its cells were expected to fail as a whole (``expected_failure``).
READABLE_VERSIONS = (1, 2)
STATUSES = ("passed", "failed", "expected", "unsupported", "mistrusted", "error", "crashed", "hung")
# Worst first: a cell's outcome is the worst status any of its cases had, except
# that a mistrusted case (a mostly-zero reference) does not spoil a cell whose
# other cases passed: mistrust says that case proved little, not that it failed.
# A cell whose only cases were mistrusted is mistrusted, never passed.
# A case a baseline entry explains ("expected") ranks below every unexplained failure: a cell with both fails.
SEVERITY = ("crashed", "hung", "error", "failed", "expected", "passed", "mistrusted", "unsupported")
#: Failures kept per cell: counts stay exact, but a cell that fails thousands of
#: times (a broken backend) must not make the file unreadable.
MAX_FAILURES_PER_CELL = 5
#: Explained failures kept per cell, as evidence of what the entry matched (the first ones seen).
MAX_EXPECTED_EXAMPLES = 2


class ResultsError(ValueError):
    """A results file that cannot be read: malformed, or of an unknown schema or version."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CellRecord:
    cell: str
    adapter: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    worst_ratio: float = 0.0
    notes: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: version-1 files only: the whole cell was expected to fail
    expected_failure: bool = False
    #: baseline entry id -> cases of this cell it explained
    explained: dict[str, int] = field(default_factory=dict)
    expected_examples: list[dict[str, Any]] = field(default_factory=list)
    #: examples_to_first_failure, seconds_to_first_failure, shrink_seconds (cells with an unexplained failure)
    detection: dict[str, float] = field(default_factory=dict)
    seconds_candidate: float = 0.0
    seconds_oracle: float = 0.0
    #: attribute -> value -> cases (see :mod:`conformance.coverage`)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)

    def tally(self, attribute: str, value: str, cases: int) -> None:
        seen = self.coverage.setdefault(attribute, {})
        seen[value] = seen.get(value, 0) + cases

    @property
    def status(self) -> str:
        seen = [s for s in SEVERITY if self.counts.get(s)]
        return seen[0] if seen else "unsupported"

    @property
    def outcome(self) -> str:
        bad = self.status in ("crashed", "hung", "error", "failed")
        if self.expected_failure:  # a version-1 file, judged by whole cells
            return "expected failure" if bad else "unexpected pass"
        return "expected failure" if self.status == "expected" else self.status

    def explain(self, entry_ids: list[str], failure: dict[str, Any] | None = None) -> None:
        """Count one failing case as explained by these baseline entries (after :meth:`add` with "expected")."""
        for entry_id in entry_ids:
            self.explained[entry_id] = self.explained.get(entry_id, 0) + 1
        if failure is not None and self.keeps_example(entry_ids):
            self.expected_examples.append({**failure, "explained_by": " + ".join(entry_ids)})

    def keeps_example(self, entry_ids: list[str]) -> bool:
        """Whether :meth:`explain` would keep a failure these entries explain as an example (the first of
        each combination of entries, up to :data:`MAX_EXPECTED_EXAMPLES`)."""
        label = " + ".join(entry_ids)
        fresh = not any(e.get("explained_by") == label for e in self.expected_examples)
        return fresh and len(self.expected_examples) < MAX_EXPECTED_EXAMPLES

    def add(
        self,
        status: str,
        ratio: float | None = None,
        failure: dict[str, Any] | None = None,
        seconds: tuple[float, float] = (0.0, 0.0),
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        for attribute, value in (attributes or {}).items():
            self.tally(attribute, value, 1)
        self.seconds_candidate += seconds[0]
        self.seconds_oracle += seconds[1]
        if ratio is not None and ratio == ratio and ratio > self.worst_ratio:  # NaN never wins
            self.worst_ratio = ratio
        if failure is not None and status != "expected":
            self.failures.append(failure)
            # Keep the most recent: Hypothesis replays the minimal example last.
            del self.failures[:-MAX_FAILURES_PER_CELL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "adapter": self.adapter,
            "outcome": self.outcome,
            "expected_failure": self.expected_failure,
            "counts": self.counts,
            "worst_ratio": self.worst_ratio if self.worst_ratio != float("inf") else "inf",
            "notes": self.notes,
            "seconds": {"candidate": self.seconds_candidate, "oracle": self.seconds_oracle},
            "coverage": self.coverage,
            "failures": self.failures,
            "explained": self.explained,
            "expected_examples": self.expected_examples,
            "detection": self.detection,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellRecord:
        return cls(
            cell=data["cell"],
            adapter=data["adapter"],
            counts={**dict.fromkeys(STATUSES, 0), **data.get("counts", {})},
            worst_ratio=float(data.get("worst_ratio", 0.0)),
            notes=list(data.get("notes", [])),
            failures=list(data.get("failures", [])),
            expected_failure=bool(data.get("expected_failure", False)),
            seconds_candidate=float(data.get("seconds", {}).get("candidate", 0.0)),
            seconds_oracle=float(data.get("seconds", {}).get("oracle", 0.0)),
            explained={str(k): int(n) for k, n in data.get("explained", {}).items()},
            expected_examples=list(data.get("expected_examples", [])),
            detection={str(k): float(v) for k, v in data.get("detection", {}).items()},
            coverage={
                str(attribute): {str(v): int(n) for v, n in values.items()}
                for attribute, values in data.get("coverage", {}).items()
            },
        )


def environment(
    profile: str, seed: int | str | None, backends: dict[str, dict[str, str]], command: str
) -> dict[str, Any]:
    import numpy

    from conformance import __version__

    return {
        "suite": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "gpus": _gpu_names(),
        "profile": profile,
        "seed": seed,
        "command": command,
        "backends": backends,
        # The thread pools' sizes (see conformance.supervisor.thread_budget): timings depend on them.
        "threads": {name: os.environ[name] for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                    if name in os.environ},
        **this_machine(),
    }


def this_machine() -> dict[str, Any]:
    """What a baseline entry's scope is judged against, besides backend versions: CPU flags and platform."""
    return {"cpu_flags": cpu_flags(), "machine": platform.machine(), "system": platform.system()}


def cpu_flags() -> list[str] | None:
    """The CPU's feature flags (``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> list[str]:
    torch = sys.modules.get("torch")  # never import a backend just to describe the machine
    if torch is None or not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


class Results:
    """Cells keyed by (cell, adapter), plus the run's environment."""

    def __init__(self, environment: dict[str, Any] | None = None) -> None:
        self.environment = environment or {}
        self.cells: dict[tuple[str, str], CellRecord] = {}
        self.started = now()
        self.finished: str | None = None
        self.complete = False
        #: why ``complete`` is false: a dead process, an adapter that could not run, an interrupt
        self.incomplete_reasons: list[str] = []
        #: adapters that loaded but could not be run at all: name -> {"status", "message"}
        self.adapter_errors: dict[str, dict[str, str]] = {}
        #: cells a time budget skipped (fuzz --minutes): not run, and not a reason for "incomplete"
        self.not_reached: list[str] = []
        #: which run wrote this file (the supervisor tells its own run's file from an older one)
        self.run_id: str | None = None
        #: what each baseline entry explained (conformance.baseline.Baseline.summary); None without a baseline
        self.baseline: dict[str, Any] | None = None
        #: the version of the file this was read from (a version-1 file has whole-cell expectations)
        self.version = VERSION
        # Shard writes (see write_shard): each cell's compact JSON, kept with the record it encodes, and the
        # cells handed out by cell() since, which may have changed.  A shard is written after every cell, so
        # encoding every cell every time would grow with the cells run (quadratic over a run).
        self._encoded: dict[tuple[str, str], tuple[CellRecord, str]] = {}
        self._touched: set[tuple[str, str]] = set()

    def mark_incomplete(self, reason: str) -> None:
        self.complete = False
        if reason not in self.incomplete_reasons:
            self.incomplete_reasons.append(reason)

    def cell(self, cell: str, adapter: str) -> CellRecord:
        key = (cell, adapter)
        if key not in self.cells:
            self.cells[key] = CellRecord(cell, adapter)
        self._touched.add(key)  # whoever asked may change it: its cached encoding is no longer trusted
        return self.cells[key]

    def changed(self, record: CellRecord) -> None:
        """Say that ``record`` changed (as :meth:`cell` assumes of every record it hands out)."""
        self._touched.add((record.cell, record.adapter))

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(), "cells": [self.cells[k].to_dict() for k in sorted(self.cells)]}

    def _head(self) -> dict[str, Any]:
        """Everything but the cells."""
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "complete": self.complete,
            "started": self.started,
            "finished": self.finished,
            "run_id": self.run_id,
            "incomplete_reasons": self.incomplete_reasons,
            "adapter_errors": self.adapter_errors,
            "not_reached": self.not_reached,
            "environment": self.environment,
            **({"baseline": self.baseline} if self.baseline is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        check_schema(data)
        results = cls(data.get("environment", {}))
        results.started = data.get("started") or results.started
        results.finished = data.get("finished")
        results.complete = bool(data.get("complete", False))
        results.run_id = data.get("run_id") if isinstance(data.get("run_id"), str) else None
        results.incomplete_reasons = [str(r) for r in data.get("incomplete_reasons") or []]
        results.adapter_errors = {
            str(name): {"status": str(e.get("status", "error")), "message": str(e.get("message", ""))}
            for name, e in (data.get("adapter_errors") or {}).items() if isinstance(e, dict)
        }  # fmt: skip
        results.not_reached = [str(c) for c in data.get("not_reached") or []]
        results.version = data["version"]
        results.baseline = data.get("baseline") if isinstance(data.get("baseline"), dict) else None
        for i, raw in enumerate(data.get("cells", [])):
            try:
                record = CellRecord.from_dict(raw)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                why = f"{type(error).__name__}: {error}"
                raise ResultsError(f"results file: cell entry {i} is malformed ({why})") from None
            results.cells[(record.cell, record.adapter)] = record
        return results

    def write(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    def write_shard(self, path: str | os.PathLike) -> None:
        """Write as :meth:`write` does (atomically, strict JSON), compactly, re-encoding only the cells
        handed out by :meth:`cell` since the last shard write (or never encoded, or replaced since).

        A process's shard is rewritten after every cell it runs; only the merge reads it, so it needs no
        indentation, and the cells it ran before are as they were.  Whoever changes a record reaches it
        through :meth:`cell` (the session does), which marks it for re-encoding.
        """
        fragments = []
        for key in sorted(self.cells):
            record = self.cells[key]
            cached = self._encoded.get(key)
            if cached is None or cached[0] is not record or key in self._touched:
                cached = (record, _compact(record.to_dict()))
                self._encoded[key] = cached
            fragments.append(cached[1])
        for key in [k for k in self._encoded if k not in self.cells]:  # a cell removed (cut short unrun)
            del self._encoded[key]
        self._touched.clear()
        text = _compact(self._head())
        write_text(path, f'{text[:-1]},"cells":[{",".join(fragments)}]}}')


def check_schema(data: Any) -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"not a conv-conformance results file (schema={_get(data, 'schema')!r})")
    if data.get("version") not in READABLE_VERSIONS or isinstance(data.get("version"), bool):
        raise ResultsError(f"results schema version {data.get('version')!r}; this suite reads versions "
                           + " and ".join(map(str, READABLE_VERSIONS)))
    from conformance.schema import SchemaError, check_results

    try:
        check_results(data)  # every field a reader uses, with the path of the first bad one
    except SchemaError as error:
        raise ResultsError(f"malformed results file: {error}") from None


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def read(path: str | os.PathLike) -> Results:
    """The results file at ``path``; :class:`ResultsError`, with the reason, for any file that is not one."""
    try:
        data = json.loads(Path(path).read_text())
    # ValueError besides JSONDecodeError: json raises a bare one for an integer of over 4,300 digits.
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ResultsError(f"cannot read results file {path}: {error}") from None
    except RecursionError:  # JSON nested thousands deep: no results file looks like that
        raise ResultsError(f"cannot read results file {path}: nested too deeply") from None
    return Results.from_dict(data)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a reader never sees half a file, even after a kill."""
    # RFC 8259 has no NaN or Infinity (JSON.parse rejects them): non-finite floats become strings, which
    # every reader of a numeric field turns back with float().
    write_text(path, json.dumps(strict(data), indent=1, sort_keys=False, allow_nan=False))


def _compact(data: dict[str, Any]) -> str:
    """Strict JSON without indentation: json's C encoder (an indent makes it use the pure-Python one)."""
    return json.dumps(strict(data), separators=(",", ":"), allow_nan=False)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (temp file + rename), the directory made if need be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        # mkstemp makes the file private; a results file is a CI artifact others read.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def unwritable(path: str | os.PathLike) -> str | None:
    """Why a file cannot be written at ``path`` (checked by making and removing a file beside it), or None."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return "is a directory, not a file"
    existing = os.path.dirname(full)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            return f"cannot be written: {existing} is not a directory"
        existing = os.path.dirname(existing)
    try:  # os.access says yes to root everywhere, /proc included: only trying tells
        fd, probe = tempfile.mkstemp(prefix=".conv-conformance-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        return f"cannot be written here ({error.strerror or error})"
    if os.path.exists(full) and not os.access(full, os.W_OK):
        return "cannot be written (permission denied)"
    return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: resolved (symlinks, ``..``), or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: then only the resolved paths could tell
        return False


def strict(value: Any) -> Any:
    """``value`` as strict JSON data: non-finite floats as "inf" / "-inf" / "nan", tuples and arrays as
    lists, numpy scalars as Python numbers, anything else unknown as its text."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return str(value)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def summary_lines(results: Results) -> list[str]:
    """What a reader must not miss about a run's results, as lines (also used by ``conv-conformance``)."""
    lines = []
    if not results.complete:
        lines.append("INCOMPLETE run: " + ("; ".join(results.incomplete_reasons) or "it did not finish"))
    for name, error in sorted(results.adapter_errors.items()):
        first = (error.get("message") or "").strip().splitlines()
        lines.append(f"  adapter {name} could not be run ({error.get('status')}): {first[0] if first else ''}")
    if results.not_reached:
        lines.append(f"time budget spent: {len(results.not_reached)} cell(s) not reached (listed under "
                     "'not_reached' in the results; not a failure)")  # fmt: skip
    return lines + baseline_lines(results.baseline)


def baseline_lines(baseline: dict[str, Any] | None) -> list[str]:
    """What the baseline explained, and each entry that explained nothing here (stale, or out of scope)."""
    if not baseline:
        return []
    entries = baseline.get("entries") or []
    lines = []
    if baseline.get("deprecated"):
        lines.append(f"baseline {baseline.get('source')} {baseline['deprecated']}")
    used = [e for e in entries if e.get("state") == "explained"]
    cases = sum(int(e.get("explained", 0)) for e in used)
    lines.append(f"baseline: {len(used)} of {len(entries)} entries explained {cases} failing case(s)")
    for entry in entries:
        if entry.get("state") in ("stale", "out of scope"):
            lines.append(f"  {entry.get('state')}: {entry.get('id')} ({entry.get('why')})")
    return lines


def merge(parts: list[Results], environment: dict[str, Any] | None = None) -> Results:
    """One results object from shards: counts add up, failures and notes concatenate."""
    merged = Results(environment or (parts[0].environment if parts else {}))
    merged.started = min((p.started for p in parts), default=merged.started)
    for part in parts:
        for (cell, adapter), record in part.cells.items():
            into = merged.cell(cell, adapter)
            for status, n in record.counts.items():
                into.counts[status] = into.counts.get(status, 0) + n
            into.worst_ratio = max(into.worst_ratio, record.worst_ratio)
            into.notes += [n for n in record.notes if n not in into.notes]
            into.failures = (into.failures + record.failures)[-MAX_FAILURES_PER_CELL:]
            into.expected_failure |= record.expected_failure
            for entry_id, n in record.explained.items():
                into.explained[entry_id] = into.explained.get(entry_id, 0) + n
            into.expected_examples = (into.expected_examples + record.expected_examples)[:MAX_EXPECTED_EXAMPLES]
            into.detection = into.detection or dict(record.detection)
            into.seconds_candidate += record.seconds_candidate
            into.seconds_oracle += record.seconds_oracle
            for attribute, values in record.coverage.items():
                for value, n in values.items():
                    into.tally(attribute, value, n)
    merged.complete = bool(parts) and all(p.complete for p in parts)
    for part in parts:
        merged.run_id = merged.run_id or part.run_id
        for reason in part.incomplete_reasons:
            merged.mark_incomplete(reason)
        merged.adapter_errors.update(part.adapter_errors)
        merged.not_reached += [c for c in part.not_reached if c not in merged.not_reached]
    return merged


__all__ = [
    "MAX_FAILURES_PER_CELL",
    "SCHEMA",
    "STATUSES",
    "VERSION",
    "CellRecord",
    "Results",
    "ResultsError",
    "baseline_lines",
    "cpu_flags",
    "environment",
    "merge",
    "read",
    "same_file",
    "strict",
    "summary_lines",
    "this_machine",
    "unwritable",
    "write_json",
]
