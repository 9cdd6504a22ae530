"""The console script, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True)


def test_describe_prints_the_shapes():
    done = _run("describe", "conv2d_mb2_ic4_oc6_g2_i9x7_k3x2_s2x1_d1x2_p1x0_pe0x1")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["output_shape"] == [2, 6, 4, 6]
    assert facts["reduction_length"] == 12


def test_an_invalid_problem_names_its_rule_and_exits_2():
    done = _run("describe", "conv2d_mb1_ic1_oc1_i5x5_k3x3_s2x2_psame")
    assert done.returncode == 2
    assert "same_requires_stride_1" in done.stdout


def test_an_unreadable_problem_exits_2():
    done = _run("describe", "not-a-descriptor")
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_bad_usage_exits_2():
    assert _run("frobnicate").returncode == 2


def test_parallel_workers_get_a_share_of_the_cores_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # N workers each sizing its backend's thread pool to the whole machine would run N x N threads.
    from conformance.supervisor import THREAD_VARIABLES, thread_budget

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert thread_budget(2, cpus=2) == dict.fromkeys(THREAD_VARIABLES, "1")
    assert thread_budget(2, cpus=16) == dict.fromkeys(THREAD_VARIABLES, "8")
    assert thread_budget(4, cpus=2) == dict.fromkeys(THREAD_VARIABLES, "1")
    assert thread_budget(1, cpus=16) == {}  # one worker: the backend's own default
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget(2, cpus=2) == {}  # the user's choice wins


def test_dev_and_fuzz_draw_at_random_with_a_database_even_under_ci() -> None:
    # Under CI=true Hypothesis loads its own "ci" profile (derandomized, no database); profiles inherit what
    # they do not set from the profile loaded when they are registered, so dev and fuzz must set both.
    from hypothesis import settings

    from conformance.session import register_profiles

    previous = settings.get_current_profile_name()
    try:
        settings.load_profile("ci")
        register_profiles()
        for name in ("conv-conformance-dev", "conv-conformance-fuzz"):
            profile = settings.get_profile(name)
            assert not profile.derandomize and profile.database is not None, name
        assert settings.get_profile("conv-conformance-ci").derandomize
    finally:
        settings.load_profile(previous)
        register_profiles()
