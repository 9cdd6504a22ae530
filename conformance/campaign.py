"""A fuzz campaign's shared state in Redis: cells, leases, examples, failures, workers, and the example database.

Every key of a campaign starts with ``conv-conformance:<name>:`` in the Redis
database the URL names (``redis://host:port/db``), so several campaigns can
share one server::

    cells                 set    "adapter|cell" of every cell some worker can run
    record:<cell key>     string the cell's merged record (a results file's cell, as JSON), all chunks added up
    examples              hash   cell key -> examples run in the cell (every worker, every chunk recorded)
    failures              hash   cell key -> the cell's latest (most shrunk) unexplained failure, as JSON
    lease:<cell key>      string the token of the worker fuzzing the cell now; expires unless renewed (PX)
    held                  hash   cell key -> worker holding it; left behind by a worker that died (a takeover)
    takeovers             hash   cell key -> times a worker took the cell over from a dead one
    worker:<id>           string a live worker's heartbeat (JSON: host, pid, cell, since); expires (PX)
    environment           string the first worker's results environment (the report's header)
    hypothesis:...        Hypothesis's RedisExampleDatabase (see :func:`example_database`)

A cell key is ``adapter|cell id`` (``torch|forward/2d/float32/same``).  Leases are
``SET NX PX`` with a token; only the holder renews or releases (compare-and-set
in Lua), so a worker that comes back after its lease expired cannot take the
cell from the worker that has it now.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase, MultiplexedDatabase

from conformance.results import MAX_FAILURES_PER_CELL, CellRecord, Results, merge

DEFAULT_NAME = "default"
#: A lease not renewed for this long is taken over; a worker renews it every third of it.
DEFAULT_LEASE_SECONDS = 30.0
#: How long a Redis call may take before the server counts as gone (a campaign's calls are all tiny).
SOCKET_TIMEOUT = 10.0

# Renew or release a lease only while it is still ours (another worker may hold it after an expiry).
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = """
if redis.call('hget', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('hdel', KEYS[2], ARGV[2]) end
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class CampaignUnreachable(ConnectionError):
    """The campaign's Redis cannot be reached (at the start, or any time after): the message names the URL."""


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when the server is gone or unusable (connection refused, reset, timeout)."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


def cell_key(adapter: str, cell: str) -> str:
    return f"{adapter}|{cell}"


def split_key(key: str) -> tuple[str, str]:
    adapter, _, cell = key.partition("|")
    return adapter, cell


def check_url(url: str) -> str | None:
    """Why ``url`` cannot name a campaign's Redis, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"--campaign {url!r} is not a redis:// URL (e.g. redis://localhost:6379/0)"
    return None


def worker_id() -> str:
    """This process, as other workers and ``campaign status`` see it: host, pid and a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:4]}"


