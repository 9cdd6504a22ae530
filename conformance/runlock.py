"""One run at a time per results file: an ``fcntl.flock`` on ``<results>.shards/.lock``.

Two runs given the same ``--results`` would each overwrite the other's file,
and before shards were private to a run, report each other's cells as their
own.  The first run takes an exclusive lock on ``<results>.shards/.lock`` (the
directory its private shard directory lives in) and writes its pid there; a
second run finds the lock held and is refused before it loads any adapter,
with one line naming that pid.  ``conv-conformance run`` takes the lock in the
supervisor, for the whole run including its own finalization, and tells its
pytest child so (:data:`HELD_ENV`); a plain ``pytest --results`` takes it in
the plugin.

The kernel lets go of a flock when its holder dies, so a killed run never
leaves a stale lock, only a file.  A run that ends normally removes the file
and the shards directory (when empty): no litter.  Because a finishing run
unlinks the file while still holding the lock, a run that locked a file in the
meantime checks that it still is the file at the path, and tries again if not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

#: Set by the supervisor for its pytest child: "<supervisor pid>:<lock path>" (the lock is held for it).
HELD_ENV = "CONV_CONFORMANCE_RUN_LOCK"
_ATTEMPTS = 50


class RunLocked(RuntimeError):
    """Another live run is writing the results file; ``pid`` is that run's (None if it did not say)."""

    def __init__(self, results: str, pid: int | None) -> None:
        who = f"another run (pid {pid})" if pid else "another run"
        super().__init__(f"--results={results} is being written by {who}: wait for it to finish, "
                         "or give this run another --results")  # fmt: skip
        self.pid = pid


def lock_path(results_path: str | os.PathLike) -> Path:
    """``<results>.shards/.lock``, its directory resolved, so that two runs that reach one results file through
    different paths (a symlinked directory, ``..``) still meet at one lock."""
    full = os.path.abspath(results_path)
    return Path(os.path.realpath(os.path.dirname(full))) / f"{os.path.basename(full)}.shards" / ".lock"


class RunLock:
    """A held lock on one results file's shards directory; :meth:`release` lets go and tidies up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, results_path: str | os.PathLike) -> RunLock:
        """Lock ``results_path`` for this process, or raise :class:`RunLocked` naming the run that has it."""
        path = lock_path(results_path)
        for _ in range(_ATTEMPTS):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue  # a finishing run removed the directory between the two calls
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise RunLocked(str(results_path), pid) from None
            if _same_file(fd, path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return cls(path, fd)
            os.close(fd)  # locked a file a finishing run had just unlinked: take the new one
        raise RunLocked(str(results_path), None)

    def release(self) -> None:
        """Remove the lock file (still holding it, so no one locks a file about to go), the shards directory
        if nothing else is in it, then let go.  Idempotent."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()
        os.close(self._fd)
        self._fd = None


def held_for_us(results_path: str | os.PathLike) -> bool:
    """Whether our parent, the ``conv-conformance`` supervisor, holds the lock on ``results_path`` for us."""
    value = os.environ.get(HELD_ENV, "")
    pid, _, path = value.partition(":")
    return pid.isdigit() and int(pid) == os.getppid() and path == str(lock_path(results_path))


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


__all__ = ["HELD_ENV", "RunLock", "RunLocked", "held_for_us", "lock_path"]
