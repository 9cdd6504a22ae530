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


@pytest.mark.parametrize(
    ("adapter", "cells"),
    [
        (f"{HOSTILE}:ExitsWithUsageStatusInForward", {"forward/1d/float64/none", "forward/1d/float64/valid"}),
        (f"{HOSTILE}:ExitsWithUsageStatusInInit", set()),
    ],
    ids=["in-forward", "in-init"],
)
def test_an_adapter_exiting_with_pytests_usage_status_is_not_taken_for_bad_usage(tmp_path, adapter, cells):
    # Exit 4 is what pytest returns for a usage error; from an adapter's os._exit(4) it is a run that died.
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json")
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert not data["complete"] and any("exited with code 4" in r for r in data["incomplete_reasons"]), data
    assert set(_cells(data)) == cells
    assert not (tmp_path / "r.json.shards").exists()


def test_an_adapter_that_signals_its_own_process_makes_an_incomplete_run_not_an_interrupted_one(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{HOSTILE}:SignalsItself", "-k", SLICE, "--results", "r.json")
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert not data["complete"] and _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0, data


def test_an_in_process_call_holding_the_gil_is_recorded_hung_by_the_watchdog(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:HoldsTheGil", "-k", SLICE, "--results", "r.json",
                "--case-timeout", "1")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    cell = _cells(data)["forward/1d/float64/none"]
    assert cell["counts"]["hung"] == 1 and "held the GIL" in cell["failures"][-1]["reason"]
    assert cell["failures"][-1]["descriptor"].startswith("conv1d_mb")
    assert not data["complete"]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_process_an_in_process_adapter_starts_does_not_outlive_the_run(tmp_path):
    from tests.test_faults import gone, wait_until

    pidfile = tmp_path / "helper.pid"
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--adapter", f"{FAULTY}:SpawnsHelper",
                           "-k", SLICE, "--results", "r.json", "--case-timeout", "1"], cwd=tmp_path,
                          env={**_env(tmp_path), "CONV_CONFORMANCE_TEST_PIDFILE": str(pidfile)},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0, done.stdout + done.stderr
    helper = int(pidfile.read_text())
    try:
        assert wait_until(lambda: gone(helper), timeout=5.0), f"helper {helper} outlived the run"
    finally:
        if not gone(helper):  # pragma: no cover - clean up after a failure
            os.kill(helper, signal.SIGKILL)


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
    assert {c["adapter"] for c in data["cells"]} == {"numpy-correct"}  # the other adapter still ran


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


