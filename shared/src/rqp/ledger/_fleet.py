"""The fleet registry: which processors are alive, on which host, with how many workers, and which
sandbox protections their script processes have.

Each ``rqp-processor`` supervisor logs its protections at start; an operator looking at one
console instead of N processor logs needs the same line from Redis. A processor writes a small
hash ``rqp:fleet:<host>:<pid>`` with a TTL and lists itself in the zset ``rqp:fleet`` scored by
when that entry expires; its supervise loop renews both (``FleetHeartbeat``). A processor that
dies stops renewing and drops out within the TTL. The zset is an index, so ``fleet`` finds the
live entries without ``SCAN`` or ``KEYS`` (which no rqp Redis user may run).

=============================  ======  ======================================================
rqp:fleet                      zset    "<host>:<pid>" -> when its entry expires (epoch s)
rqp:fleet:<host>:<pid>         hash    host, pid, workers, protections, started_at, seen_at
=============================  ======  ======================================================

Nothing here is secret: host names, process ids and the protections line are what the
processor's log says, and what RQ's worker registry already shows to anyone who reads Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from ._codecs import text

__all__ = [
    "FLEET",
    "FLEET_HEARTBEAT_SECONDS",
    "FLEET_TTL_SECONDS",
    "FleetHeartbeat",
    "fleet",
    "fleet_key",
    "leave_fleet",
    "register_processor",
]

log = logging.getLogger("rqp.fleet")

#: zset "<host>:<pid>" -> expiry of that processor's entry
FLEET = "rqp:fleet"
#: how often a processor renews its entry
FLEET_HEARTBEAT_SECONDS = 10.0
#: an entry not renewed for this long is gone (a supervisor may sleep up to 30 s between
#: restarts of a crash-looping worker, so this is longer than that)
FLEET_TTL_SECONDS = 60


def fleet_key(member: str) -> str:
    """Hash: one processor's entry (``member`` is ``host:pid``)."""
    return f"{FLEET}:{member}"


def register_processor(
    r: redis.Redis,
    *,
    host: str,
    pid: int,
    protections: str,
    workers: int,
    started_at: float,
    ttl: int = FLEET_TTL_SECONDS,
    now: float | None = None,
) -> None:
    """Write (or renew) this processor's entry, and drop expired ones from the index. Idempotent:
    the heartbeat calls it again, so an entry lost with a Redis restart comes back."""
    now = time.time() if now is None else now
    member = f"{host}:{pid}"
    key = fleet_key(member)
    pipe = r.pipeline(transaction=False)
    pipe.hset(
        key,
        mapping={
            "host": host,
            "pid": pid,
            "workers": workers,
            "protections": protections,
            "started_at": started_at,
            "seen_at": now,
        },
    )
    pipe.expire(key, ttl)
    pipe.zadd(FLEET, {member: now + ttl})
    pipe.zremrangebyscore(FLEET, "-inf", now)
    pipe.execute()


def leave_fleet(r: redis.Redis, host: str, pid: int) -> None:
    """A processor stopping cleanly takes its entry out at once."""
    member = f"{host}:{pid}"
    pipe = r.pipeline(transaction=False)
    pipe.delete(fleet_key(member))
    pipe.zrem(FLEET, member)
    pipe.execute()


def fleet(r: redis.Redis, now: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The live processors' entries (host, pid, workers, protections, started_at, seen_at, and
    ``self_reported``: always True -- a Redis writer can forge any of it), by host then pid; two round trips whatever the number of workloads or records."""
    now = time.time() if now is None else now
    members = [str(text(m)) for m in r.zrangebyscore(FLEET, now, "+inf", start=0, num=limit)]
    if not members:
        return []
    pipe = r.pipeline(transaction=False)
    for m in members:
        pipe.hgetall(fleet_key(m))
    out = []
    for fields in pipe.execute():
        if not fields:
            continue  # expired between the two reads
        d = {str(text(k)): str(text(v)) for k, v in fields.items()}
        try:
            out.append(
                {
                    "host": d.get("host", ""),
                    "pid": int(d.get("pid", 0)),
                    "workers": int(d.get("workers", 0)),
                    "protections": d.get("protections", ""),
                    "started_at": float(d.get("started_at", 0.0)),
                    "seen_at": float(d.get("seen_at", 0.0)),
                    # what a processor says of itself: nothing an attacker without keys cannot
                    # forge backs it, so every reader shows it as such (issue #22 item 5)
                    "self_reported": True,
                }
            )
        except ValueError:
            continue  # not written by rqp: shown nowhere rather than crash a reader
    return sorted(out, key=lambda e: (e["host"], e["pid"]))


class FleetHeartbeat:
    """A processor supervisor's entry in the fleet registry, renewed from its supervise loop.

    Best effort by design: the registry is for people looking at the fleet, so a Redis that is
    away, or a Redis user not (yet) allowed the ``rqp:fleet`` keys, costs one warning and never
    a processor. ``beat`` may be called on every loop tick; it writes at most every
    ``interval`` seconds."""

    def __init__(
        self,
        r: redis.Redis,
        host: str,
        pid: int,
        protections: str,
        workers: int,
        *,
        interval: float = FLEET_HEARTBEAT_SECONDS,
        ttl: int = FLEET_TTL_SECONDS,
    ) -> None:
        self.r = r
        self.host = host
        self.pid = pid
        self.protections = protections
        self.workers = workers
        self.interval = interval
        self.ttl = ttl
        self.started_at = time.time()
        self._next = 0.0
        self._warned = False

    def beat(self, now: float | None = None) -> bool:
        """Renew the entry if it is due; False when Redis refused or could not be reached."""
        mono = time.monotonic()
        if mono < self._next:
            return True
        self._next = mono + self.interval
        try:
            register_processor(
                self.r,
                host=self.host,
                pid=self.pid,
                protections=self.protections,
                workers=self.workers,
                started_at=self.started_at,
                ttl=self.ttl,
                now=now,
            )
        except redis.RedisError as exc:
            if not self._warned:
                log.warning(
                    "could not register this processor in the fleet registry %s (%s); the console will not list "
                    "it (processing is not affected; allow the processor's Redis user the %s* keys)",
                    FLEET,
                    str(exc).split("\n")[0],
                    FLEET,
                )
                self._warned = True
            return False
        self._warned = False
        return True

    def leave(self) -> None:
        try:
            leave_fleet(self.r, self.host, self.pid)
        except redis.RedisError:
            pass  # the entry expires by itself
