"""Fixtures shared by the report's tests: one real run with deliberately buggy adapters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# The project's own property tests judge correctness, not speed: on a loaded 2-core CI machine a 200 ms
# Hypothesis deadline fails a correct test (speed lives in benchmarks/, which print numbers).
settings.register_profile("conv-conformance-tests", deadline=None)
settings.load_profile("conv-conformance-tests")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ADAPTERS = ("tests.faulty_adapters:LastRowLow", "tests.faulty_adapters:OffByOne", "torch")
SAMPLE_SLICE = "test_forward and 2d and float64"


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``results.json`` and ``report.html`` of a real ``conv-conformance run
    --report`` on two buggy adapters and PyTorch (the forward 2-D float64 cells)."""
    where = tmp_path_factory.mktemp("sample-run")
    args = [sys.executable, "-m", "conformance.cli", "run", "--results", "results.json", "--report", "report.html",
            "-k", SAMPLE_SLICE, "--baseline", "none"]  # fmt: skip
    for adapter in SAMPLE_ADAPTERS:
        args += ["--adapter", adapter]
    done = subprocess.run(args, cwd=where, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # the buggy adapters fail
    assert (where / "report.html").exists(), done.stdout + done.stderr
    return where
