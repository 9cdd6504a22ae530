"""A run that did not finish never exits 0, and bad paths or options stop a run before it starts (issue 9,
sections 2 and 4).  ``conv-conformance run`` in a subprocess, as a user (or CI) runs it, on a two-cell
slice; the hostile adapters are in :mod:`tests.hostile_adapters` and :mod:`tests.faulty_adapters`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLICE = "test_forward and 1d and float64 and (none or valid)"
HOSTILE = "tests.hostile_adapters"
FAULTY = "tests.faulty_adapters"


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CONV_CONFORMANCE_TEST_MARKER": str(tmp_path / "marker")}


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _results(path: Path) -> dict:
    data = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} is not strict JSON"))
    assert data["schema"] == "conv-conformance/results"
    return data


def _cells(data: dict) -> dict[str, dict]:
    return {c["cell"]: c for c in data["cells"]}


# ------------------------------------------------------- never exit 0 unfinished


@pytest.mark.parametrize(
    ("adapter", "cells_before"),
    [
        # The cell it died in is there too, with the call it died in as a crashed case.
        (f"{HOSTILE}:ExitsZeroInForward", {"forward/1d/float64/none", "forward/1d/float64/valid"}),
        (f"{HOSTILE}:ExitsZeroInInit", set()),
        ("tests.exits_at_import:Anything", set()),
    ],
    ids=["in-forward", "in-init", "at-import"],
)
def test_an_adapter_that_exits_zero_makes_an_incomplete_run_not_a_green_one(tmp_path, adapter, cells_before):
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json", "--report", "r.html")
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert not data["complete"] and any("exited with code 0" in r for r in data["incomplete_reasons"]), data
    assert set(_cells(data)) == cells_before
    if cells_before:
        assert _cells(data)["forward/1d/float64/valid"]["counts"]["crashed"] == 1
    assert (tmp_path / "r.html").exists() and "Partial run" in (tmp_path / "r.html").read_text()
    assert not (tmp_path / "r.json.shards").exists()


def test_an_in_process_call_holding_the_gil_is_recorded_hung_by_the_watchdog(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:HoldsTheGil", "-k", SLICE, "--results", "r.json",
                "--case-timeout", "1")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    cell = _cells(data)["forward/1d/float64/none"]
    assert cell["counts"]["hung"] == 1 and "held the GIL" in cell["failures"][-1]["reason"]
    assert cell["failures"][-1]["descriptor"].startswith("conv1d_mb")
    assert not data["complete"]


def test_a_dead_xdist_worker_makes_the_run_incomplete(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:ExitsOn3D", "-k", "test_forward and float64 and none",
                "--results", "r.json", "-n", "2")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert not data["complete"] and data["incomplete_reasons"]
    assert _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0
    assert _cells(data)["forward/3d/float64/none"]["counts"]["crashed"] >= 1  # the call it died in


def test_an_adapter_whose_capabilities_raise_is_an_error_not_an_empty_pass(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:CapabilitiesRaises", "--adapter", f"{FAULTY}:Correct",
                "-k", SLICE, "--results", "r.json")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    error = data["adapter_errors"][f"{FAULTY}:CapabilitiesRaises"]
    assert error["status"] == "error" and "cannot query the device" in error["message"]
    assert not data["complete"]
    assert {c["adapter"] for c in data["cells"]} == {f"{FAULTY}:Correct"}  # the other adapter still ran


@pytest.mark.parametrize("adapter", ["SegfaultsInInit", "SegfaultsInCapabilities"])
def test_isolated_init_and_capabilities_crashes_are_recorded_not_fatal(tmp_path, adapter):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:{adapter}", "-k", SLICE, "--results", "r.json",
                "--isolate")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    error = _results(tmp_path / "r.json")["adapter_errors"][f"{FAULTY}:{adapter}"]
    assert error["status"] == "crashed" and "SIGSEGV" in error["message"]


def test_an_adapter_that_fails_to_import_is_one_line_and_exit_2(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:FailsToLoad", "-k", SLICE, "--results", "r.json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "libconv.so" in done.stderr and "INTERNALERROR" not in done.stdout + done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 2, done.stderr


# ------------------------------------------------------- signals


def _start(tmp_path: Path, adapter: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json",
         "--report", "r.html"],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for_marker(tmp_path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not (tmp_path / "marker").exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the adapter never reached the valid-padding cell"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("adapter", "signum", "status"),
    [
        ("SwallowsFirstInterrupt", signal.SIGINT, 130),  # one press stops the run, even if it is swallowed
        ("HangsInLastCell", signal.SIGINT, 130),
        ("HangsInLastCell", signal.SIGTERM, 143),
    ],
    ids=["ctrl-c-swallowed", "ctrl-c", "sigterm"],
)
def test_one_signal_stops_the_run_and_keeps_what_was_gathered(tmp_path, adapter, signum, status):
    process = _start(tmp_path, f"{HOSTILE}:{adapter}")
    try:
        _wait_for_marker(tmp_path, process)  # the none cell is done; the run is inside the valid one
        process.send_signal(signum)  # exactly once
        out, _ = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == status, out
    data = _results(tmp_path / "r.json")
    assert not data["complete"], data["incomplete_reasons"]
    assert _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0
    assert (tmp_path / "r.html").exists()


# ------------------------------------------------------- files


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--results", ""], "--results is empty"),
        (["--results", "."], "is a directory"),
        (["--results", "/proc/r.json"], "cannot be written"),
        (["--results", "r.json", "--report", "r.json"], "--report is the --results file"),
        (["--results", "r.json", "--report", "."], "is a directory"),
        (["--results", "base.json", "--baseline", "base.json"], "overwrite its own baseline"),
        (["--results", "r.json", "--baseline", "base.json", "--report", "base.json"], "--report is the --baseline"),
        (["--results", "r.json", "--case-timeout", "nan"], "--case-timeout=nan"),
        (["--results", "r.json", "--case-timeout", "inf"], "--case-timeout=inf"),
        (["--results", "r.json", "--max-examples", str(10**12)], "--max-examples"),
    ],
)
def test_bad_paths_and_options_are_refused_before_anything_runs(tmp_path, args, message):
    (tmp_path / "base.json").write_text('{"expected_failures": []}')
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "base.json").read_text() == '{"expected_failures": []}'
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_fuzz_minutes_must_be_a_positive_finite_number(tmp_path, minutes):
    done = _run(tmp_path, "fuzz", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--minutes", minutes)
    assert done.returncode == 2 and "--minutes" in done.stderr, done.stdout + done.stderr


def test_shards_go_next_to_the_results_even_if_the_adapter_changes_directory(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{HOSTILE}:ChangesDirectory", "-k", SLICE, "--results", "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_results(tmp_path / "r.json")["cells"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["r.json"]  # no litter


def test_two_runs_on_one_results_file_keep_their_shards_apart(tmp_path):
    first = _start(tmp_path, f"{HOSTILE}:HangsInLastCell")
    try:
        _wait_for_marker(tmp_path, first)
        (tmp_path / "marker").unlink()
        second = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", "test_forward and 2d and float64 "
                      "and none", "--results", "r.json")  # fmt: skip
        assert second.returncode == 0, second.stdout + second.stderr
        # The second run's file holds its own cell only, none of the first run's.
        assert set(_cells(_results(tmp_path / "r.json"))) == {"forward/2d/float64/none"}
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=90)
    assert set(_cells(_results(tmp_path / "r.json"))) == {"forward/1d/float64/none", "forward/1d/float64/valid"}


def test_results_are_strict_json_with_non_finite_values_as_strings(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:AllNaN", "-k", SLICE, "--results", "r.json",
                "--baseline", "none")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")  # parse_constant fails the test on a bare NaN or Infinity
    verdict = _cells(data)["forward/1d/float64/none"]["failures"][-1]["verdicts"]["output"]
    assert "nan" in (verdict["got"], verdict["error"], verdict["ratio"]), verdict
