"""Nothing an adapter does can turn a wrong answer into a pass (issue 9, sections 1 and 3, and --isolate).

Each test uses a faulty adapter from :mod:`tests.faulty_adapters` that passed, or
broke the run, before the suite gave adapters their own copies, copied their
answers, treated optional methods as untrusted and kept the whole adapter in the
isolated worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conformance.data import DataRecipe
from conformance.faults import AdapterBroken, AdapterCaller
from conformance.runner import run_case
from conformance.spec import ConvSpec
from conformance.watchdog import read_inflight
from tests.test_faults import gone, wait_until

ROOT = Path(__file__).resolve().parents[1]
MODES = [pytest.param(False, id="in-process"), pytest.param(True, id="isolated")]
# An asymmetric kernel and real data: flipping the kernel or scaling an input changes the answer.
SPEC = ConvSpec(2, 3, (6, 5), (3, 2), padding=((1, 0), (0, 1)), dtype="float64")
DATA = DataRecipe("real", seed=3)


def ref(name: str) -> str:
    return f"tests.faulty_adapters:{name}"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def _cells(path: Path) -> dict[str, dict]:
    return {c["cell"]: c for c in json.loads(path.read_text())["cells"]}


# ------------------------------------------------------- the oracle judges pristine data


@pytest.mark.parametrize("isolate", MODES)
@pytest.mark.parametrize(
    ("adapter", "operation", "names"),
    [
        ("FlipsKernelInPlace", "forward", "w"),
        ("ScalesInputInPlace", "forward", "x"),
        ("ScalesGradOutInPlace", "backward", "grad_out"),
        ("OverwritesInputsWithOnes", "forward", "inputs x and w and b"),
        ("TouchesInputButAnswersRight", "forward", "x"),
    ],
)
def test_an_adapter_that_writes_into_its_inputs_fails_in_both_modes(adapter, operation, names, isolate):
    with AdapterCaller(ref(adapter), timeout=10, isolate=isolate) as caller:
        result = run_case(caller, SPEC, DATA, operation)
    assert result.status == "failed", result.reason
    assert f"modified its {'' if names.startswith('inputs') else 'input '}{names}" in result.reason, result.reason


def test_the_right_answer_with_a_scribbled_input_fails_and_its_repro_script_says_so(tmp_path):
    with AdapterCaller(ref("TouchesInputButAnswersRight"), timeout=10) as caller:
        result = run_case(caller, SPEC, DATA)
    # The answer itself was right: the verdict of the output passed; the contract did not.
    assert result.verdicts["output"].status == "passed" and result.status == "failed"
    script = tmp_path / "repro.py"
    script.write_text(result.repro)
    done = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "modified its input(s) x" in done.stdout, done.stdout + done.stderr


def test_a_correct_adapter_still_passes_and_its_arrays_are_its_own():
    x = np.ones(SPEC.input_shape)
    with AdapterCaller(ref("Correct"), timeout=10) as caller:
        outcome = caller.call("forward", SPEC, x, np.ones(SPEC.weight_shape), np.zeros(3))
        assert outcome.ok and outcome.modified == ()
        assert run_case(caller, SPEC, DATA).status == "passed"


def test_golden_vectors_are_not_shared_state_and_a_kernel_flipper_fails_them(tmp_path):
    adapter = ref("FlipsKernelInPlace")
    done = _cli(tmp_path, "run", "--adapter", adapter, "-k", "test_golden and article", "--results", "r.json",
                "--baseline", "none")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    cells = _cells(tmp_path / "r.json")
    assert cells["golden/2d/float32/article-stride1"]["outcome"] == "failed"
    assert "modified its input w" in cells["golden/2d/float32/article-stride1"]["failures"][-1]["reason"]


# ------------------------------------------------------- the properties chapter copies answers


PROPERTIES = "test_property and (linearity or repeatable) and 1]"


def test_an_output_buffer_reused_with_right_values_does_not_break_linearity(tmp_path):
    adapter = ref("ReusesOutputBuffer")
    done = _cli(tmp_path, "run", "--adapter", adapter, "-k", PROPERTIES, "--results", "r.json", "--baseline", "none")
    assert done.returncode == 0, done.stdout + done.stderr
    cells = _cells(tmp_path / "r.json")
    assert {cells[c]["outcome"] for c in cells} == {"passed"}, cells
    assert "properties/1d/float32/linearity-x" in cells


def test_an_output_buffer_that_drifts_is_not_called_repeatable(tmp_path):
    adapter = ref("DriftsInOneBuffer")
    done = _cli(tmp_path, "run", "--adapter", adapter, "-k", PROPERTIES, "--results", "r.json", "--baseline", "none")
    assert done.returncode == 1, done.stdout + done.stderr
    cell = _cells(tmp_path / "r.json")["properties/1d/float32/repeatable"]
    assert cell["outcome"] == "failed" and "first call vs second call" in cell["failures"][-1]["reason"]


# ------------------------------------------------------- optional methods that fail


@pytest.mark.parametrize("isolate", MODES)
@pytest.mark.parametrize("adapter", ["OffByOneWithBrokenRepro", "OffByOneWithGarbageRepro"])
def test_a_failure_stays_a_failure_when_repro_source_fails(adapter, isolate):
    with AdapterCaller(ref(adapter), timeout=10, isolate=isolate) as caller:
        result = run_case(caller, SPEC, DataRecipe("integers", seed=1))
    assert result.status == "failed" and result.repro is None
    assert result.repro_note.startswith("no standalone script: repro_source()"), result.repro_note
    assert result.to_dict()["repro_note"] == result.repro_note


def test_a_broken_repro_source_keeps_the_cell_failed_through_the_cli(tmp_path):
    adapter = ref("OffByOneWithBrokenRepro")
    done = _cli(tmp_path, "run", "--adapter", adapter, "-k", "test_forward and 1d and float64 and none",
                "--results", "r.json", "--baseline", "none")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    cell = _cells(tmp_path / "r.json")["forward/1d/float64/none"]
    assert cell["outcome"] == "failed" and cell["counts"]["failed"] > 0 and cell["failures"]


@pytest.mark.parametrize("isolate", MODES)
@pytest.mark.parametrize("adapter", ["NastyVersions", "VersionsNotADict", "VersionsRaises"])
def test_versions_become_short_strings_and_strict_json(adapter, isolate):
    with AdapterCaller(ref(adapter), timeout=10, isolate=isolate) as caller:
        versions = caller.info().versions
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())
    assert all(len(v) < 300 for v in versions.values())
    json.dumps(versions, allow_nan=False)


@pytest.mark.parametrize("isolate", MODES)
@pytest.mark.parametrize("adapter", ["CapabilitiesRaises", "CapabilitiesLies"])
def test_capabilities_that_raise_or_lie_make_the_adapter_broken(adapter, isolate):
    with AdapterCaller(ref(adapter), timeout=10, isolate=isolate) as caller, pytest.raises(AdapterBroken) as broken:
        caller.info()
    assert broken.value.status == "error" and "cannot describe itself" in broken.value.message


def test_the_first_capabilities_answer_is_the_declaration():
    with AdapterCaller(ref("CapabilitiesChangeTheirMind"), timeout=10) as caller:
        first = caller.capabilities
        assert first.dtypes == ("float64",) and caller.capabilities is first
        assert run_case(caller, SPEC.replace(dtype="float32"), DATA).status == "unsupported"


# ------------------------------------------------------- --isolate covers the whole adapter


@pytest.mark.parametrize(
    ("adapter", "status"),
    [("SegfaultsInInit", "crashed"), ("HangsInInit", "hung"), ("SegfaultsInCapabilities", "crashed")],
)
def test_isolated_init_and_capabilities_run_in_the_worker(adapter, status):
    # This test's own process survives: nothing of the adapter ran here.
    with AdapterCaller(ref(adapter), timeout=5, isolate=True, startup_timeout=2) as caller:
        with pytest.raises(AdapterBroken) as broken:
            caller.info()
        assert broken.value.status == status, broken.value.message
        with pytest.raises(RuntimeError, match="lives in the worker process"):
            caller.adapter  # noqa: B018


def test_a_helper_process_the_adapter_starts_dies_with_its_worker(tmp_path, monkeypatch):
    pidfile = tmp_path / "helper.pid"
    monkeypatch.setenv("CONV_CONFORMANCE_TEST_PIDFILE", str(pidfile))
    with AdapterCaller(ref("SpawnsHelper"), timeout=2, isolate=True) as caller:
        spec = SPEC.replace(batch=2)
        outcome = caller.call("forward", spec, np.ones(spec.input_shape), np.ones(spec.weight_shape), np.ones(3))
        assert outcome.status == "hung" and "process group" in outcome.message
    helper = int(pidfile.read_text())
    assert wait_until(lambda: gone(helper), timeout=5.0), f"helper {helper} outlived the worker"


def test_an_in_process_call_holding_the_gil_is_ended_by_the_watchdog(tmp_path):
    record = tmp_path / "gw0.inflight"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from conformance.faults import AdapterCaller
        from tests.test_faults import BATCHED, args
        caller = AdapterCaller("tests.faulty_adapters:HoldsTheGil", timeout=1.0, watchdog={str(record)!r})
        caller.context.update(cell="forward/2d/float16/asymmetric", descriptor="conv2d_mb2")
        assert caller.call("forward", *args()).ok
        caller.call("forward", *args(BATCHED))
        print("the hang returned")
    """)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "the hang returned" not in done.stdout
    assert time.monotonic() - start < 60
    inflight = read_inflight(record)
    assert inflight is not None and inflight["watchdog_fired"], inflight
    assert inflight["method"] == "forward" and inflight["context"]["cell"] == "forward/2d/float16/asymmetric"
    assert "faulty_adapters" in inflight["traceback"] or "candidate" in inflight["traceback"]


