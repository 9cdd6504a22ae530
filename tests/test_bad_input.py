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


FAILURE = "off-by-one/forward/1d/float64/none/0"  # by the adapter's declared name


def test_repro_exit_codes_and_bad_scripts(recorded):
    where = recorded.parent
    assert _cli(where, "repro", "r.json", FAILURE).returncode == 1  # the bug is still there
    (where / "a-directory").mkdir()
    _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--script", "a-directory"))
    _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--script", "/proc/repro.py"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.pop("spec"),
        lambda f: f.update(operation="linearity-x"),
        lambda f: f.update(recipe={"x": 1}),
        lambda f: f["spec"].update(dilation=[-1]),
        lambda f: f["spec"].update(in_channels=-1),
        lambda f: f["spec"].update(input_size=[10**12]),
        lambda f: f["spec"].update(stride=[10**30]),
    ],
    ids=["no-spec", "bad-operation", "bad-recipe", "breaks-a-rule", "negative-channels", "trillion-elements",
         "stride-past-int64"],
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


# ------------------------------------------------------------ found by mutating a real results file
# (every field replaced by null, a string, a list, an object, -1, 10**400, NaN, ...) and by hand


BEYOND_DOUBLES = {
    "a 400-digit count": _results(counts={"passed": 10**400}),
    "a ratio past a double's range": _results(worst_ratio=10**400),
    "seconds past a double's range": _results(seconds={"candidate": 10**400}),
}


@pytest.mark.parametrize("name", [*BEYOND_DOUBLES, "a 5,000-digit number"])
def test_numbers_no_reader_can_hold_are_one_line_and_exit_2(tmp_path, name):
    # json reads a 5,000-digit integer with a bare ValueError, and float() of a 400-digit one overflows.
    text = json.dumps(_results())[:-1] + ', "x": ' + "9" * 5000 + "}" if name.startswith("a 5,000") else None
    (tmp_path / "r.json").write_text(text or json.dumps(BEYOND_DOUBLES[name]))
    _one_clean_line(_cli(tmp_path, "report", "r.json", "-o", "out.html"))
    assert not (tmp_path / "out.html").exists()


def test_a_5000_digit_number_in_a_baseline_is_a_usage_error(tmp_path):
    (tmp_path / "b.json").write_text('{"expected_failures": [], "x": ' + "9" * 5000 + "}")
    done = _cli(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", "test_forward and 1d and float64 and none",
                "--baseline", "b.json", "--results", "r.json")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "INTERNALERROR" not in done.stdout + done.stderr
    assert "b.json" in done.stderr


def test_a_lone_surrogate_in_adapter_text_does_not_stop_the_report(tmp_path):
    # An exception message may hold one ("\udcff" from bytes decoded with surrogateescape); JSON carries it,
    # UTF-8 cannot encode it: the page shows its escape instead of failing to be written.
    data = _results(counts={"failed": 1}, notes=["note \udcff"],
                    failures=[{"reason": "bad \ud800 byte", "status": "failed"}])  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(data))
    done = _cli(tmp_path, "report", "r.json", "-o", "out.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert "bad \\ud800 byte" in page and "note \\udcff" in page


def test_repro_of_a_null_failure_entry_is_one_line_and_exit_2(recorded):
    data = json.loads(recorded.read_text())
    data["cells"][0]["failures"][0] = None
    recorded.write_text(json.dumps(data))
    _one_clean_line(_cli(recorded.parent, "repro", "r.json", FAILURE))


def test_repro_refuses_a_bad_timeout_and_a_script_over_the_results(recorded):
    where = recorded.parent
    before = recorded.read_text()
    for timeout in ("nan", "inf", "0", "-1"):
        _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--case-timeout", timeout))
    _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--script", "r.json"))
    _one_clean_line(_cli(where, "repro", "r.json", FAILURE, "--script", "./r.json"))
    assert recorded.read_text() == before
    done = _cli(where, "repro", "r.json", FAILURE, "--script", "repro.py")
    assert done.returncode == 1 and (where / "repro.py").read_text().startswith("#!/usr/bin/env python3")
    assert sorted(p.name for p in where.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_report_refuses_an_output_hard_linked_to_the_results(recorded):
    where = recorded.parent
    before = recorded.read_text()
    os.link(recorded, where / "page.html")
    _one_clean_line(_cli(where, "report", "r.json", "-o", "page.html"))
    assert recorded.read_text() == before


def test_adapters_lists_a_broken_adapter_in_one_line_and_goes_on(monkeypatch, capsys):
    import adapters.registry
    from conformance.cli_tools import adapters_command

    # Named by their targets, which load_adapter() takes as they are (a built-in's name needs its backend).
    nasty, caps, gone, fine = (f"{FAULTY}:NastyVersions", f"{FAULTY}:CapabilitiesRaises", "no_such_module:X",
                               f"{FAULTY}:Correct")  # fmt: skip
    monkeypatch.setattr(adapters.registry, "known_adapters", lambda: {t: t for t in (nasty, caps, gone, fine)})
    assert adapters_command(None) == 0
    out = capsys.readouterr().out
    lines = {line.split(" ")[0]: line for line in out.splitlines() if not line.startswith(" ")}
    assert set(lines) == {nasty, caps, gone, fine}, out
    assert "unavailable" in lines[caps] and "unavailable" in lines[gone]
    assert "unavailable" not in lines[nasty] and len(lines[nasty]) < 5_000  # versions() sanitised, not fatal
    assert "dims:" in out
