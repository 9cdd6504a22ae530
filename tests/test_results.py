"""The results file: schema, atomic writes, shards merging, baselines."""

from __future__ import annotations

import json

import pytest

from conformance.baseline import BaselineError, read_baseline
from conformance.results import MAX_FAILURES_PER_CELL, SCHEMA, VERSION, Results, ResultsError, merge, read


def _results(counts: dict[str, int], cell: str = "forward/2d/float32/same", adapter: str = "torch") -> Results:
    results = Results({"profile": "ci"})
    record = results.cell(cell, adapter)
    for status, n in counts.items():
        for _ in range(n):
            record.add(status, 0.5, {"descriptor": "conv2d_mb1_ic1_oc1_i3x3_k1x1"} if status == "failed" else None)
    return results


def test_round_trip(tmp_path):
    results = _results({"passed": 3, "failed": 2, "unsupported": 1})
    results.complete = True
    path = tmp_path / "r.json"
    results.write(path)
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["version"] == VERSION
    again = read(path)
    record = again.cells[("forward/2d/float32/same", "torch")]
    assert record.counts["passed"] == 3 and record.counts["failed"] == 2 and record.counts["unsupported"] == 1
    assert record.outcome == "failed"
    assert len(record.failures) == 2
    assert again.complete


def test_outcome_is_the_worst_status_and_unsupported_is_never_a_pass():
    assert _results({"passed": 5, "mistrusted": 1}).cells[("forward/2d/float32/same", "torch")].outcome == "passed"
    assert _results({"mistrusted": 3}).cells[("forward/2d/float32/same", "torch")].outcome == "mistrusted"
    assert _results({"unsupported": 2}).cells[("forward/2d/float32/same", "torch")].outcome == "unsupported"
    assert _results({"passed": 5, "hung": 1}).cells[("forward/2d/float32/same", "torch")].outcome == "hung"


def test_explained_cases_make_an_expected_failure_and_an_unexplained_one_still_fails():
    record = _results({"passed": 2}).cells[("forward/2d/float32/same", "torch")]
    record.add("expected")
    record.explain(["known"], {"descriptor": "d", "status": "failed"})
    assert record.outcome == "expected failure" and record.explained == {"known": 1}
    assert record.expected_examples[0]["explained_by"] == "known" and not record.failures
    record.add("failed", 3.0, {"descriptor": "e"})
    assert record.outcome == "failed"


def test_version_1_results_keep_whole_cell_expectations():
    failing = _results({"failed": 1}).cells[("forward/2d/float32/same", "torch")]
    failing.expected_failure = True
    assert failing.outcome == "expected failure"
    passing = _results({"passed": 1}).cells[("forward/2d/float32/same", "torch")]
    passing.expected_failure = True
    assert passing.outcome == "unexpected pass"


def test_failures_are_capped_but_counts_are_kept():
    record = _results({"failed": 50}).cells[("forward/2d/float32/same", "torch")]
    assert record.counts["failed"] == 50
    assert len(record.failures) == MAX_FAILURES_PER_CELL


def test_merge_adds_counts_and_keeps_incompleteness():
    a, b = _results({"passed": 2}), _results({"passed": 1, "failed": 1})
    a.complete, b.complete = True, False
    merged = merge([a, b])
    record = merged.cells[("forward/2d/float32/same", "torch")]
    assert record.counts["passed"] == 3 and record.counts["failed"] == 1
    assert not merged.complete


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "cannot read"),
        ('{"schema": "something-else", "version": 1, "cells": []}', "not a conv-conformance results file"),
        ('{"schema": "conv-conformance/results", "version": 99, "cells": []}', "version 99"),
        ('{"schema": "conv-conformance/results", "version": 1}', "no 'cells'"),
    ],
)
def test_malformed_results_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match=message):
        read(path)


def test_the_deprecated_baseline_form_and_a_results_file_as_baseline(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"expected_failures": [
        {"cell": "invalid/2d/float32/*", "adapter": "torch", "reason": "torch accepts output_padding >= stride"}]}))
    baseline = read_baseline(path)
    assert baseline.deprecated and baseline.entries[0].reason.startswith("torch accepts")
    assert baseline.explain("invalid/2d/float32/rank", "torch", {"status": "failed"})
    assert not baseline.explain("forward/2d/float32/same", "torch", {"status": "failed"})
    results_path = tmp_path / "old.json"
    _results({"failed": 1}).write(results_path)
    drafted = read_baseline(results_path)
    assert [e.adapters for e in drafted.entries] == [("torch",)]
    assert drafted.explain("forward/2d/float32/same", "torch", {"status": "failed"})


@pytest.mark.parametrize("text", ["[]", '{"expected_failures": [{"cell": "x"}]}', "{"])
def test_malformed_baselines_are_rejected(tmp_path, text):
    path = tmp_path / "baseline.json"
    path.write_text(text)
    with pytest.raises(BaselineError):
        read_baseline(path)


def test_a_shard_write_reencodes_only_changed_cells_and_reads_as_a_full_write(tmp_path):
    results = _results({"passed": 2})
    other = results.cell("forward/1d/float32/same", "torch")
    other.add("failed", float("inf"), {"descriptor": "conv1d", "reason": "nan"})
    shard, full = tmp_path / "main.json", tmp_path / "full.json"
    results.write_shard(shard)
    # Changed behind the cache's back: a shard write reuses the cell's earlier encoding (what makes it cheap).
    results.cells[("forward/1d/float32/same", "torch")].notes.append("unseen")
    results.write_shard(shard)
    assert "unseen" not in shard.read_text()
    # Reached through cell() (as the session does), or said to have changed, it is encoded again.
    results.cell("forward/1d/float32/same", "torch").add("passed", 0.25)
    results.changed(results.cells[("forward/2d/float32/same", "torch")])
    results.cells[("forward/2d/float32/same", "torch")].notes.append("seen")
    results.write_shard(shard)
    results.write(full)
    assert json.loads(shard.read_text()) == json.loads(full.read_text())
    assert read(shard).cells[("forward/1d/float32/same", "torch")].counts["passed"] == 1
    # A removed cell leaves the shard; a replaced record is encoded afresh.
    del results.cells[("forward/1d/float32/same", "torch")]
    results.cells[("forward/2d/float32/same", "torch")] = type(other)("forward/2d/float32/same", "torch")
    results.write_shard(shard)
    cells = json.loads(shard.read_text())["cells"]
    assert [(c["cell"], c["counts"]["passed"]) for c in cells] == [("forward/2d/float32/same", 0)]
