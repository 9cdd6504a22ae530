"""The HTML compliance report: what it says, what it refuses, and that it stays small and self-contained.

The browser half (console errors, the filter) is ``test_report_browser.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.cells import arithmetic_cells
from conformance.coverage import case_attributes
from conformance.data import DataRecipe
from conformance.heatmap import MAX_SIDE, heatmap
from conformance.results import SCHEMA, VERSION, Results, read
from conformance.spec import ConvSpec
from reports import render
from reports.model import MAX_CARDS, build, pass_rate

ROOT = Path(__file__).resolve().parents[1]
LAST_ROW = "last-row-low"  # tests.faulty_adapters:LastRowLow, by its declared name


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip


def _external_references(page: str) -> list[str]:
    """Anything that would make the browser fetch: src/href to another resource, CSS url() or @import."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']?(?!#)[^"'\s>]+""", page)
    found += re.findall(r"url\(|@import", page)
    return found


# ------------------------------------------------------------ from a real run


def test_run_report_leaves_a_self_contained_page(sample_run):
    page = (sample_run / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    assert _external_references(page) == []
    assert "Content-Security-Policy" in page
    assert 'id="matrix-table"' in page and "<article class=\"card" in page
    # Every recorded cell is a row of the matrix, and every adapter a column.
    results = read(sample_run / "results.json")
    for cell, adapter in results.cells:
        assert f'data-cell="{cell}"' in page
        assert f'data-adapter="{adapter}"' in page


def test_a_failure_card_explains_the_failure_and_carries_its_repro(sample_run):
    results = read(sample_run / "results.json")
    record = results.cells[("forward/2d/float64/none", LAST_ROW)]
    minimal = record.failures[-1]
    page = (sample_run / "report.html").read_text()
    key = ("forward/2d/float64/none", LAST_ROW)
    anchor = next(c.anchor for c in build(results).cards if (c.cell, c.adapter) == key)
    assert f'href="#{anchor}"' in page  # the matrix links to the card
    card = page[page.index(f'id="{anchor}"'):]
    card = card[: card.index("</article>")]
    assert minimal["descriptor"] in card
    assert "worst element" in card and "worst index" in card
    # The bug is the last row: the heatmap has a 3-row plane and draws the failing row dark.
    assert minimal["heatmap"]["shape"][0] >= 3
    assert "<svg" in card and "#67001f" in card
    # The repro script is on the page verbatim (HTML-escaped), with a copy button.
    script = re.search(r'<pre id="(repro-\d+)"><code>(.*?)</code></pre>', card, re.S)
    assert script and 'data-copy="' + script.group(1) + '"' in card
    import html

    assert html.unescape(script.group(2)) == minimal["repro"]


def test_the_summary_counts_every_case_and_writes_its_formula(sample_run):
    results = read(sample_run / "results.json")
    report = build(results)
    torch = next(s for s in report.summaries if s.adapter == "torch")
    assert torch.cells["passed"] == 6 and torch.cell_rate == 1.0  # forward/2d/float64/<five forms and fastpath>
    buggy = next(s for s in report.summaries if s.adapter == LAST_ROW)
    recorded = sum(sum(r.counts.values()) for (c, a), r in results.cells.items() if a == LAST_ROW)
    assert sum(buggy.cases.values()) == recorded
    assert buggy.cell_rate == 0.0
    page = (sample_run / "report.html").read_text()
    assert "pass rate = (passed + unexpected pass) ÷" in page


def test_coverage_lists_what_was_and_was_not_exercised(sample_run):
    report = build(read(sample_run / "results.json"))
    table = {t["attribute"]: t for t in report.coverage}
    dims = {row["value"]: row["counts"] for row in table["dims"]["rows"]}
    assert any(dims["2-D"]) and not any(dims["1-D"])
    assert "1-D" in table["dims"]["missing"] and "float16" in table["dtype"]["missing"]
    assert {"stride", "dilation", "groups", "padding form", "padding mode", "layout", "batch", "data"} <= set(table)


# ------------------------------------------------------------------ synthetic


def _failure(spec: ConvSpec, reason: str = "output: wrong", repro: str | None = "print('repro')\n") -> dict:
    ratios = np.zeros(spec.output_shape)
    ratios[(0,) * len(spec.output_shape)] = 5.0
    return {
        "descriptor": spec.descriptor(), "spec": spec.to_dict(), "recipe": DataRecipe().to_dict(),
        "operation": "forward", "status": "failed", "product": "output", "reason": reason,
        "verdicts": {"output": {"tier": "real", "worst_index": [0] * len(spec.output_shape), "expected": 1.0,
                                "got": 2.0, "error": 1.0, "bound": 0.2, "ratio": 5.0, "checked": ratios.size,
                                "mismatches": 1}},
        "heatmap": heatmap(ratios, None, "output"), "repro": repro,
    }  # fmt: skip


SPEC = ConvSpec(in_channels=2, out_channels=3, input_size=(6, 5), kernel_size=3, padding=1)


def _results(cells: int, adapters: tuple[str, ...] = ("torch",), failing_every: int = 0, cases: int = 20,
             failures_per_cell: int = 1, repro: str = "print('repro')\n") -> Results:  # fmt: skip
    results = Results({"suite": "0.1.0", "profile": "ci", "command": "conv-conformance run"})
    results.complete = True
    ids = [c.id for c in arithmetic_cells("forward") + arithmetic_cells("backward")]
    # Past the real cells, numbered copies: a results file may hold cells this suite does not define.
    names = [ids[i % len(ids)] + (f"#{i // len(ids)}" if i >= len(ids) else "") for i in range(cells)]
    for i, cell in enumerate(names):
        for adapter in adapters:
            record = results.cell(cell, adapter)
            bad = failing_every and i % failing_every == 0
            for k in range(cases):
                failure = _failure(SPEC, repro=repro) if bad and k < failures_per_cell else None
                record.add("failed" if failure else "passed", 5.0 if failure else 0.3, failure,
                           attributes=case_attributes(SPEC, DataRecipe()))  # fmt: skip
            # add() keeps only the latest few failures, as the runner does; a file written by
            # another tool may hold more, which the report must survive too.
            if bad and failures_per_cell > len(record.failures):
                record.failures = [_failure(SPEC, repro=repro) for _ in range(failures_per_cell)]
    return results


def test_untrusted_strings_are_escaped_everywhere():
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    results = Results({"suite": evil, "command": evil, "backends": {evil: {evil: evil}}, "gpus": [evil]})
    record = results.cell(f"forward/2d/float32/{evil}", evil)
    record.notes.append(evil)
    failure = _failure(SPEC, reason=evil, repro=f"# {evil}\n</code></pre>{evil}")
    failure["descriptor"] = evil
    record.add("failed", 5.0, failure)
    page = render(results)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own, and nothing else


def test_an_empty_run_renders():
    page = render(Results({}))
    assert "No cases were run" in page and "No cell failed" in page


def test_a_partial_run_says_so_and_keeps_what_it_has():
    results = _results(cells=6, failing_every=2)
    results.complete = False
    page = render(results)
    assert "Partial run." in page
    assert page.count('<tr data-cell="') == 6


def test_ten_thousand_failures_cap_the_cards_and_keep_every_count():
    many = _results(cells=2, failing_every=1, cases=10_000, failures_per_cell=10_000)
    page = render(many)
    report = build(many)
    assert report.summaries[0].cases["failed"] == 20_000
    assert page.count("<article class=") == 2
    assert "and 9995 more" in page  # 4 listed besides the minimal one, the rest counted
    wide = _results(cells=10_000, failing_every=1, cases=1)
    report = build(wide)
    assert len(report.cards) == MAX_CARDS and len(report.cards) + len(report.uncarded) == 10_000
    assert report.summaries[0].cells["failed"] == 10_000


def test_a_hundred_thousand_case_run_stays_under_five_megabytes(tmp_path):
    # 3 adapters x 234 cells, 143 cases each (100,386 cases), every third cell failing with a
    # realistic repro script (the runner's are a few kB: inputs are embedded, zlib + base64).
    repro = "#!/usr/bin/env python3\n" + "# embedded inputs\n" * 200
    results = _results(cells=234, adapters=("torch", "torch-nn", "onnxruntime"), failing_every=3, cases=143,
                       repro=repro)  # fmt: skip
    assert sum(sum(r.counts.values()) for r in results.cells.values()) >= 100_000
    results.write(tmp_path / "big.json")
    done = _cli(tmp_path, "report", "big.json", "-o", "big.html")
    assert done.returncode == 0, done.stderr
    size = (tmp_path / "big.html").stat().st_size
    assert size < 5_000_000, size


def test_a_baseline_diff_comes_first():
    before = _results(cells=6, failing_every=2)  # cells 0, 2, 4 fail
    now = _results(cells=6, failing_every=3)  # cells 0, 3 fail
    gone = next(iter(before.cells))
    del now.cells[gone]
    now.cell("special/2d/float32/any", "torch").add("passed")
    report = build(now, baseline=before)
    diff = report.diff
    assert {r["cell"] for r in diff.appeared} == {"special/2d/float32/any"}
    assert {(r["cell"], r["adapter"]) for r in diff.vanished} == {gone}
    still = {r["cell"] for r in diff.still_failing}
    new = {r["cell"] for r in diff.new_failures}
    fixed = {r["cell"] for r in diff.fixed}
    assert new and fixed and not (new & fixed) and not (still & fixed)
    assert all(now.cells[(c, "torch")].status == "failed" for c in new | still)
    assert all(now.cells[(c, "torch")].status == "passed" for c in fixed)
    page = render(now, baseline=before, baseline_path="old.json")
    assert page.index('<section id="diff">') < page.index('<section id="summary">')


def test_pass_rate_leaves_out_unsupported_and_mistrusted():
    assert pass_rate({"passed": 3, "failed": 1, "unsupported": 100, "mistrusted": 50}) == 0.75
    assert pass_rate({"passed": 1, "unexpected pass": 1, "expected failure": 2}) == 0.5
    assert pass_rate({"unsupported": 4}) is None


def test_explained_cases_are_expected_failures_with_their_entry_and_the_baseline_table():
    results = Results({})
    record = results.cell("backward/2d/float16/same", "torch")
    record.add("passed")
    record.add("expected", 3.0)
    record.explain(["torch-half-pad-fold"], _failure(SPEC))
    broken = results.cell("forward/2d/float32/same", "torch")
    broken.add("failed", 9.0, _failure(SPEC))
    broken.detection = {"examples_to_first_failure": 4, "seconds_to_first_failure": 0.5, "shrink_seconds": 1.25}
    results.baseline = {"source": "known.json", "deprecated": None, "entries": [
        {"id": "torch-half-pad-fold", "adapter": ["torch"], "reason": "rounds twice", "state": "explained",
         "why": "", "explained": 1, "cells": {"torch: backward/2d/float16/same": 1}},
        {"id": "old-bug", "adapter": ["torch"], "reason": "fixed?", "state": "stale", "why": "no case fits it",
         "explained": 0, "cells": {}}]}  # fmt: skip
    report = build(results)
    summary = report.summaries[0]
    assert summary.cells["expected failure"] == 1 and summary.cells["failed"] == 1
    assert summary.cases["expected failure"] == 1 and summary.cases["passed"] == 1
    # The unexpected failure's card comes first, with how it was found; the explained one names its entry.
    assert [c.outcome for c in report.cards] == ["failed", "expected failure"]
    assert report.cards[0].detection[0] == ("examples until the first failure", "4")
    assert report.cards[1].explained_by == "torch-half-pad-fold" and not report.cards[1].repro_command
    assert [e["state"] for e in report.baseline_entries] == ["explained", "stale"]
    page = render(results)
    assert "torch-half-pad-fold" in page and "seconds shrinking: 1.25" in page and 'id="baseline"' in page


def test_version_1_expected_failures_and_unexpected_passes_are_counted_as_such():
    results = Results({})
    xfail = results.cell("forward/2d/float16/same", "torch")
    xfail.expected_failure = True
    xfail.add("passed")
    xfail.add("failed", 3.0, _failure(SPEC))
    surprise = results.cell("forward/2d/bfloat16/same", "torch")
    surprise.expected_failure = True
    surprise.add("passed")
    summary = build(results).summaries[0]
    assert summary.cells["expected failure"] == 1 and summary.cells["unexpected pass"] == 1
    assert summary.cases == {**summary.cases, "passed": 1, "expected failure": 1, "unexpected pass": 1}


# ------------------------------------------------------- hostile text, strict JSON


def test_adapter_text_is_clipped_escaped_and_shown_where_it_belongs():
    """A backend that prints a huge tensor into its exception, its versions or its notes must not make a huge
    page; the run's incomplete reasons, adapter errors and a failure's repro_note are shown, clipped."""
    huge = "<b>x</b>" + "y" * 1_000_000
    results = Results({"suite": "0.1.0", "command": huge, "platform": huge, "backends": {"b": {"v": huge}}})
    results.complete = False
    results.incomplete_reasons = ["interrupted by SIGTERM", huge]
    results.adapter_errors = {"broken": {"status": "error", "message": "capabilities() raised " + huge}}
    record = results.cell("forward/2d/float32/same", "b")
    record.notes.append(huge)
    failure = _failure(SPEC, reason=huge, repro=None)
    failure["repro_note"] = "no standalone script: repro_source() raised " + huge
    failure["verdicts"]["output"]["got"] = huge
    record.add("failed", 5.0, failure)
    record.add("failed", 5.0, {**failure, "descriptor": huge})
    page = render(results)
    assert len(page) < 200_000, len(page)
    assert page.count("more characters)") >= 8
    assert "<b>x" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "interrupted by SIGTERM" in page
    assert "<strong>broken</strong> (error): <span class=\"reason\">capabilities() raised &lt;b&gt;" in page
    assert "no standalone script: repro_source() raised &lt;b&gt;" in page


def test_the_content_security_policy_allows_the_inline_script_and_style_by_hash_only():
    import base64
    import hashlib

    page = render(_results(cells=3, failing_every=1))
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    for text, directive in ((style, "style-src"), (script, "script-src")):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy
    # Inline style attributes would be blocked under this policy: the page must not rely on any.
    assert not re.search(r"\sstyle\s*=", page)


def test_non_finite_numbers_render_alike_as_strict_json_strings_and_as_bare_floats(tmp_path):
    """New results files write inf/nan as "inf"/"nan" strings (RFC 8259); older ones hold bare Infinity/NaN.
    The worst-element table, the heatmap and the matrix ratio read both, and numeric text like "1e-3"."""

    def page(non_finite: dict) -> str:
        results = Results({})
        failure = _failure(SPEC)
        failure["verdicts"]["output"].update(expected=non_finite["expected"], got=non_finite["got"],
                                             error=non_finite["error"], ratio=non_finite["ratio"],
                                             bound=non_finite["small"])  # fmt: skip
        failure["heatmap"]["values"][0][0] = non_finite["ratio"]
        failure["heatmap"]["values"][0][1] = non_finite["small"]
        record = results.cell("forward/2d/float64/none", "b")
        record.add("failed", 5.0, failure)
        data = results.to_dict()
        data["cells"][0]["worst_ratio"] = non_finite["ratio"]
        (tmp_path / "r.json").write_text(json.dumps(data))  # bare Infinity/NaN for the floats, as old files
        return render(read(tmp_path / "r.json"))

    strict = page({"expected": "nan", "got": "-inf", "error": "inf", "ratio": "inf", "small": "1e-3"})
    bare = page({"expected": float("nan"), "got": -float("inf"), "error": float("inf"), "ratio": float("inf"),
                 "small": 1e-3})  # fmt: skip
    assert strict == bare
    worst = re.search(r"<caption>worst element</caption>(.*?)</table>", strict, re.S).group(1)
    assert "<th>got</th><td class=\"mono\">-inf</td>" in worst and "<th>ratio</th><td class=\"mono\">inf</td>" in worst
    assert "<th>bound</th><td class=\"mono\">0.001</td>" in worst  # a number, however it was written
    assert "r ∞" in strict  # the matrix's worst ratio
    assert 'fill="#67001f"' in strict and 'fill="#d9f0d3"' in strict  # inf the worst colour, 1e-3 the second


# --------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "content, message",
    [
        ({"schema": SCHEMA, "version": 0, "cells": []}, "schema version 0"),
        ({"schema": "something/else", "version": 1, "cells": []}, "not a conv-conformance results file"),
        ({"schema": SCHEMA, "version": VERSION, "cells": [{"adapter": "torch"}]}, "cells[0]"),
        ("{not json", "cannot read results file"),
    ],
)
def test_an_unreadable_results_file_is_refused_with_exit_2(tmp_path, content, message):
    (tmp_path / "r.json").write_text(content if isinstance(content, str) else json.dumps(content))
    done = _cli(tmp_path, "report", "r.json", "-o", "out.html")
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "out.html").exists()


