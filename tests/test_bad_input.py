"""Bad input gets exit 2 and one clear line, never a traceback (issue 9, section 5 and the reading side of 4).

Each case is a malformed file or argument that printed a traceback (exit 1, which ``repro`` also uses
for "the bug is still there") or an INTERNALERROR before results and baselines were checked against
:mod:`conformance.schema` in one place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.results import SCHEMA, VERSION

ROOT = Path(__file__).resolve().parents[1]
FAULTY = "tests.faulty_adapters"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def _one_clean_line(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "INTERNALERROR" not in done.stdout + done.stderr, done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1, done.stderr


def _results(**cell: object) -> dict:
    return {"schema": SCHEMA, "version": VERSION, "complete": True, "environment": {},
            "cells": [{"cell": "forward/1d/float64/none", "adapter": "a", **cell}]}  # fmt: skip


DEEP = "[" * 100_000 + "]" * 100_000

MALFORMED_RESULTS = {
    "string counts": _results(counts={"passed": "x"}),
    "int cell id": {**_results(), "cells": [{"cell": 7, "adapter": "a"}]},
    "environment as a list": {**_results(), "environment": ["python"]},
    "malformed heatmap": _results(failures=[{"reason": "r", "heatmap": {"values": "red"}}]),
    "non-dict failure": _results(failures=["a string"]),
    "worst ratio as text": _results(worst_ratio="high"),
}


@pytest.mark.parametrize("name", [*MALFORMED_RESULTS, "100,000 deep"])
def test_report_on_a_malformed_results_file_is_one_line_and_exit_2(tmp_path, name):
    text = DEEP if name == "100,000 deep" else json.dumps(MALFORMED_RESULTS[name])
    (tmp_path / "r.json").write_text(text)
    done = _cli(tmp_path, "report", "r.json", "-o", "out.html")
    _one_clean_line(done)
    assert not (tmp_path / "out.html").exists()


@pytest.mark.parametrize(
    "baseline",
    [
        {"expected_failures": [{"cell": 5, "adapter": "a", "reason": "r"}]},
        {"expected_failures": [{"cell": ["forward/*"], "adapter": "a", "reason": "r"}]},
        DEEP,
    ],
    ids=["int-cell", "list-cell", "deep"],
)
def test_a_malformed_baseline_is_a_usage_error_not_an_internal_error(tmp_path, baseline):
    (tmp_path / "b.json").write_text(baseline if isinstance(baseline, str) else json.dumps(baseline))
    done = _cli(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", "test_forward and 1d and float64 and none",
                "--baseline", "b.json", "--results", "r.json")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "INTERNALERROR" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert "b.json" in done.stderr


@pytest.mark.parametrize(
    "problem",
    [
        '{"in_channels": "x", "out_channels": 1, "input_size": [5], "kernel_size": [3]}',
        '{"in_channels": 1, "out_channels": 1, "input_size": [5], "kernel_size": [3], "stride": NaN}',
        '{"in_channels": 1, "out_channels": 1, "input_size": [5], "kernel_size": [3], "padding": {}}',
        '{"in_channels": ' + "[" * 20_000 + "]" * 20_000 + "}",
        "[1, 2]",
    ],
    ids=["string-channels", "nan-stride", "dict-padding", "deep", "not-an-object"],
)
def test_describe_with_a_bad_problem_is_one_line_and_exit_2(tmp_path, problem):
    _one_clean_line(_cli(tmp_path, "describe", problem))


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A results file with one real failure of OffByOne (forward/1d/float64/none)."""
    done = _cli(tmp_path, "run", "--adapter", f"{FAULTY}:OffByOne", "-k", "test_forward and 1d and float64 and none",
                "--results", "r.json", "--baseline", "none")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    return tmp_path / "r.json"


FAILURE = f"{FAULTY}:OffByOne/forward/1d/float64/none/0"


def test_repro_exit_codes_and_bad_scripts(recorded):
    where = recorded.parent
    assert _cli(where, "repro", "r.json", FAILURE).returncode == 1  # the bug is still there
    (where / "a-directory").mkdir()
    _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--script", "a-directory"))
    _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--script", "/proc/repro.py"))


@pytest.mark.parametrize(
    "damage",
    [lambda f: f.pop("spec"), lambda f: f.update(operation="linearity-x"), lambda f: f.update(recipe={"x": 1})],
    ids=["no-spec", "bad-operation", "bad-recipe"],
)
def test_repro_of_a_failure_it_cannot_rebuild_is_one_line_and_exit_2(recorded, damage):
    data = json.loads(recorded.read_text())
    damage(data["cells"][0]["failures"][0])
    recorded.write_text(json.dumps(data))
    _one_clean_line(_cli(recorded.parent, "repro", "r.json", FAILURE))


def test_report_refuses_to_overwrite_its_inputs(recorded):
    where = recorded.parent
    before = recorded.read_text()
    _one_clean_line(_cli(where, "report", "r.json", "-o", "r.json"))
    (where / "old.json").write_text(before)
    _one_clean_line(_cli(where, "report", "r.json", "--baseline", "old.json", "-o", "old.json"))
    _one_clean_line(_cli(where, "report", "r.json", "-o", "."))
    assert recorded.read_text() == before and (where / "old.json").read_text() == before
    assert sorted(p.name for p in where.iterdir() if p.is_file()) == ["old.json", "r.json"]  # no temp litter