class Campaign:
    """One campaign (``name``) in the Redis at ``url``: every read and write of its state goes through here."""

    def __init__(self, url: str, name: str = DEFAULT_NAME, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url, self.name, self.lease_seconds = url, name, lease_seconds
        self.prefix = f"conv-conformance:{name}:"
        # One quick retry, no backoff: a campaign whose server went away should say so in seconds, not minutes
        # of exponential backoff; the worker keeps what it gathered locally and exits.
        self.redis = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
                                          retry=Retry(NoBackoff(), 1))  # fmt: skip
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    def ping(self) -> None:
        """Raise :class:`CampaignUnreachable` (naming the URL) unless the server answers."""
        try:
            self.redis.ping()
        except Exception as error:  # any failure to talk to it: refused, unknown host, auth, protocol
            raise CampaignUnreachable(f"cannot reach the campaign's Redis at {self.url}: {error}") from error

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # ------------------------------------------------------------ cells

    def add_cells(self, keys: list[str]) -> None:
        if keys:
            self.redis.sadd(self.key("cells"), *keys)

    def cells(self) -> list[str]:
        return sorted(k.decode() for k in self.redis.smembers(self.key("cells")))

    def set_environment(self, environment: dict[str, Any]) -> None:
        """The first worker's environment is the campaign's (the report's header); later ones keep it."""
        self.redis.set(self.key("environment"), json.dumps(environment, default=str), nx=True)

    def environment(self) -> dict[str, Any]:
        raw = self.redis.get(self.key("environment"))
        return json.loads(raw) if raw else {}

    # ------------------------------------------------------------ leases

    def lease(self, key: str, worker: str) -> bool:
        """Take the cell for ``worker`` unless a live worker holds it; count a takeover from a dead one."""
        if not self.redis.set(self.key("lease", key), worker, nx=True, px=int(self.lease_seconds * 1000)):
            return False
        previous = self.redis.hget(self.key("held"), key)
        if previous is not None and previous.decode() != worker:
            self.redis.hincrby(self.key("takeovers"), key, 1)
        self.redis.hset(self.key("held"), key, worker)
        return True

    def renew(self, key: str, worker: str) -> bool:
        """Keep the lease another ``lease_seconds``: False if it expired and is gone (or another worker's)."""
        return bool(self._renew(keys=[self.key("lease", key)], args=[worker, int(self.lease_seconds * 1000)]))

    def release(self, key: str, worker: str) -> None:
        """Give the cell back (and the record that this worker held it), if it is still ours."""
        self._release(keys=[self.key("lease", key), self.key("held")], args=[worker, key])

    def leased(self) -> dict[str, str]:
        """Cell key -> the worker fuzzing it now."""
        keys = self.cells()
        values = self.redis.mget([self.key("lease", k) for k in keys]) if keys else []
        return {k: v.decode() for k, v in zip(keys, values) if v is not None}

    def takeovers(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.key("takeovers")).items()}

    # ------------------------------------------------------------ progress

    def examples(self) -> dict[str, int]:
        """Cell key -> examples run in it so far (every worker, every chunk recorded)."""
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.key("examples")).items()}

    def records(self) -> dict[str, CellRecord]:
        keys = self.cells()
        raws = self.redis.mget([self.key("record", k) for k in keys]) if keys else []
        return {k: CellRecord.from_dict(json.loads(raw)) for k, raw in zip(keys, raws) if raw is not None}

    def add_chunk(self, key: str, chunk: CellRecord) -> None:
        """Add one chunk's record to the cell's: optimistic (WATCH), so two writers never lose each other's."""
        import redis

        record_key = self.key("record", key)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(record_key)
                    raw = pipe.get(record_key)
                    merged = _merged(CellRecord.from_dict(json.loads(raw)) if raw else None, chunk)
                    pipe.multi()
                    pipe.set(record_key, json.dumps(merged.to_dict(), default=_json_default))
                    pipe.hincrby(self.key("examples"), key, sum(chunk.counts.values()))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def record_failure(self, key: str, failure: dict[str, Any], worker: str) -> None:
        """The cell's latest unexplained failure (Hypothesis shrinks, so the latest is the smallest so far).
        A worker replaying the stored case does not take the credit: who found it first stays."""
        raw = self.redis.hget(self.key("failures"), key)
        stored = json.loads(raw) if raw else {}
        same = stored.get("descriptor") == failure.get("descriptor") and stored.get("recipe") == failure.get("recipe")
        found = {"found_by": stored["found_by"], "found_at": stored["found_at"]} if same and stored else {
            "found_by": worker, "found_at": time.time()}
        self.redis.hset(self.key("failures"), key, json.dumps({**failure, **found}, default=_json_default))

    def failures(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(self.key("failures")).items()}

    # ------------------------------------------------------------ workers

    def heartbeat(self, worker: str, state: dict[str, Any]) -> None:
        self.redis.set(self.key("worker", worker), json.dumps(state), px=int(self.lease_seconds * 1000))

    def leave(self, worker: str) -> None:
        self.redis.delete(self.key("worker", worker))

    def workers(self) -> dict[str, dict[str, Any]]:
        """Worker id -> its last heartbeat, for every worker whose heartbeat has not expired."""
        keys = list(self.redis.scan_iter(match=self.key("worker", "*"), count=1000))
        values = self.redis.mget(keys) if keys else []
        start = len(self.key("worker", ""))
        return {k.decode()[start:]: json.loads(v) for k, v in zip(keys, values) if v is not None}

    # ------------------------------------------------------------ results

    def results(self) -> Results:
        """The campaign as one results file: every recorded chunk, plus each failure kept in Redis that no chunk
        recorded (its worker died before the chunk ended), so the report's failing cells are Redis's failures."""
        results = Results(self.environment())
        records = self.records()
        failures = self.failures()
        for key in self.cells():
            adapter, cell = split_key(key)
            if key in records:
                results.cells[(cell, adapter)] = records[key]
            elif key not in failures:
                results.not_reached.append(f"{adapter}: {cell}")
        for key, failure in failures.items():
            adapter, cell = split_key(key)
            record = results.cell(cell, adapter)
            known = any(f.get("descriptor") == failure.get("descriptor") for f in record.failures)
            if not known:
                record.add(failure.get("status", "failed"), failure=failure)
        # A snapshot: complete unless workers are in the middle of chunks whose examples are not added yet.
        busy = self.leased()
        if busy:
            results.mark_incomplete(f"a snapshot of a running campaign: {len(busy)} cell(s) were being fuzzed, "
                                    "their current chunks not yet recorded")  # fmt: skip
        results.complete = not busy
        results.run_id = f"campaign:{self.name}"
        results.environment["campaign"] = {"url": self.url, "name": self.name}
        return results

    # ------------------------------------------------------------ example database

    def example_database(self, local_dir: str) -> CellKeyedDatabase:
        """Hypothesis's example database for this campaign (see :class:`CellKeyedDatabase`)."""
        from hypothesis.extra.redis import RedisExampleDatabase

        shared = RedisExampleDatabase(self.redis, key_prefix=self.key("hypothesis", "").encode(),
                                      listener_channel=self.key("hypothesis-changes"))  # fmt: skip
        # The local directory first, and the shared one behind an outage guard: a failing example is on this
        # host's disk before it goes to Redis, so nothing found is lost if Redis goes away mid-campaign (the
        # worker then stops, and a plain `fuzz` or the next campaign on this host replays it from disk).
        guarded = OutageTolerant(shared)
        return CellKeyedDatabase(MultiplexedDatabase(DirectoryBasedExampleDatabase(local_dir), guarded), guarded)


class OutageTolerant(ExampleDatabase):
    """A database that stops being used once its server is gone, instead of raising inside Hypothesis's engine
    (an exception there would be taken for the test's own error).  ``lost`` says why, for the worker to stop."""

    def __init__(self, wrapped: ExampleDatabase) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.lost: BaseException | None = None

    def __repr__(self) -> str:
        return f"OutageTolerant({self.wrapped!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutageTolerant) and self.wrapped == other.wrapped

    def _guard(self, call: Any, *args: Any) -> Any:
        if self.lost is not None:
            return None
        try:
            return call(*args)
        except redis_errors() as error:
            self.lost = error
            return None

    def fetch(self, key: bytes) -> Any:
        return self._guard(lambda k: list(self.wrapped.fetch(k)), key) or []

    def save(self, key: bytes, value: bytes) -> None:
        self._guard(self.wrapped.save, key, value)

    def delete(self, key: bytes, value: bytes) -> None:
        self._guard(self.wrapped.delete, key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self._guard(self.wrapped.move, src, dest, value)


class CellKeyedDatabase(ExampleDatabase):
    """Hypothesis's keys, prefixed with the cell being fuzzed (``adapter|cell|``).

    Every cell of a chapter runs one inner Hypothesis test function, and Hypothesis
    keys its database by that function's source: without the prefix, a failure of
    one cell would be replayed in every other, and a worker could not tell which
    stored failures belong to the cell it leased.  The worker fuzzes one cell at a
    time and sets :attr:`cell` before each chunk.
    """

    def __init__(self, wrapped: ExampleDatabase, shared: OutageTolerant | None = None) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.shared = shared
        self.cell = ""

    def __repr__(self) -> str:
        return f"CellKeyedDatabase({self.wrapped!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CellKeyedDatabase) and self.wrapped == other.wrapped

    def _key(self, key: bytes) -> bytes:
        return self.cell.encode() + b"|" + key

    def fetch(self, key: bytes) -> Any:
        return self.wrapped.fetch(self._key(key))

    def save(self, key: bytes, value: bytes) -> None:
        self.wrapped.save(self._key(key), value)

    def delete(self, key: bytes, value: bytes) -> None:
        self.wrapped.delete(self._key(key), value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.wrapped.move(self._key(src), self._key(dest), value)

    def lost(self) -> BaseException | None:
        """Why the shared database stopped (its Redis went away), or None."""
        return None if self.shared is None else self.shared.lost


def _merged(stored: CellRecord | None, chunk: CellRecord) -> CellRecord:
    parts = []
    for record in (stored, chunk):
        if record is not None:
            part = Results()
            part.cells[(record.cell, record.adapter)] = record
            parts.append(part)
    merged = merge(parts).cells[(chunk.cell, chunk.adapter)]
    merged.failures = merged.failures[-MAX_FAILURES_PER_CELL:]
    return merged


def _json_default(value: Any) -> Any:
    with suppress(TypeError, ValueError):
        return float(value)
    return str(value)


__all__ = ["DEFAULT_LEASE_SECONDS", "DEFAULT_NAME", "Campaign", "CampaignUnreachable", "CellKeyedDatabase",
           "OutageTolerant", "cell_key", "check_url", "redis_errors", "split_key", "worker_id"]  # fmt: skip
