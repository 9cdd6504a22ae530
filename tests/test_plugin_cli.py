"""The runner end to end, as a user runs it: ``conv-conformance run`` on real and faulty adapters.

Each test runs the CLI in a subprocess on a small slice of the suite (``-k``),
so the real plugin, the real Hypothesis settings, pytest-xdist and the results
file are all exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAULTY = "tests.faulty_adapters"
# The faulty adapters support forward and backward, zeros padding, no transposed.
SLICE = "test_forward and 1d and float64 and (none or valid)"


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "conformance.cli", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _results(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["schema"] == "conv-conformance/results"
    return data


def _cells(data: dict, adapter: str) -> dict[str, dict]:
    return {c["cell"]: c for c in data["cells"] if c["adapter"] == adapter}


def test_a_correct_adapter_passes_and_every_cell_is_recorded(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--results", "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    cells = _cells(data, f"{FAULTY}:Correct")
    assert set(cells) == {"forward/1d/float64/none", "forward/1d/float64/valid"}
    assert all(c["outcome"] == "passed" and c["counts"]["passed"] > 0 for c in cells.values())
    assert data["complete"] and data["environment"]["python"]


def test_a_wrong_adapter_fails_with_a_minimal_case_and_a_repro_script_that_fails(tmp_path):
    adapter = f"{FAULTY}:OffByOne"
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json")
    assert done.returncode == 1, done.stdout + done.stderr
    cell = _cells(_results(tmp_path / "r.json"), adapter)["forward/1d/float64/none"]
    assert cell["outcome"] == "failed"
    minimal = cell["failures"][-1]
    # Shrunk: one item, one channel, the smallest kernel and input.
    assert minimal["descriptor"].startswith("conv1d_mb1_ic1_oc1_i1_k1"), minimal["descriptor"]
    script = tmp_path / "repro.py"
    script.write_text(minimal["repro"])
    rerun = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    # The CLI re-runs the recorded failure by its id.
    again = _run(tmp_path, "repro", "r.json", f"{adapter}/forward/1d/float64/none/0")
    assert again.returncode == 1 and "failed" in again.stdout, again.stdout + again.stderr


def test_a_baseline_turns_a_known_failure_into_an_expected_one(tmp_path):
    adapter = f"{FAULTY}:OffByOne"
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"expected_failures": [
        {"cell": "forward/1d/float64/*", "adapter": adapter, "reason": "known off-by-one"},
        {"cell": "forward/9d/nothing", "adapter": adapter, "reason": "matches no cell"}]}))  # fmt: skip
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json",
                "--baseline", "baseline.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forward/9d/nothing" in done.stdout + done.stderr  # the entry that matched nothing is named
    cells = _cells(_results(tmp_path / "r.json"), adapter)
    assert {c["outcome"] for c in cells.values()} == {"expected failure"}


def test_unknown_adapter_and_malformed_baseline_are_usage_errors(tmp_path):
    done = _run(tmp_path, "run", "--adapter", "no-such-backend", "-k", SLICE)
    assert done.returncode == 2
    assert "torch" in done.stdout + done.stderr  # the known names are listed
    (tmp_path / "bad.json").write_text("{not json")
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "--baseline", "bad.json", "-k", SLICE)
    assert done.returncode == 2


def test_faults_get_their_own_status_and_the_run_goes_on(tmp_path):
    # A raising adapter is an error; a crashing one, isolated, is crashed; both keep the case.
    for name, status, extra in (("Raises", "error", []), ("Exits", "crashed", ["--isolate"])):
        adapter = f"{FAULTY}:{name}"
        done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", f"{name}.json", *extra)
        assert done.returncode == 1, done.stdout + done.stderr
        cells = _cells(_results(tmp_path / f"{name}.json"), adapter)
        assert any(c["counts"][status] > 0 and c["failures"] for c in cells.values()), (name, cells)


def test_xdist_workers_write_shards_that_merge(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--results", "r.json", "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    # Each worker wrote its shard into the run's private directory; merged, the directory is gone.
    assert not (tmp_path / "r.json.shards").exists()
    cells = _cells(_results(tmp_path / "r.json"), f"{FAULTY}:Correct")
    assert len(cells) == 2 and all(c["counts"]["passed"] for c in cells.values())


# The Ctrl-C test that pressed SIGINT every second until the run stopped is gone: one press must stop it
# now, and tests/test_run_integrity.py checks that deterministically (an adapter that hangs or swallows the
# interrupt, a marker file instead of sleeps): test_one_signal_stops_the_run_and_keeps_what_was_gathered.


@pytest.mark.torch
def test_torch_golden_vectors_through_the_cli(tmp_path):
    pytest.importorskip("torch")
    done = _run(tmp_path, "run", "--adapter", "torch", "-k", "test_golden", "--results", "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    cells = _cells(_results(tmp_path / "r.json"), "torch")
    assert cells["golden/2d/float32/article-stride1"]["outcome"] == "passed"
    assert cells["golden/2d/float32/dilation-0-rejected"]["outcome"] == "passed"


def test_a_problem_the_adapter_cannot_pass_on_is_unsupported_not_rejected():
    # ONNX Conv has no padding mode: the invalid-problem chapter must not count the
    # adapter's refusal as the backend rejecting an invalid problem.
    from conformance.data import DataRecipe
    from conformance.faults import AdapterCaller
    from conformance.runner import run_case, run_invalid_case
    from conformance.spec import ConvSpec

    pytest.importorskip("onnxruntime")
    valid = ConvSpec(in_channels=1, out_channels=1, input_size=(5,), kernel_size=2, padding=1, padding_mode="reflect")
    invalid = valid.replace(padding=((5, 0),))  # reflect padding as large as the input
    with AdapterCaller("onnxruntime", timeout=None) as caller:
        assert run_case(caller, valid, DataRecipe()).status == "unsupported"
        assert run_invalid_case(caller, invalid, "reflect_padding_smaller_than_input").status == "unsupported"


def test_a_worker_killed_by_its_adapter_loses_nothing_already_gathered(tmp_path):
    # Without --isolate, ExitsOn3D takes its xdist worker down on every 3-D cell; the
    # 1-D and 2-D cells that finished on the same workers are still in the results.
    adapter = f"{FAULTY}:ExitsOn3D"
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", "test_forward and float64", "--results", "r.json",
                "-n", "2")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr  # incomplete: a worker died
    assert "crashed" in done.stdout + done.stderr
    cells = _cells(_results(tmp_path / "r.json"), adapter)
    finished = {cell for cell, record in cells.items() if record["counts"]["passed"] > 0}
    assert {f"forward/{d}d/float64/none" for d in (1, 2)} <= finished, sorted(cells)
    assert not any(cell.startswith("forward/3d") and record["counts"]["passed"] for cell, record in cells.items())


def test_max_examples_and_seed_are_honoured_and_recorded(tmp_path):
    args = ("run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--results", "r.json", "--profile", "dev",
            "--max-examples", "4", "--seed", "7")  # fmt: skip
    done = _run(tmp_path, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert data["environment"]["seed"] == "7" and data["environment"]["max_examples"] == 4
    assert all(0 < sum(c["counts"].values()) <= 4 for c in data["cells"])


def test_a_bad_max_examples_is_a_usage_error(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "-k", SLICE, "--max-examples", "0")
    assert done.returncode == 2
    assert "--max-examples" in done.stderr


def test_a_failure_hypothesis_cannot_replay_still_counts_and_honours_the_baseline(tmp_path):
    adapter = f"{FAULTY}:WrongTheFirstTime"
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json", "--baseline", "none")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FlakyFailure" in done.stdout
    assert all(c["outcome"] == "failed" for c in _cells(_results(tmp_path / "r.json"), adapter).values())

    baseline = {"expected_failures": [{"cell": "forward/1d/float64/*", "adapter": adapter, "reason": "flaky"}]}
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json", "--baseline",
                "baseline.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(c["outcome"] == "expected failure" for c in _cells(_results(tmp_path / "r.json"), adapter).values())
