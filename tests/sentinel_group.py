"""A real Redis primary, a replica and three real Sentinels on free loopback ports, for the tests
of failover (``tests/shared/test_sentinel*.py``, ``tests/reliability/test_sentinel_failover.py``).

Sentinel timeouts are short (down after 1 s) so a failover takes a few seconds. Every wait is on a
condition the servers report, never a fixed sleep.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis_server import RedisServer, free_port

__all__ = ["SERVICE", "SentinelGroup", "wait_until"]

#: the master name the Sentinels monitor
SERVICE = "rqp-primary"
#: a Sentinel thinks the primary down after this long without an answer
DOWN_AFTER_MS = 1000


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class SentinelGroup:
    """Primary + replica + three Sentinels; ``kill_primary`` and ``wait_failover`` drive a failover."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rqp-sentinel-"))
        self.primary = RedisServer(dir=str(self._sub("primary")))
        self.replica = RedisServer(dir=str(self._sub("replica")))
        self.replica.extra = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen] = []

    def _sub(self, name: str) -> Path:
        d = self.dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    @property
    def sentinels_setting(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        wait_until(self._replica_synced, 20, "the replica to sync with the primary")
        # redis-sentinel (tools/install-test-redis.sh installs it), else the server in Sentinel mode
        binary = shutil.which("redis-sentinel")
        for i, port in enumerate(self.sentinel_ports):
            d = self._sub(f"sentinel-{i}")
            conf = d / "sentinel.conf"  # Sentinel rewrites its own config: one writable file each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {d}\nprotected-mode no\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 4000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            cmd = [binary, str(conf)] if binary else [self.primary.binary, str(conf), "--sentinel"]
            with open(d / "sentinel.log", "ab") as log:
                self.sentinels.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        wait_until(self._sentinels_ready, 30, "the Sentinels to find the replica and each other")
        return self

    def _replica_synced(self) -> bool:
        info = self.replica.client().info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            s = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=1)
            try:
                if len(s.sentinel_slaves(SERVICE)) < 1 or len(s.sentinel_sentinels(SERVICE)) < 2:
                    return False
            finally:
                s.close()
        return True

    def primary_port(self) -> int:
        """The primary's port as the Sentinels report it (the first that answers)."""
        for port in self.sentinel_ports:
            s = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=1)
            try:
                addr = s.sentinel_get_master_addr_by_name(SERVICE)
                if addr:
                    return int(addr[1])
            except (redis.ConnectionError, redis.TimeoutError):
                continue
            finally:
                s.close()
        raise AssertionError("no Sentinel answers")

    def kill_primary(self) -> float:
        """SIGKILL the primary; returns when (``time.monotonic()``)."""
        assert self.primary.proc is not None
        self.primary.proc.kill()
        self.primary.proc.wait()
        return time.monotonic()

    def _all_name_the_replica(self) -> bool:
        """Every Sentinel names the replica as a primary it thinks up (what redis-py's discovery
        accepts): a client asking any of them now finds it."""
        for port in self.sentinel_ports:
            s = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=1)
            try:
                state = s.sentinel_master(SERVICE)
            finally:
                s.close()
            if int(state["port"]) != self.replica.port or not state["is_master"]:
                return False
            if state["is_sdown"] or state["is_odown"]:
                return False
        return True

    def wait_failover(self, timeout: float = 30) -> None:
        """Until every Sentinel names the replica as primary and it accepts writes."""
        wait_until(self._all_name_the_replica, timeout, "every Sentinel to name the promoted replica")
        wait_until(
            lambda: self.replica.client().info("replication").get("role") == "master",
            timeout,
            "the replica's promotion",
        )

    def stop(self) -> None:
        for p in self.sentinels:
            if p.poll() is None:
                p.terminate()
        for p in self.sentinels:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
