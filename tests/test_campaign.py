"""Fuzz campaigns on a real redis-server: workers that join, die and come back; status and report from Redis.

Every worker is the real command (``conv-conformance fuzz --campaign``), run on a
mutant (the bias is never added) that the suite catches in its first examples,
on one to three cells, so a worker's time goes to its start-up and to Hypothesis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.campaign import Campaign, cell_key
from conformance.results import read
from tests import redis_server

if redis_server.missing() and os.environ.get("CONV_CONFORMANCE_REQUIRE_REDIS"):
    # CI installs redis-server: there a missing one is a broken set-up, not a reason to skip.
    raise RuntimeError(f"CONV_CONFORMANCE_REQUIRE_REDIS is set, but {redis_server.missing()}")
pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(redis_server.missing() is not None, reason=f"no campaign test: {redis_server.missing()}"),
]

ROOT = Path(__file__).resolve().parent.parent
MUTANT = "tests.mutants.channels:BiasDropped"
SLOW = "tests.campaign_adapters:SlowBiasDropped"
NAME = "mutant-bias-dropped"
CELLS = ("forward/1d/float32/none", "forward/1d/float32/valid", "forward/1d/float32/same")
#: Short leases, so a killed worker's cell is taken over within the test (renewed every third of it).
LEASE = "3"


def _fuzz_command(url: str, results: Path, *cells: str, adapter: str = MUTANT, minutes: str = "3") -> list[str]:
    command = [sys.executable, "-m", "conformance.cli", "fuzz", "--campaign", url, "--adapter", adapter,
               "--minutes", minutes, "--chunk-examples", "20", "--lease-seconds", LEASE, "--baseline", "none",
               "--results", str(results)]  # fmt: skip
    for cell in cells:
        command += ["--cell", cell]
    return command


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _fuzz(tmp: Path, url: str, results: Path, *cells: str, **kwargs: str) -> subprocess.CompletedProcess:
    return subprocess.run(_fuzz_command(url, results, *cells, **kwargs), cwd=tmp, env=_env(), capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def _start(tmp: Path, url: str, results: Path, *cells: str, **kwargs: str) -> subprocess.Popen:
    return subprocess.Popen(_fuzz_command(url, results, *cells, **kwargs), cwd=tmp, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=tmp, env=_env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _wait(condition, timeout: float = 90.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _failing_cells(path: Path) -> set[str]:
    results = read(path)
    return {cell_key(adapter, cell) for (cell, adapter), record in results.cells.items() if record.failures}


# ------------------------------------------------------------------ killed worker


@pytest.fixture(scope="module")
def killed_campaign(tmp_path_factory):
    """Three workers on three cells; one is SIGKILLed while it holds a lease.  Yields what the test saw."""
    tmp = tmp_path_factory.mktemp("campaign")
    with redis_server.redis_server() as server:
        campaign = Campaign(server.url)
        workers = [_start(tmp, server.url, tmp / f"w{i}.json", *CELLS, adapter=SLOW) for i in range(3)]
        try:
            # The first worker seen in a cell: its pid is the process fuzzing (the supervisor's child).
            victim_id, beat = _wait(lambda: next(((w, b) for w, b in campaign.workers().items() if b.get("cell")),
                                                 None), what="a worker holding a lease")  # fmt: skip
            os.kill(beat["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            held_when_killed = campaign.redis.get(campaign.key("lease", beat["cell"]))
            outputs = [w.communicate(timeout=240) for w in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
        seen = {
            "tmp": tmp, "url": server.url, "victim": victim_id, "victim_cell": beat["cell"],
            "held_when_killed": held_when_killed.decode() if held_when_killed else None,
            "codes": [w.returncode for w in workers], "outputs": outputs,
            "seconds_after_kill": time.monotonic() - killed_at,
        }  # fmt: skip
        yield server, campaign, seen


def test_a_killed_worker_loses_no_failure_and_its_cell_is_taken_over(killed_campaign):
    _, campaign, seen = killed_campaign
    tmp = seen["tmp"]
    # The lease was the victim's when it died: the cell was taken over, not released.
    assert seen["held_when_killed"] == seen["victim"]
    assert campaign.takeovers().get(seen["victim_cell"], 0) >= 1
    # One worker died (its supervisor says the run did not finish); the other two found the mutant.
    assert sorted(seen["codes"]) == [1, 1, 3], seen["outputs"]
    killed = seen["codes"].index(3)
    assert read(tmp / f"w{killed}.json").complete is False  # written by the supervisor from the shards
    failures = campaign.failures()
    assert set(failures) == {cell_key(NAME, cell) for cell in CELLS}
    # Nothing any worker recorded is missing from the campaign, the dead one's included.
    for i in range(3):
        assert _failing_cells(tmp / f"w{i}.json") <= set(failures)
    # The dead worker's heartbeat expired; the others left.
    assert campaign.workers() == {}
    assert campaign.leased() == {}


def test_campaign_status_and_report_show_what_the_workers_found(killed_campaign):
    server, campaign, seen = killed_campaign
    tmp = seen["tmp"]
    status = _cli(tmp, "campaign", "status", server.url)
    assert status.returncode == 0, status.stderr
    assert "cells: 3 total, 3 fuzzed, 0 leased now" in status.stdout
    assert "failures: 3" in status.stdout and "workers alive: 0" in status.stdout
    assert "taken over" in status.stdout
    examples = campaign.examples()
    assert f"examples: {sum(examples.values())} in all" in status.stdout
    for failure in campaign.failures().values():
        assert failure["descriptor"] in status.stdout and failure["found_by"] in status.stdout

    report = _cli(tmp, "report", "--campaign", server.url, "-o", "campaign.html", "--results", "campaign.json")
    assert report.returncode == 0, report.stderr
    results = read(tmp / "campaign.json")
    assert results.complete  # no worker is in the middle of a chunk
    failing = {cell_key(a, c) for (c, a), r in results.cells.items() if r.outcome == "failed"}
    assert failing == set(campaign.failures())
    for key, failure in campaign.failures().items():
        adapter, cell = key.split("|")
        assert results.cells[(cell, adapter)].failures[-1]["descriptor"] == failure["descriptor"]
        assert sum(results.cells[(cell, adapter)].counts.values()) >= examples[key]
    page = (tmp / "campaign.html").read_text()
    assert all(cell in page for cell in CELLS) and "mutant-bias-dropped" in page


def test_a_restarted_campaign_replays_every_stored_failure_first(killed_campaign):
    server, campaign, seen = killed_campaign
    tmp = seen["tmp"]
    stored = campaign.failures()
    # A new worker (the fast mutant: same adapter name, so the same cells) joins the finished campaign.
    done = _fuzz(tmp, server.url, tmp / "restart.json", *CELLS)
    assert done.returncode == 1, done.stderr
    assert "nothing left to fuzz" in done.stdout
    results = read(tmp / "restart.json")
    for key, failure in stored.items():
        adapter, cell = key.split("|")
        record = results.cells[(cell, adapter)]
        # Its first example of each cell was the stored failure, found again.
        assert record.detection["examples_to_first_failure"] == 1
        assert record.failures[0]["descriptor"] == failure["descriptor"]
    assert set(campaign.failures()) == set(stored)


# ------------------------------------------------------------------ replay between workers


def test_a_failure_found_by_one_worker_is_replayed_by_the_next_from_the_shared_database(tmp_path):
    with redis_server.redis_server() as server:
        campaign = Campaign(server.url)
        first = _fuzz(tmp_path, server.url, tmp_path / "a.json", CELLS[0])
        assert first.returncode == 1, first.stderr
        key = cell_key(NAME, CELLS[0])
        found = campaign.failures()[key]
        # The example database holds the failing case, under this cell's key.
        stored = [k for k in campaign.redis.keys(campaign.key("hypothesis", "*")) if key.encode() in k]
        assert stored and any(campaign.redis.scard(k) for k in stored)
        # Worker B, in another directory: nothing local to replay, only what Redis holds.
        other = tmp_path / "b"
        other.mkdir()
        second = _fuzz(other, server.url, other / "b.json", CELLS[0])
        assert second.returncode == 1, second.stderr
        record = read(other / "b.json").cells[(CELLS[0], NAME)]
        assert record.detection["examples_to_first_failure"] == 1
        assert record.failures[0]["descriptor"] == found["descriptor"]
        assert campaign.failures()[key]["found_by"] == found["found_by"]  # the replay takes no credit


# ------------------------------------------------------------------ Redis unreachable or gone


def test_an_unreachable_redis_at_the_start_is_one_line_and_exit_2(tmp_path):
    url = f"redis://127.0.0.1:{redis_server.free_port()}/0"
    done = _fuzz(tmp_path, url, tmp_path / "r.json", CELLS[0])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "cannot reach" in lines[0]
    assert not (tmp_path / "r.json").exists()
    status = _cli(tmp_path, "campaign", "status", url)
    assert status.returncode == 2 and url in status.stderr
    report = _cli(tmp_path, "report", "--campaign", url, "-o", "r.html")
    assert report.returncode == 2 and url in report.stderr and not (tmp_path / "r.html").exists()


def test_redis_killed_mid_campaign_stops_the_worker_with_its_results_written(tmp_path):
    with redis_server.redis_server() as server:
        campaign = Campaign(server.url)
        worker = _start(tmp_path, server.url, tmp_path / "r.json", *CELLS, adapter=SLOW)
        try:
            # Once a chunk is recorded and the next is under way, the server dies.
            _wait(lambda: campaign.examples() and any(b.get("cell") for b in campaign.workers().values()),
                  what="a second chunk")  # fmt: skip
            server.kill()
            out, err = worker.communicate(timeout=120)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert worker.returncode == 3, (out, err)
    assert f"the campaign's Redis at {server.url} went away" in err
    results = read(tmp_path / "r.json")
    assert results.complete is False
    assert any(server.url in reason for reason in results.incomplete_reasons)
    assert any(record.failures for record in results.cells.values())


def test_fuzz_without_a_campaign_needs_no_server(tmp_path):
    done = _cli(tmp_path, "fuzz", "--adapter", MUTANT, "--cell", CELLS[0], "--minutes", "0.2", "--max-examples",
                "30", "--baseline", "none", "--results", "plain.json")  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # random draws: the mutant is usually, not always, caught
    record = read(tmp_path / "plain.json").cells[(CELLS[0], NAME)]
    assert sum(record.counts.values()) >= 1
    assert (tmp_path / ".hypothesis" / "conv-conformance").is_dir()  # the directory database, as before


def test_options_a_campaign_cannot_take_are_refused(tmp_path):
    done = _cli(tmp_path, "fuzz", "--campaign", "redis://127.0.0.1:1/0", "-k", "forward", "--minutes", "1")
    assert done.returncode == 2 and "-k" in done.stderr
    done = _cli(tmp_path, "fuzz", "--campaign", "http://x", "--minutes", "1")
    assert done.returncode == 2 and "redis://" in done.stderr
    done = _cli(tmp_path, "report", "-o", "x.html")
    assert done.returncode == 2 and "--campaign" in done.stderr


# ------------------------------------------------------------------ the state's own rules


def test_a_lease_is_one_workers_until_it_expires_and_then_a_takeover():
    with redis_server.redis_server() as server:
        campaign = Campaign(server.url, "leases", lease_seconds=0.3)
        key = cell_key("torch", CELLS[0])
        campaign.add_cells([key])
        assert campaign.lease(key, "a") and not campaign.lease(key, "b")
        assert campaign.renew(key, "a") and not campaign.renew(key, "b")
        campaign.release(key, "b")  # not b's to give back
        assert campaign.leased() == {key: "a"}
        campaign.release(key, "a")
        assert campaign.leased() == {} and campaign.takeovers() == {}
        assert campaign.lease(key, "a")  # ... and "a" dies holding it
        time.sleep(0.5)
        assert not campaign.renew(key, "a")
        assert campaign.lease(key, "b") and campaign.takeovers() == {key: 1}
        campaign.release(key, "a")  # a worker that comes back late cannot free b's cell
        assert campaign.leased() == {key: "b"}


def test_a_chunk_record_is_what_the_chunk_added():
    from conformance.campaign_worker import chunk_record
    from conformance.results import CellRecord

    record = CellRecord(CELLS[0], NAME)
    record.add("passed", 0.5, attributes={"stride": "1"}, seconds=(1.0, 2.0))
    before = CellRecord.from_dict(record.to_dict())
    seen = {id(f) for f in record.failures}
    failure = {"descriptor": "conv1d_mb1_ic1_oc1_i1_k1", "status": "failed"}
    record.add("failed", 9.0, failure, attributes={"stride": "1"}, seconds=(0.5, 0.25))
    record.detection["examples_to_first_failure"] = 2
    chunk = chunk_record(before, record, seen)
    assert {s: n for s, n in chunk.counts.items() if n} == {"failed": 1}
    assert chunk.failures == [failure] and chunk.coverage == {"stride": {"1": 1}}
    assert (chunk.seconds_candidate, chunk.seconds_oracle) == (0.5, 0.25)
    assert chunk.detection == {"examples_to_first_failure": 2}
    assert chunk_record(None, record, set()).counts["passed"] == 1  # the cell's first chunk: all of it
