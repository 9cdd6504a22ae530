"""Baselines: the known discrepancies a run expects, read from a baseline file or an earlier results file."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path

from conformance.results import Results, ResultsError

#: Case statuses that count as a failure (also conformance.session.BAD).
BAD = ("failed", "error", "crashed", "hung")


@dataclass
class BaselineEntry:
    cell: str
    adapter: str
    reason: str


class BaselineError(ValueError):
    """A baseline file that cannot be used."""


def read_baseline(path: str | os.PathLike) -> dict[tuple[str, str], BaselineEntry]:
    """Expected failures: ``{"expected_failures": [{"cell": ..., "adapter": ..., "reason": ...}]}``.

    A results file works too: its failing cells become the expectations.
    """
    from conformance.schema import BASELINE, SchemaError, check

    try:
        data = json.loads(Path(path).read_text())
    # ValueError besides JSONDecodeError: json raises a bare one for an integer of over 4,300 digits.
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BaselineError(f"cannot read baseline {path}: {error}") from None
    except RecursionError:  # JSON nested thousands deep: no baseline looks like that
        raise BaselineError(f"cannot read baseline {path}: nested too deeply") from None
    if isinstance(data, dict) and data.get("schema"):
        try:
            results = Results.from_dict(data)
        except ResultsError as error:
            raise BaselineError(f"baseline {path}: {error}") from None
        return {
            key: BaselineEntry(*key, reason="failed in the baseline run")
            for key, record in results.cells.items()
            if record.status in BAD
        }
    try:
        check(data, BASELINE)
    except SchemaError as error:
        raise BaselineError(f"baseline {path}: {error} (expected {{\"expected_failures\": [{{\"cell\": ..., "
                            f"\"adapter\": ..., \"reason\": ...}}]}})") from None  # fmt: skip
    out = {}
    for entry in data["expected_failures"]:
        out[(entry["cell"], entry["adapter"])] = BaselineEntry(entry["cell"], entry["adapter"], entry["reason"])
    return out


def expected_failure(
    baseline: dict[tuple[str, str], BaselineEntry], cell: str, adapter: str
) -> BaselineEntry | None:
    """The baseline entry covering ``cell`` on ``adapter``; entries' cell ids may be globs."""
    exact = baseline.get((cell, adapter))
    if exact is not None:
        return exact
    for (pattern, who), entry in baseline.items():
        if who == adapter and fnmatch.fnmatchcase(cell, pattern):
            return entry
    return None


def matches_any(pattern: str, adapter: str, cells: set[tuple[str, str]]) -> bool:
    return any(who == adapter and fnmatch.fnmatchcase(cell, pattern) for cell, who in cells)


__all__ = ["BaselineEntry", "BaselineError", "expected_failure", "matches_any", "read_baseline"]