def test_an_adapter_module_calling_sys_exit_at_import_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "sys_exits_at_import.py").write_text("import sys\n\nsys.exit(0)\n")
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--adapter", "sys_exits_at_import:Any",
                           "-k", SLICE, "--results", "r.json"], cwd=tmp_path,
                          env={**_env(tmp_path), "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sys.exit(0)" in done.stderr and "INTERNALERROR" not in done.stdout + done.stderr, done.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.json.shards").exists()


# ------------------------------------------------------- signals


def _start(tmp_path: Path, adapter: str, grace: str | None = None, plain: bool = False, *extra: str
           ) -> subprocess.Popen:  # fmt: skip
    """The CLI (or, ``plain``, pytest without the supervisor) on the two-cell slice, in the background;
    ``grace`` is the supervisor's "RESEND,KILL" seconds after the first signal."""
    env = _env(tmp_path) if grace is None else {**_env(tmp_path), "CONV_CONFORMANCE_INTERRUPT_GRACE": grace}
    if plain:
        command = [sys.executable, "-m", "pytest", str(ROOT / "conformance" / "suite"), "-p", "no:cacheprovider",
                   "-q", "--adapter", adapter, "-k", SLICE, "--results", "r.json"]  # fmt: skip
    else:
        command = [sys.executable, "-m", "conformance.cli", "run", "--adapter", adapter, "-k", SLICE, "--results",
                   "r.json", "--report", "r.html"]  # fmt: skip
    return subprocess.Popen(command + list(extra), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _wait_for_marker(tmp_path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not (tmp_path / "marker").exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the adapter never reached the valid-padding cell"
        time.sleep(0.05)


def _signal_once_inside(tmp_path: Path, process: subprocess.Popen, signum: int) -> str:
    """Wait until the run is provably inside the last cell, send ``signum`` exactly once, and return the
    output once it has stopped (killed if it never does)."""
    try:
        _wait_for_marker(tmp_path, process)
        process.send_signal(signum)
        out, _ = process.communicate(timeout=90)
    finally:
        process.kill()
    return out


@pytest.mark.parametrize(
    ("adapter", "signum", "status"),
    [
        ("SwallowsFirstInterrupt", signal.SIGINT, 130),  # one press stops the run, even if it is swallowed
        ("HangsInLastCell", signal.SIGINT, 130),
        ("HangsInLastCell", signal.SIGTERM, 143),
        ("CatchesKeyboardInterrupt", signal.SIGINT, 130),
        ("CatchesKeyboardInterrupt", signal.SIGTERM, 143),
        # Every interrupt swallowed: the supervisor resends, then kills the group, and writes from the shards.
        ("SwallowsEveryInterrupt", signal.SIGINT, 130),
        ("SwallowsEveryInterrupt", signal.SIGTERM, 143),
    ],
    ids=["ctrl-c-swallowed", "ctrl-c", "sigterm", "ctrl-c-caught", "sigterm-caught", "ctrl-c-always-swallowed",
         "sigterm-always-swallowed"],
)
def test_one_signal_stops_the_run_and_keeps_what_was_gathered(tmp_path, adapter, signum, status):
    process = _start(tmp_path, f"{HOSTILE}:{adapter}", grace="1,3")
    out = _signal_once_inside(tmp_path, process, signum)
    assert process.returncode == status, out
    data = _results(tmp_path / "r.json")
    assert not data["complete"], data["incomplete_reasons"]
    assert _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0
    # A call the interrupt (or the kill after it) cut short is no verdict on the adapter, and a cell it
    # stopped before any case was recorded is not in the results (zero cases would read as "unsupported").
    assert all(c["counts"]["crashed"] == 0 for c in data["cells"]), data["cells"]
    assert set(_cells(data)) == {"forward/1d/float64/none"}, data["cells"]
    assert (tmp_path / "r.html").exists()


def test_an_interrupted_baselined_cell_is_not_an_unexpected_pass(tmp_path):
    adapter = f"{HOSTILE}:HangsInLastCell"
    (tmp_path / "b.json").write_text(json.dumps({"expected_failures": [
        {"cell": "forward/1d/float64/valid", "adapter": adapter, "reason": "known"}]}))  # fmt: skip
    process = _start(tmp_path, adapter, "1,3", False, "--baseline", "b.json")
    out = _signal_once_inside(tmp_path, process, signal.SIGINT)
    assert process.returncode == 130, out
    outcomes = {c["cell"]: c["outcome"] for c in _results(tmp_path / "r.json")["cells"]}
    assert outcomes == {"forward/1d/float64/none": "passed"}, outcomes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_under_xdist_stops_the_run_and_counts_no_worker_as_crashed(tmp_path, signum):
    # The worker killed mid-call by the interrupt leaves an in-flight record: it must not become a crash.
    process = _start(tmp_path, f"{HOSTILE}:HangsInLastCell", "1,3", False, "-n", "2")
    out = _signal_once_inside(tmp_path, process, signum)
    assert process.returncode == (143 if signum == signal.SIGTERM else 130), out
    data = _results(tmp_path / "r.json")
    assert not data["complete"] and _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0, data
    assert all(c["counts"]["crashed"] == 0 for c in data["cells"]), data["cells"]
    assert not (tmp_path / "r.json.shards").exists()


def test_an_interrupt_swallowed_by_a_gc_callback_stops_the_run_at_the_next_example(tmp_path):
    # The supervisor's resend is 10 minutes away: only the plugin, re-raising the interrupt at the next
    # example, can stop this run in time.
    process = _start(tmp_path, f"{HOSTILE}:InterruptLandsInGcCallback", grace="600,600")
    out = _signal_once_inside(tmp_path, process, signal.SIGINT)
    assert process.returncode == 130, out
    after = tmp_path / "marker.after"
    calls = after.read_text().splitlines() if after.exists() else []
    assert len(calls) <= 1, f"the run went on calling the adapter after the interrupt: {calls}"
    data = _results(tmp_path / "r.json")
    assert not data["complete"] and any("SIGINT" in r for r in data["incomplete_reasons"]), data
    assert _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_plain_pytest_treats_sigterm_like_ctrl_c(tmp_path, signum):
    process = _start(tmp_path, f"{HOSTILE}:HangsInLastCell", plain=True)
    out = _signal_once_inside(tmp_path, process, signum)
    assert process.returncode == 2, out  # pytest's "interrupted"
    data = _results(tmp_path / "r.json")
    assert not data["complete"], data
    assert f"interrupted by {signal.Signals(signum).name}" in data["incomplete_reasons"]
    assert _cells(data)["forward/1d/float64/none"]["counts"]["passed"] > 0
    assert not (tmp_path / "r.json.shards").exists()


# ------------------------------------------------------- time budget


def test_cells_a_time_budget_did_not_reach_are_listed_not_incomplete(tmp_path):
    # A budget spent before the first cell: every cell is listed as not reached, the run is complete, exit 0.
    done = _run(tmp_path, "fuzz", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--results", "r.json",
                "--minutes", "1e-9")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert data["complete"] and data["incomplete_reasons"] == [], data
    assert sorted(data["not_reached"]) == [f"numpy-correct: forward/1d/float64/{p}" for p in ("none", "valid")]
    assert "2 cell(s) not reached" in done.stdout


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
        (["--results", "r.json", "--report", "/proc/r.html"], "--report='/proc/r.html' cannot be written"),
        (["--results", "r.json", "--report", ""], "--report='' is empty"),
        (["--results", "r.json", "--startup-timeout", "0"], "--startup-timeout=0"),
        (["--results", "r.json", "--startup-timeout=-inf"], "--startup-timeout=-inf"),
        (["--results", "r.json", "--case-timeout", "0"], "--case-timeout=0"),
        (["--results", "r.json", "--", "--time-budget", "nan"], "--time-budget='nan'"),
        (["--results", "link.json", "--report", "r.json"], "--report is the --results file"),  # a symlink
    ],
)
def test_bad_paths_and_options_are_refused_before_anything_runs(tmp_path, args, message):
    (tmp_path / "base.json").write_text('{"expected_failures": []}')
    (tmp_path / "link.json").symlink_to(tmp_path / "r.json")
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "base.json").read_text() == '{"expected_failures": []}'
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("select", ["(((", "no_cell_is_called_this"], ids=["bad-k", "k-matches-nothing"])
def test_a_selection_that_runs_nothing_is_bad_usage_and_keeps_the_old_results(tmp_path, select):
    (tmp_path / "r.json").write_text("old")  # an earlier run's file: nothing ran, so nothing may replace it
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", select, "--results", "r.json",
                "--report", "r.html")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert (tmp_path / "r.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_fuzz_minutes_must_be_a_positive_finite_number(tmp_path, minutes):
    done = _run(tmp_path, "fuzz", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--minutes", minutes)
    assert done.returncode == 2 and "--minutes" in done.stderr, done.stdout + done.stderr


def test_shards_go_next_to_the_results_even_if_the_adapter_changes_directory(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{HOSTILE}:ChangesDirectory", "-k", SLICE, "--results", "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_results(tmp_path / "r.json")["cells"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["r.json"]  # no litter


def test_hard_links_to_the_results_file_are_the_results_file(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    os.link(tmp_path / "old.json", tmp_path / "hard.json")
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--results", "old.json",
                "--report", "hard.json")  # fmt: skip
    assert done.returncode == 2 and "--report is the --results file" in done.stderr, done.stdout + done.stderr
    assert (tmp_path / "hard.json").read_text() == "{}"


@pytest.mark.parametrize("plain", [False, True], ids=["cli", "plain-pytest"])
def test_a_second_run_on_a_results_file_being_written_is_refused(tmp_path, plain):
    first = _start(tmp_path, f"{HOSTILE}:HangsInLastCell", plain=plain)
    try:
        _wait_for_marker(tmp_path, first)
        second = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", "test_forward and 2d and float64 "
                      "and none", "--results", "r.json")  # fmt: skip
        assert second.returncode == 2, second.stdout + second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"another run (pid {first.pid})" in lines[0], second.stderr
        assert "Traceback" not in second.stdout + second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=90)
    # The first run's results are its own (the cell it finished; the one it was interrupted in has no case), none
    # of the refused run's, and nothing is left behind.
    assert set(_cells(_results(tmp_path / "r.json"))) <= {"forward/1d/float64/none", "forward/1d/float64/valid"}, out
    assert _cells(_results(tmp_path / "r.json"))["forward/1d/float64/none"]["counts"]["passed"] > 0
    assert not (tmp_path / "r.json.shards").exists()
    # Once it is over, the same results file is free again.
    again = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--results", "r.json")
    assert again.returncode == 0, again.stdout + again.stderr


def test_results_are_strict_json_with_non_finite_values_as_strings(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:AllNaN", "-k", SLICE, "--results", "r.json",
                "--baseline", "none")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")  # parse_constant fails the test on a bare NaN or Infinity
    verdict = _cells(data)["forward/1d/float64/none"]["failures"][-1]["verdicts"]["output"]
    assert "nan" in (verdict["got"], verdict["error"], verdict["ratio"]), verdict


def test_non_finite_numbers_anywhere_are_written_as_strings():
    from conformance.results import Results, strict

    results = Results({"backends": {"evil": {"v": float("nan"), "w": float("-inf")}}})
    results.cell("forward/1d/float64/none", "x").add("failed", float("inf"), {"heatmap": {"values": [[float("inf")]]}})
    text = json.dumps(strict(results.to_dict()), allow_nan=False)  # raises on a bare NaN or Infinity
    data = json.loads(text)
    assert data["environment"]["backends"]["evil"] == {"v": "nan", "w": "-inf"}
    assert data["cells"][0]["failures"][0]["heatmap"]["values"] == [["inf"]]
    assert data["cells"][0]["worst_ratio"] == "inf"


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from conformance import results

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "replace", refuse)
    with pytest.raises(OSError):
        results.write_json(tmp_path / "r.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []
