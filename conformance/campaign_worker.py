"""One campaign worker: the child process behind ``conv-conformance fuzz --campaign URL``.

It runs under the supervisor (:func:`conformance.supervisor.supervise`, started
with :data:`CHILD`), exactly as ``fuzz`` runs pytest: an adapter that crashes or
hangs is recorded (in-process by the watchdog, or by ``--isolate``), and if this
process dies, the supervisor writes its results from the shards.

The suite's chapters are driven in-process, one cell at a time, with a
:class:`~conformance.session.ConformanceSession` (the way the mutant meta-test
does): the same strategies, runner, oracle, verdicts and baseline as a run,
with no pytest collection per chunk, so a worker pays the adapter's start-up
once and then spends its time in examples.  The loop, until ``--minutes`` are
spent: lease a cell (first every cell with a stored failure that this worker
has not replayed, then the least-fuzzed free cell), run one chunk of Hypothesis
examples on it (``--chunk-examples``; the shared example database replays what
any worker stored first), add the chunk's record to the campaign, release.

A worker stops early when every one of its cells has a failure it has
replayed (nothing is left to fuzz), and when the campaign's Redis goes away:
then it says so in one line, writes what it gathered (marked incomplete), and
exits 3.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import socket
import sys
import threading
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from conformance.campaign import Campaign, CampaignUnreachable, cell_key, redis_errors, split_key, worker_id
from conformance.cells import Cell, arithmetic_cells
from conformance.results import CellRecord
from conformance.session import BAD, ConformanceFailure, ConformanceSession
from conformance.suite.by_id import run_cell
from conformance.supervisor import watch_supervisor

#: What the supervisor runs: this module's :func:`main`, importing what the command would.
CHILD = ("import json, sys; sys.path[:] = json.loads(sys.argv.pop(1)); from conformance.campaign_worker import main; "
         "sys.exit(main(sys.argv[1:]))")  # fmt: skip
#: Local copy of the example database (see :meth:`Campaign.example_database`).
LOCAL_DATABASE = ".hypothesis/conv-conformance-campaign"
#: Exit statuses, read by the supervisor as it reads pytest's: 0 ok, 1 failures, 2 interrupted, 3 did not finish,
#: 4 usage (an adapter that cannot load).
OK, FAILED, INTERRUPTED, INCOMPLETE, USAGE = 0, 1, 2, 3, 4
_ARITHMETIC = ("forward", "transposed", "backward", "transposed-backward")
#: Pushing the cell's latest failure to Redis while Hypothesis shrinks: at most this often (the chunk's end
#: always pushes the minimal one; the first failure goes at once, so a worker killed mid-shrink loses nothing).
FAILURE_PUSH_SECONDS = 1.0


def campaign_cells(session: ConformanceSession, patterns: list[str]) -> list[str]:
    """The cell keys this worker can fuzz: every chapter's cells its adapters support, matching ``patterns``."""
    from conformance.suite.test_invalid import RULES

    keys = []
    for adapter in session.adapter_names:
        if adapter in session.broken:
            continue
        caps = session.capabilities(adapter)
        cells = [cell for chapter in _ARITHMETIC for cell in arithmetic_cells(chapter)]
        cells += [Cell("special", dims, dtype, "any") for dims in (1, 2, 3) for dtype in caps.dtypes]
        supported = [c.id for c in cells if c.unsupported(caps) is None]
        supported += [Cell("invalid", d, "float32", rule).id for d in (1, 2, 3) if d in caps.dims for rule in RULES]
        keys += [cell_key(adapter, c) for c in supported if not patterns or any(fnmatchcase(c, p) for p in patterns)]
    return keys


class CampaignSession(ConformanceSession):
    """A session that hands each unexplained failure to ``on_failure`` as it is found (before Hypothesis shrinks
    it): the campaign keeps it even if this worker dies in the middle of the chunk."""

    on_failure: Any = None

    def judge(self, record: Any, status: str, **kwargs: Any) -> None:
        try:
            super().judge(record, status, **kwargs)
        except ConformanceFailure:
            if self.on_failure is not None and kwargs.get("failure") is not None:
                self.on_failure(record, kwargs["failure"])
            raise


class Worker:
    """The lease-explore-record loop of one process, and its heartbeat."""

    def __init__(self, campaign: Campaign, session: CampaignSession, database: Any, chunk_examples: int) -> None:
        self.campaign, self.session, self.database = campaign, session, database
        self.chunk_examples = chunk_examples
        self.id = worker_id()
        self.keys: list[str] = []
        self.replayed: set[str] = set()
        self.current: str | None = None
        self.lost: BaseException | None = None
        self.chunks = 0
        self._stop = threading.Event()
        self._last_push = 0.0
        self._pushed = False
        session.on_failure = self._found

    # ------------------------------------------------------------ the loop

    def run(self, patterns: list[str]) -> str:
        """Fuzz until the time is spent; return why the loop ended."""
        self.keys = campaign_cells(self.session, patterns)
        if not self.keys:
            return "no cell of the selection is supported by the adapter(s)"
        self._guarded(lambda: (self.campaign.add_cells(self.keys),
                               self.campaign.set_environment(self.session.results.environment)))  # fmt: skip
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True, name="campaign-heartbeat")
        self._guarded(self._beat)
        heartbeat.start()
        try:
            while self.lost is None:
                if self.session.out_of_time:
                    return "the time budget was spent"
                key = self._guarded(self._next_cell)
                if key == "":
                    return "every cell has a failure this worker replayed: nothing left to fuzz"
                if key is None:
                    time.sleep(0.2)  # every free cell is leased by another worker: wait for one
                    continue
                self._chunk(key)
            return "the campaign's Redis went away"
        finally:
            self._stop.set()
            heartbeat.join(timeout=5)
            self._guarded(lambda: self.campaign.leave(self.id))

    def _next_cell(self) -> str | None:
        """The cell to fuzz next, leased: "" when nothing is left, None when every candidate is leased now."""
        failing = set(self.campaign.failures())
        unreplayed = [k for k in self.keys if k in failing and k not in self.replayed]
        if not unreplayed and all(k in failing for k in self.keys):
            return ""
        examples = self.campaign.examples()
        # Replay stored failures first (every worker confirms them on its own build, and a restarted campaign
        # starts from what it knows); then the least-fuzzed cell, ties in random order so workers spread out.
        fresh = sorted((k for k in self.keys if k not in failing), key=lambda k: (examples.get(k, 0), random.random()))
        for key in unreplayed + fresh:
            if self.campaign.lease(key, self.id):
                return key
        return None

    def _chunk(self, key: str) -> None:
        import pytest

        adapter, cell_id = split_key(key)
        self.current, self._pushed = key, False
        self.database.cell = key
        existing = self.session.results.cells.get((cell_id, adapter))
        before = CellRecord.from_dict(json.loads(json.dumps(existing.to_dict()))) if existing else None
        seen = {id(f) for f in existing.failures} if existing else set()
        try:
            run_cell(self.session, adapter, cell_id)
        except (ConformanceFailure, pytest.skip.Exception, pytest.xfail.Exception):
            pass  # recorded in the cell's record: a failure, a cell that cannot run, an explained failure
        except Exception as error:  # e.g. Hypothesis's FlakyFailure: still the cell's failure, recorded
            first = str(error).splitlines()[0] if str(error) else ""
            record = self.session.results.cell(cell_id, adapter)
            record.notes.append(f"the chapter raised {type(error).__name__}: {first}")
        finally:
            # Also on an interrupt: what the chunk gathered goes to the campaign, and the cell is free at once.
            self.current = None
            self.chunks += 1
            after = self.session.results.cells.get((cell_id, adapter))
            if _unexplained(after) or self._guarded(lambda: key in self.campaign.failures()):
                self.replayed.add(key)  # a failing cell is done for this worker: its minimal case is recorded
            if after is not None:
                chunk = chunk_record(before, after, seen)
                self._guarded(lambda: self._record(key, chunk))
            self._guarded(lambda: self.campaign.release(key, self.id))
        if self.lost is None and self.database.lost() is not None:
            self.lost = self.database.lost()

    def _record(self, key: str, chunk: CellRecord) -> None:
        self.campaign.add_chunk(key, chunk)
        if chunk.failures:
            self.campaign.record_failure(key, chunk.failures[-1], self.id)

    def _found(self, record: Any, failure: dict[str, Any]) -> None:
        now = time.monotonic()
        if self._pushed and now - self._last_push < FAILURE_PUSH_SECONDS:
            return
        self._pushed, self._last_push = True, now
        key = cell_key(record.adapter, record.cell)
        self._guarded(lambda: self.campaign.record_failure(key, failure, self.id))

    # ------------------------------------------------------------ heartbeat

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.campaign.lease_seconds / 3):
            self._guarded(self._beat)

    def _beat(self) -> None:
        key = self.current
        self.campaign.heartbeat(self.id, {"host": socket.gethostname(), "pid": os.getpid(), "cell": key,
                                          "chunks": self.chunks, "adapters": self.session.adapter_names})  # fmt: skip
        if key is not None and not self.campaign.renew(key, self.id):
            print(f"conv-conformance: lost the lease on {key} (not renewed in time); another worker may fuzz it too",
                  file=sys.stderr, flush=True)  # fmt: skip

    def _guarded(self, call: Any) -> Any:
        """Run a Redis call; if the server is gone, remember why (the loop stops) and return None."""
        if self.lost is not None:
            return None
        try:
            return call()
        except redis_errors() as error:
            self.lost = error
            return None


def _unexplained(record: CellRecord | None) -> bool:
    return record is not None and any(record.counts.get(s) for s in BAD)


