"""Baselines: per-case predicates, signatures, environment scope, drafting, and refusing bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.baseline import Baseline, BaselineError, parse_baseline, read_baseline
from conformance.baseline_draft import draft_entries
from conformance.cli import DEFAULT_BASELINE
from conformance.predicates import case_facts
from conformance.results import Results
from conformance.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]
AMD = {"cpu_flags": ["avx2", "avx512_bf16"], "machine": "x86_64", "system": "Linux"}
TORCH = {"torch": "2.13.0+cpu"}


def _failure(spec: ConvSpec, **verdicts: tuple[str, float]) -> dict:
    """A recorded failure: the products with (status, ratio), the worst element finite."""
    return {"spec": spec.to_dict(), "recipe": {"distribution": "real", "sparsity": 0.0}, "operation": "backward",
            "status": "failed", "reason": "value at ...",
            "verdicts": {p: {"status": s, "ratio": r, "expected": 1.0, "got": 1.5} for p, (s, r) in verdicts.items()}}


def _baseline(*entries: dict, scope_for: dict | None = None) -> Baseline:
    baseline = parse_baseline({"schema": "conv-conformance/baseline", "version": 2, "entries": list(entries)})
    baseline.scope_for("torch", TORCH, scope_for or AMD)
    return baseline


PAD = ConvSpec(in_channels=2, out_channels=2, input_size=(5,), kernel_size=3, padding=1, padding_mode="reflect",
               dtype="float16", batch=2)  # fmt: skip
FOLD = {"id": "fold", "adapter": "torch", "reason": "r", "when": {
    "chapter": "backward", "dtype": ["float16", "bfloat16"], "padding_mode": ["reflect", "replicate", "circular"],
    "product": "grad_input"}, "signature": {"status": "failed", "max_ratio": 50}}  # fmt: skip


def test_an_entry_explains_only_the_cases_its_predicate_and_signature_describe():
    baseline = _baseline(FOLD)
    cell = "backward/1d/float16/symmetric"
    assert [e.id for e in baseline.explain(cell, "torch", _failure(PAD, grad_input=("failed", 7.0)))] == ["fold"]
    # another product, another padding mode, another adapter, a failure far outside the signature: unexplained
    assert not baseline.explain(cell, "torch", _failure(PAD, grad_weight=("failed", 7.0)))
    zeros = PAD.replace(padding_mode="zeros")
    assert not baseline.explain(cell, "torch", _failure(zeros, grad_input=("failed", 7.0)))
    assert not baseline.explain(cell, "torch-nn", _failure(PAD, grad_input=("failed", 7.0)))
    assert not baseline.explain(cell, "torch", _failure(PAD, grad_input=("failed", 5000.0)))
    # a mistrusted product is no part of the failure
    both = _failure(PAD, grad_input=("failed", 7.0), grad_weight=("mistrusted", 0.5))
    assert baseline.explain(cell, "torch", both)


def test_a_case_failing_in_two_products_needs_every_product_explained():
    weight = {"id": "weight", "adapter": "torch", "reason": "r",
              "when": {"dtype": "float16", "product": "grad_weight", "batch": ">1"}}  # fmt: skip
    two = _failure(PAD, grad_input=("failed", 7.0), grad_weight=("failed", 3.0))
    assert not _baseline(FOLD).explain("backward/1d/float16/symmetric", "torch", two)
    found = _baseline(FOLD, weight).explain("backward/1d/float16/symmetric", "torch", two)
    assert [e.id for e in found] == ["fold", "weight"]
    one_item = _failure(PAD.replace(batch=1), grad_input=("failed", 7.0), grad_weight=("failed", 3.0))
    assert not _baseline(FOLD, weight).explain("backward/1d/float16/symmetric", "torch", one_item)


def test_scope_by_version_and_cpu_says_why_an_entry_is_out():
    intel = {**FOLD, "id": "intel", "scope": {"cpu_flags": ["avx512_fp16"]}}
    later = {**FOLD, "id": "later", "scope": {"versions": {"torch": ">=2.14"}}}
    here = {**FOLD, "id": "here", "scope": {"versions": {"torch": "==2.13.*"}, "cpu_flags_absent": ["avx512_fp16"]}}
    baseline = _baseline(intel, later, here)
    assert baseline.out_of_scope["torch"] == {"intel": "the CPU lacks avx512_fp16",
                                              "later": "torch 2.13.0+cpu is outside >=2.14"}  # fmt: skip
    found = baseline.explain("backward/1d/float16/symmetric", "torch", _failure(PAD, grad_input=("failed", 7.0)))
    assert [e.id for e in found] == ["here"]


def test_value_classes_and_reason_text_in_a_signature():
    nan_entry = {"id": "nan", "adapter": "torch", "reason": "r", "when": {"chapter": "special"},
                 "signature": {"expected": "finite", "got": "nan"}}  # fmt: skip
    refusal = {"id": "refuses", "adapter": "torch", "reason": "r", "when": {"chapter": "forward"},
               "signature": {"status": "error", "reason_contains": "Dilation not supported"}}  # fmt: skip
    baseline = _baseline(nan_entry, refusal)
    nan = _failure(PAD, output=("failed", float("inf")))
    nan["verdicts"]["output"]["got"] = "nan"
    assert baseline.explain("special/1d/float16/any", "torch", nan)
    nan["verdicts"]["output"]["expected"] = "inf"
    assert not baseline.explain("special/1d/float16/any", "torch", nan)
    error = {"spec": PAD.to_dict(), "status": "error", "reason": "RuntimeError: Dilation not supported for SAME"}
    assert baseline.explain("forward/1d/float16/same", "torch", error)
    assert not baseline.explain("forward/1d/float16/same", "torch", {**error, "reason": "something else"})


def test_facts_of_a_case_include_relations_and_survive_a_broken_spec():
    transposed = ConvSpec(in_channels=1, out_channels=1, input_size=(3,), kernel_size=2, stride=2, dilation=3,
                          output_padding=2, transposed=True)  # fmt: skip
    facts = case_facts("transposed/1d/float32/none", {"spec": transposed.to_dict()})
    assert facts["output_padding_ge_stride"] and facts["stride"] == 2 and facts["chapter"] == "transposed"
    strided = ConvSpec(in_channels=1, out_channels=1, input_size=(9,), kernel_size=2, stride=4)
    assert case_facts("backward/1d/float32/none", {"spec": strided.to_dict()})["uncovered_input"]
    broken = case_facts("invalid/2d/float32/rank", {"spec": {"in_channels": "x"}, "status": "failed"})
    assert broken["invalid_rule"] == "rank" and "dims" not in broken


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"when": {"dtype": "float16"}, "colour": "red"}, "unknown field 'colour'"),
        ({"when": {"dtpye": "float16"}}, "unknown fact 'dtpye'"),
        ({"when": {"stride": "> one"}}, "is not a comparison"),
        ({"when": {"transposed": "yes"}}, "is not a bool"),
        ({"when": {}}, "non-empty object of conditions"),
        ({"when": {"dims": 2}, "scope": {"versions": {"torch": "2.13 or so"}}}, "is not a version specifier"),
        ({"when": {"dims": 2}, "scope": {"cpu": ["avx"]}}, "unknown field 'cpu'"),
        ({"when": {"dims": 2}, "signature": {"status": "passed"}}, "is not a failing status"),
        ({"when": {"dims": 2}, "signature": {"max_ratio": -1}}, "is not a positive number"),
        ({"when": {"dims": 2}, "signature": {"got": "weird"}}, "is not one of finite, inf, nan"),
    ],
)
def test_bad_entries_are_refused_with_their_place(entry, message):
    raw = {"id": "x", "adapter": "torch", "reason": "r", **entry}
    with pytest.raises(BaselineError, match=message) as refused:
        parse_baseline({"schema": "conv-conformance/baseline", "version": 2, "entries": [raw]})
    assert "entries[0]" in str(refused.value)


def test_duplicate_ids_and_unknown_top_level_fields_are_refused():
    entry = {"id": "x", "adapter": "torch", "reason": "r", "when": {"dims": 1}}
    with pytest.raises(BaselineError, match="ids must be unique"):
        parse_baseline({"schema": "conv-conformance/baseline", "version": 2, "entries": [entry, entry]})
    with pytest.raises(BaselineError, match="unknown field 'extra'"):
        parse_baseline({"schema": "conv-conformance/baseline", "version": 2, "entries": [], "extra": 1})


def test_a_bad_baseline_file_is_exit_2_and_one_line(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "conv-conformance/baseline", "version": 2, "entries": [
        {"id": "x", "adapter": "torch", "reason": "r", "when": {"stride": ">x"}}]}))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--adapter", "torch", "--baseline",
                           "bad.json", "--cell", "golden/*"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "entries[0].when.stride" in lines[0], done.stderr


def test_the_shipped_baseline_reads_and_every_entry_names_a_reproducer_and_a_machine():
    baseline = read_baseline(DEFAULT_BASELINE)
    assert not baseline.deprecated and len(baseline.entries) >= 10
    for entry in baseline.entries:
        assert entry.measured_on, entry.id
        assert "(" in entry.reason, f"{entry.id}: the reason keeps a one-line reproducer"


def test_a_folder_is_every_file_in_it_and_an_id_is_unique_across_them(tmp_path):
    def write(name: str, ids: list[str]) -> None:
        entries = [{"id": i, "adapter": "torch", "reason": "r (x)", "when": {"chapter": "forward"}} for i in ids]
        (tmp_path / name).write_text(json.dumps({"schema": "conv-conformance/baseline", "version": 2,
                                                 "entries": entries}))  # fmt: skip

    with pytest.raises(BaselineError, match="holds no"):
        read_baseline(tmp_path)
    write("a.json", ["one", "two"])
    write("b.json", ["three"])
    (tmp_path / "notes.txt").write_text("not a baseline")
    baseline = read_baseline(tmp_path)
    assert [e.id for e in baseline.entries] == ["one", "two", "three"] and baseline.source == str(tmp_path)
    write("c.json", ["two"])
    with pytest.raises(BaselineError, match=r"c\.json: id 'two' is used in a\.json too"):
        read_baseline(tmp_path)


def test_draft_entries_come_from_the_minimal_failure_and_read_back():
    results = Results({"backends": {"torch": TORCH}, "cpu": "AMD EPYC"})
    record = results.cell("backward/1d/float16/symmetric", "torch")
    record.add("failed", 7.0, _failure(PAD.replace(stride=2), grad_input=("failed", 7.0)))
    [entry] = draft_entries(results)
    assert entry["when"]["stride"] == ">1" and entry["when"]["product"] == ["grad_input"]
    assert entry["signature"] == {"status": "failed", "max_ratio": 28.0}
    assert entry["scope"] == {"versions": {"torch": "==2.13.0+cpu"}} and entry["reason"].startswith("TODO")
    drafted = _baseline({**entry, "adapter": "torch"})
    assert drafted.explain("backward/1d/float16/symmetric", "torch", record.failures[-1])


def test_baseline_draft_and_check_commands(tmp_path):
    results = Results({"backends": {"torch": TORCH}})
    results.cell("backward/1d/float16/symmetric", "torch").add("failed", 7.0,
                                                               _failure(PAD, grad_input=("failed", 7.0)))
    results.write(tmp_path / "r.json")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    drafted = cli("baseline", "draft", "r.json", "-o", "draft.json")
    assert drafted.returncode == 0 and "1 draft entry written" in drafted.stdout, drafted.stderr
    checked = cli("baseline", "check", "draft.json")
    assert checked.returncode == 0 and "1 entries: OK" in checked.stdout, checked.stderr
    assert cli("baseline", "draft", "missing.json").returncode == 2
