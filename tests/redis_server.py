"""A real ``redis-server`` for the campaign tests: Debian's ``redis-server`` package (``.ci/run`` installs it).

Each server runs on a free loopback port in its own directory, persists nothing
(``--save ''``, ``--appendonly no``), and is stopped when the test is done.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

REDIS_SERVER = "redis-server"


def missing() -> str | None:
    """Why no campaign test can run here, or None."""
    if shutil.which(REDIS_SERVER) is None:
        return f"{REDIS_SERVER} not found: install Debian's redis-server package (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client is not installed (pip install -e '.[test]')"
    return None


def free_port() -> int:
    """A loopback port nothing listens on now (the server takes it a moment later; a clash fails loudly)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RedisServer:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL: the server goes away as it would on a crash or a lost host."""
        self.process.kill()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[RedisServer]:
    import redis

    directory = tempfile.mkdtemp(prefix="conv-conformance-redis-")
    port = free_port()
    process = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", directory],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start (exit {process.poll()})") from None
                time.sleep(0.05)
        client.close()
        yield RedisServer(process, port)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)