def chunk_record(before: CellRecord | None, after: CellRecord, seen_failures: set[int]) -> CellRecord:
    """What one chunk added to a cell's cumulative record (``after`` less ``before``)."""
    chunk = CellRecord(after.cell, after.adapter)
    old = before or CellRecord(after.cell, after.adapter)
    chunk.counts = {s: n - old.counts.get(s, 0) for s, n in after.counts.items()}
    chunk.worst_ratio = after.worst_ratio
    chunk.notes = [n for n in after.notes if n not in old.notes]
    chunk.failures = [f for f in after.failures if id(f) not in seen_failures]
    added = {e: n - old.explained.get(e, 0) for e, n in after.explained.items()}
    chunk.explained = {e: n for e, n in added.items() if n > 0}
    chunk.expected_examples = [e for e in after.expected_examples if e not in old.expected_examples]
    chunk.detection = {} if old.detection else dict(after.detection)
    chunk.seconds_candidate = after.seconds_candidate - old.seconds_candidate
    chunk.seconds_oracle = after.seconds_oracle - old.seconds_oracle
    for attribute, values in after.coverage.items():
        for value, n in values.items():
            more = n - old.coverage.get(attribute, {}).get(value, 0)
            if more:
                chunk.tally(attribute, value, more)
    return chunk


# ------------------------------------------------------------------ process


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    """``CONFIG_JSON --results PATH --run-id ID`` (what :func:`~conformance.supervisor.supervise` passes)."""
    import shutil

    from hypothesis import settings

    from conformance.baseline import Baseline, read_baseline
    from conformance.faults import AdapterLoadError
    from conformance.session import register_profiles

    config = json.loads(argv[0])
    results_path, run_id = argv[argv.index("--results") + 1], argv[argv.index("--run-id") + 1]
    shard_dir = Path(f"{results_path}.shards") / run_id
    # Made before any adapter loads: the supervisor then knows a later exit 4 is no usage error of ours.
    shard_dir.mkdir(parents=True, exist_ok=True)
    watch_supervisor()
    signal.signal(signal.SIGTERM, _interrupt)
    campaign = Campaign(config["campaign"], config["name"], lease_seconds=config["lease_seconds"])
    try:
        campaign.ping()
    except CampaignUnreachable as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        shutil.rmtree(shard_dir, ignore_errors=True)
        return USAGE
    baseline = read_baseline(config["baseline"]) if config.get("baseline") else Baseline()
    try:
        session = CampaignSession(
            config["adapters"], profile="fuzz", shard_dir=shard_dir, run_id=run_id, baseline=baseline,
            timeout=config["case_timeout"], startup_timeout=config["startup_timeout"], isolate=config["isolate"],
            command=config["command"], time_budget=config["minutes"], seed="random",
            max_examples=config["chunk_examples"],
        )  # fmt: skip
    except AdapterLoadError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        shutil.rmtree(shard_dir, ignore_errors=True)
        return USAGE
    session.results.environment["campaign"] = {"url": campaign.url, "name": campaign.name}
    register_profiles()
    database = campaign.example_database(LOCAL_DATABASE)
    settings.register_profile("conv-conformance-campaign", parent=settings.get_profile("conv-conformance-fuzz"),
                              database=database, max_examples=config["chunk_examples"])  # fmt: skip
    settings.load_profile("conv-conformance-campaign")
    worker = Worker(campaign, session, database, config["chunk_examples"])
    print(f"campaign {campaign.name!r} at {campaign.url}: worker {worker.id}", flush=True)
    code = OK
    try:
        why = worker.run(config["cells"])
        print(f"worker {worker.id} stopped: {why} ({worker.chunks} chunk(s))", flush=True)
    except KeyboardInterrupt as interrupt:
        session.results.mark_incomplete(f"interrupted by {interrupt or 'SIGINT'}")
        code = INTERRUPTED
    finally:
        if worker.lost is not None:
            print(f"conv-conformance: the campaign's Redis at {campaign.url} went away ({worker.lost}); this worker "
                  f"stopped, and what it gathered is in {results_path}", file=sys.stderr, flush=True)  # fmt: skip
            session.results.mark_incomplete(f"the campaign's Redis at {campaign.url} went away: {worker.lost}")
        _write(session, results_path, shard_dir)
        session.close()
    if code != OK:
        return code
    if session.results.incomplete_reasons:
        return INCOMPLETE
    return FAILED if any(_unexplained(r) for r in session.results.cells.values()) else OK


def _write(session: ConformanceSession, results_path: str, shard_dir: Path) -> None:
    import shutil

    from conformance.results import now

    results = session.results
    if session.baseline:
        results.baseline = session.baseline.summary(results, session.adapter_names)
    results.complete = not results.incomplete_reasons
    results.finished = now()
    results.environment["command"] = results.environment.get("command") or shlex.join(sys.argv)
    results.write(results_path)
    shutil.rmtree(shard_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        shard_dir.parent.rmdir()


__all__ = ["CHILD", "CampaignSession", "Worker", "campaign_cells", "chunk_record", "main", "run_cell"]
