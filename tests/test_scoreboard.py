"""The scoreboard: several backends' results files, each from its own run, on one page and in one JSON file.

The inputs are the shared real run (two buggy adapters and PyTorch) split into one results file per adapter,
as each backend's own tox env writes them.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.results import Results, read
from tests import browser

ROOT = Path(__file__).resolve().parents[1]
TORCH, LAST_ROW, OFF_BY_ONE = "torch", "last-row-low", "off-by-one"


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip


@pytest.fixture
def per_backend(sample_run: Path, tmp_path: Path) -> dict[str, Path]:
    """The sample run's results split by adapter: one file per backend, environment and all."""
    whole = read(sample_run / "results.json")
    files = {}
    for adapter in sorted({a for _, a in whole.cells}):
        part = Results(whole.environment)
        part.started, part.finished, part.complete = whole.started, whole.finished, whole.complete
        part.baseline = whole.baseline
        part.cells = {key: record for key, record in whole.cells.items() if key[1] == adapter}
        files[adapter] = tmp_path / f"{adapter}.json"
        part.write(files[adapter])
    return files


def test_every_backend_is_a_row_and_a_column_and_unexplained_failures_fail_it(per_backend, tmp_path):
    done = _cli(tmp_path, "scoreboard", *map(str, per_backend.values()), "-o", "board.html", "--json", "board.json")
    assert done.returncode == 1, done.stdout + done.stderr  # the two buggy adapters fail
    page = (tmp_path / "board.html").read_text()
    board = json.loads((tmp_path / "board.json").read_text())
    assert board["schema"] == "conv-conformance/scoreboard" and board["clean"] is False
    rows = {b["adapter"]: b for b in board["backends"]}
    assert set(rows) == {TORCH, LAST_ROW, OFF_BY_ONE}
    assert rows[TORCH]["unexpected_failing_cells"] == 0 and rows[LAST_ROW]["unexpected_failing_cells"] > 0
    assert rows[TORCH]["versions"]["torch"].startswith("2.") and rows[TORCH]["devices"] == ["cpu"]
    assert rows[TORCH]["precision"]["float64@cpu"] == "float64 accumulation, float64 output"
    assert rows[TORCH]["seconds"] is not None and rows[TORCH]["results"] == str(per_backend[TORCH])
    for cell, outcomes in board["matrix"].items():
        assert set(outcomes) == {TORCH, LAST_ROW, OFF_BY_ONE}, cell
    assert 'id="backends"' in page
    for adapter in rows:
        assert f'<th data-adapter="{adapter}">{adapter}</th>' in page
        assert f"{adapter:<12} passed" in done.stdout


def test_each_card_names_the_results_file_its_failure_is_in(per_backend, tmp_path):
    assert _cli(tmp_path, "scoreboard", *map(str, per_backend.values()), "-o", "board.html").returncode == 1
    page = html.unescape((tmp_path / "board.html").read_text())
    commands = re.findall(r"conv-conformance repro (\S+) ([\w-]+)/", page)
    assert commands
    for path, adapter in commands:
        assert path == str(per_backend[adapter])


def test_a_clean_backend_alone_exits_0_and_its_markdown_row_reads(per_backend, tmp_path):
    done = _cli(tmp_path, "scoreboard", str(per_backend[TORCH]), "-o", "board.html", "--markdown", "board.md")
    assert done.returncode == 0, done.stdout + done.stderr
    table = (tmp_path / "board.md").read_text().splitlines()
    assert table[2].startswith("| backend | versions | passed | failed |")
    row = table[4].split(" | ")
    assert row[0] == "| `torch`" and row[1].startswith("torch 2.") and row[3] == "0"


def test_an_unreadable_file_is_listed_and_the_others_still_shown(per_backend, tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    done = _cli(tmp_path, "scoreboard", str(per_backend[TORCH]), "broken.json", "absent.json", "-o", "board.html",
                "--json", "board.json")  # fmt: skip
    assert done.returncode == 2
    assert "broken.json" in done.stderr and "absent.json" in done.stderr
    board = json.loads((tmp_path / "board.json").read_text())
    assert [m["results"] for m in board["missing"]] == ["broken.json", "absent.json"]
    assert [b["adapter"] for b in board["backends"]] == [TORCH]
    assert "could not be read" in (tmp_path / "board.html").read_text()


def test_two_files_claiming_one_backend_are_refused_before_anything_is_written(per_backend, tmp_path):
    twin = tmp_path / "twin.json"
    twin.write_bytes(per_backend[TORCH].read_bytes())
    done = _cli(tmp_path, "scoreboard", str(per_backend[TORCH]), str(twin), "-o", "board.html")
    assert done.returncode == 2 and "both hold results of adapter 'torch'" in done.stderr
    assert not (tmp_path / "board.html").exists()


def test_the_page_never_overwrites_a_results_file(per_backend, tmp_path):
    before = per_backend[TORCH].read_bytes()
    done = _cli(tmp_path, "scoreboard", str(per_backend[TORCH]), "--json", str(per_backend[TORCH]))
    assert done.returncode == 2 and per_backend[TORCH].read_bytes() == before


@pytest.mark.skipif(browser.missing() is not None and not os.environ.get("CONV_CONFORMANCE_REQUIRE_BROWSER"),
                    reason=str(browser.missing()))  # fmt: skip
def test_the_scoreboard_loads_in_a_browser_without_console_errors(per_backend, tmp_path):
    from selenium.webdriver.common.by import By

    assert _cli(tmp_path, "scoreboard", *map(str, per_backend.values()), "-o", "board.html").returncode == 1
    with browser.chromium() as driver:
        driver.get((tmp_path / "board.html").as_uri())
        assert driver.title.startswith("Convolution conformance scoreboard: 3 backends")
        assert browser.console_errors(driver) == []
        rows = driver.find_elements(By.CSS_SELECTOR, "#backends table.backends tbody tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == sorted(per_backend)
        assert driver.find_element(By.ID, "matrix-table").is_displayed()
