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

from tests.identity import declared

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
    """The cells of the adapter loaded as ``adapter`` (results key them by its declared name)."""
    return {c["cell"]: c for c in data["cells"] if c["adapter"] == declared(adapter)}


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
    again = _run(tmp_path, "repro", "r.json", f"{declared(adapter)}/forward/1d/float64/none/0")
    assert again.returncode == 1 and "failed" in again.stdout, again.stdout + again.stderr


def _baseline(path: Path, *entries: dict) -> None:
    path.write_text(json.dumps({"schema": "conv-conformance/baseline", "version": 2, "entries": list(entries)}))


OFF_BY_ONE = {"id": "off-by-one", "adapter": "off-by-one", "reason": "known off-by-one",
              "when": {"chapter": "forward", "dtype": "float64", "product": "output"},
              "signature": {"status": "failed"}}  # fmt: skip


def test_a_known_bug_does_not_hide_a_new_one_in_the_same_cell(tmp_path):
    adapter = f"{FAULTY}:OffByOne"
    _baseline(tmp_path / "baseline.json", OFF_BY_ONE)
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json",
                "--baseline", "baseline.json")  # fmt: skip
    # The off-by-one answers are explained, so the search goes on, and finds that an empty batch raises.
    assert done.returncode == 1, done.stdout + done.stderr
    cell = _cells(_results(tmp_path / "r.json"), adapter)["forward/1d/float64/none"]
    assert cell["outcome"] == "error" and cell["counts"]["expected"] >= 1
    assert cell["failures"][-1]["descriptor"].startswith("conv1d_mb0_"), cell["failures"][-1]
    assert cell["detection"]["examples_to_first_failure"] >= 2 and cell["detection"]["shrink_seconds"] >= 0


def test_a_baseline_turns_known_failures_into_expected_ones(tmp_path):
    adapter = f"{FAULTY}:OffByOne"
    empty_batch = {"id": "empty-batch", "adapter": "off-by-one", "reason": "raises on an empty batch",
                   "when": {"batch": 0}, "signature": {"status": "error"}}  # fmt: skip
    never = {"id": "never", "adapter": "off-by-one", "reason": "matches no case", "when": {"dims": 3}}
    _baseline(tmp_path / "baseline.json", OFF_BY_ONE, empty_batch, never)
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json",
                "--baseline", "baseline.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    cells = _cells(data, adapter)
    assert {c["outcome"] for c in cells.values()} == {"expected failure"}
    # Explained cases do not stop the search: every example of each cell ran, each counted as expected.
    assert all(c["counts"]["expected"] > 1 and sum(c["explained"].values()) == c["counts"]["expected"]
               for c in cells.values())  # fmt: skip
    states = {e["id"]: e["state"] for e in data["baseline"]["entries"]}
    assert states == {"off-by-one": "explained", "empty-batch": "explained", "never": "not run"}  # no 3-D cell ran
    assert "2 of 3 entries explained" in done.stdout


def test_a_baseline_entry_never_hides_a_failure_it_does_not_describe(tmp_path):
    adapter = f"{FAULTY}:OffByOne"
    baseline = tmp_path / "baseline.json"
    # The same cells, but a signature the off-by-one answer does not fit (its error is not within 2x the bound).
    _baseline(baseline, {"id": "small-rounding", "adapter": "off-by-one", "reason": "a rounding bug",
                         "when": {"chapter": "forward"}, "signature": {"status": "failed", "max_ratio": 2}})
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json",
                "--baseline", "baseline.json")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert {c["outcome"] for c in _cells(data, adapter).values()} <= {"failed", "error"}
    assert data["baseline"]["entries"][0]["state"] == "stale"


def test_the_deprecated_cell_glob_baseline_is_still_read_with_a_message(tmp_path):
    adapter = f"{FAULTY}:OffByOne"
    (tmp_path / "baseline.json").write_text(json.dumps({"expected_failures": [
        {"cell": "forward/1d/float64/*", "adapter": "off-by-one", "reason": "known off-by-one"}]}))  # fmt: skip
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json",
                "--baseline", "baseline.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deprecated cell-glob form" in done.stdout
    assert {c["outcome"] for c in _cells(_results(tmp_path / "r.json"), adapter).values()} == {"expected failure"}


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

    baseline = {"schema": "conv-conformance/baseline", "version": 2, "entries": [
        {"id": "flaky", "adapter": declared(adapter), "reason": "flaky", "when": {"cell": "forward/1d/float64/*"}}]}
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    done = _run(tmp_path, "run", "--adapter", adapter, "-k", SLICE, "--results", "r.json", "--baseline",
                "baseline.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(c["outcome"] == "expected failure" for c in _cells(_results(tmp_path / "r.json"), adapter).values())


def test_cell_globs_select_cells_exactly(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "--cell", "backward/1d/float64/*",
                "--cell", "forward/1d/float64/none", "--results", "r.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    cells = set(_cells(_results(tmp_path / "r.json"), f"{FAULTY}:Correct"))
    # Anchored, unlike -k: transposed-backward/1d/... is not backward/1d/...
    assert cells == {"forward/1d/float64/none"} | {f"backward/1d/float64/{form}" for form in
                                                    ("none", "symmetric", "asymmetric", "same", "valid", "fastpath")}
    nothing = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "--cell", "backwrd/*", "--results", "n.json")
    assert nothing.returncode == 2 and "matches no cell" in nothing.stderr, nothing.stdout + nothing.stderr


def test_results_key_adapters_by_declared_name_and_refuse_two_of_one_name(tmp_path):
    done = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "--cell", "forward/1d/float64/none",
                "--results", "r.json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = _results(tmp_path / "r.json")
    assert {c["adapter"] for c in data["cells"]} == {"numpy-correct"}
    assert data["environment"]["adapters"] == {"numpy-correct": f"{FAULTY}:Correct"}
    twice = _run(tmp_path, "run", "--adapter", f"{FAULTY}:Correct", "--adapter", f"{FAULTY}:CorrectUnderAnotherClass",
                 "--cell", "forward/1d/float64/none", "--results", "t.json")  # fmt: skip
    assert twice.returncode == 2, twice.stdout + twice.stderr
    assert "both declare the name 'numpy-correct'" in twice.stderr