def test_a_malformed_baseline_is_refused_with_exit_2(tmp_path, sample_run):
    (tmp_path / "old.json").write_text(json.dumps({"schema": SCHEMA, "version": 99, "cells": []}))
    done = _cli(tmp_path, "report", str(sample_run / "results.json"), "-o", "out.html", "--baseline", "old.json")
    assert done.returncode == 2 and "schema version 99" in done.stderr


def test_report_with_a_baseline_from_the_command_line(tmp_path, sample_run):
    old = read(sample_run / "results.json")
    for record in old.cells.values():  # pretend the buggy adapters used to pass
        record.counts = {**record.counts, "failed": 0, "passed": 1}
        record.failures = []
    old.write(tmp_path / "old.json")
    done = _cli(tmp_path, "report", str(sample_run / "results.json"), "-o", "out.html", "--baseline", "old.json")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "out.html").read_text()
    assert "<h3>New failures</h3>" in page and "12</strong> new failure(s)" in page  # two buggy adapters, six cells


# ---------------------------------------------------------------------- heatmap


def test_heatmap_takes_the_plane_of_the_worst_element():
    ratios = np.zeros((2, 3, 4, 5))
    ratios[1, 2, 3, 4] = np.inf
    ratios[1, 2, 0, 0] = 0.5
    hm = heatmap(ratios, (1, 2, 3, 4), "output")
    assert hm["slice"] == "n=1, c=2" and hm["shape"] == [4, 5] and hm["worst"] == [3, 4]
    assert hm["values"][3][4] == "inf" and hm["values"][0][0] == 0.5