def test_a_process_that_closes_its_caller_leaves_no_inflight_record(tmp_path):
    record = tmp_path / "main.inflight"
    with AdapterCaller(ref("Correct"), timeout=5, watchdog=record) as caller:
        assert run_case(caller, SPEC, DATA).status == "passed"
        assert read_inflight(record) is None  # idle between calls
    assert not record.exists()


def test_a_case_carries_its_longest_reduction_for_the_targeted_search() -> None:
    # What conformance.session.aim reports as "log2 products per output element": the judged products' longest
    # sum, counted once by the runner (forward: C_in/G x taps; backward: the longest of the three gradients).
    spec = ConvSpec(in_channels=6, out_channels=4, input_size=(7, 5), kernel_size=(3, 2), groups=2, batch=3)
    with AdapterCaller("torch") as caller:
        forward = run_case(caller, spec, DataRecipe("integers", seed=1, scale=2), "forward")
        backward = run_case(caller, spec, DataRecipe("integers", seed=1, scale=2), "backward")
    assert forward.status == "passed" and forward.reduction_length == 3 * 3 * 2
    # grad_bias sums batch x output positions (3 x 5 x 4 = 60), more than grad_weight's or grad_input's
    assert backward.status == "passed" and backward.reduction_length == 3 * 5 * 4