def test_heatmap_of_1d_and_3d_outputs():
    one = heatmap(np.arange(6.0).reshape(1, 1, 6), None, "output")
    assert one["shape"] == [1, 6] and one["worst"] == [0, 5]
    three = np.zeros((1, 1, 4, 3, 3))
    three[0, 0, 2, 1, 1] = 9.0
    hm = heatmap(three, None, "output")
    assert hm["slice"] == "n=0, c=0, d=2" and hm["values"][1][1] == 9.0


def test_heatmap_reduction_keeps_a_single_bad_element_visible():
    big = np.zeros((1, 1, 100, 70))
    big[0, 0, 57, 3] = 2.0
    hm = heatmap(big, None, "output")
    assert len(hm["values"]) <= MAX_SIDE and len(hm["values"][0]) <= MAX_SIDE
    assert max(max(row) for row in hm["values"]) == 2.0
    block = hm["block"]
    assert hm["values"][57 // block[0]][3 // block[1]] == 2.0


def test_cards_survive_failures_without_heatmap_or_verdicts():
    results = Results({})
    record = results.cell("invalid/2d/float32/any", "torch")
    record.add("failed", None, {"descriptor": "conv2d_bad", "status": "failed", "reason": "answered"})
    record.add("crashed", None, {})
    page = render(results)
    assert "conv2d_bad" in page  # listed under the card, whose minimal failure (the crash) has no descriptor
    assert page.count("<article class=") == 1


def test_render_does_not_change_the_results():
    results = _results(cells=3, failing_every=1)
    before = copy.deepcopy(results.to_dict())
    render(results)
    assert results.to_dict() == before


def test_a_version_1_results_file_still_reads_and_renders(tmp_path):
    # Written by the suite before per-case baselines: whole-cell expectations, no "expected" status.
    old = {"schema": SCHEMA, "version": 1, "complete": True, "environment": {"profile": "ci"}, "cells": [
        {"cell": "forward/2d/float16/same", "adapter": "torch", "outcome": "expected failure",
         "expected_failure": True, "counts": {"passed": 3, "failed": 1}, "failures": [_failure(SPEC)]},
        {"cell": "forward/2d/bfloat16/same", "adapter": "torch", "outcome": "unexpected pass",
         "expected_failure": True, "counts": {"passed": 4}}]}  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    results = read(path)
    assert results.version == 1
    summary = build(results).summaries[0]
    assert summary.cells["expected failure"] == 1 and summary.cells["unexpected pass"] == 1
    assert "expected failure" in render(results)
