"""The leader lease: one serving scheduler acts, a standby waits and takes over.

``rqp-scheduler serve`` first takes a lease in Redis (``LEASE``, a string
``"<generation> <holder>"`` with a TTL of ``leader_lease_seconds``, renewed every third of it). A
second ``serve`` -- on another VM -- polls it and takes over once it lapses, so a leader that dies
is replaced within the lease plus one poll (6 s + 0.5 s by default); one stopped on request
releases it at once.

Fencing. A lease alone does not stop a leader that was paused (SIGSTOP, a VM frozen, a GC pause)
past its lease from waking up and writing as if it still led. So every write the scheduler
makes goes through ``rqp_scheduler.fence.FencedRedis``, fenced by ``FENCE`` (the latest leader's
``"<generation> <holder>"``, no TTL), which a standby's takeover rewrites: the old leader's next
write raises ``LeaderLost`` before anything is sent, and a write already between its check and
its ``EXEC`` is discarded by Redis. ``LeaderLost`` is a ``redis.ConnectionError``: the
scheduler's loop treats it like Redis going away (nothing of its in-memory state is trusted
afterwards) while its stop event, set by the fence, ends the loop.

What a Redis writer can do here (Security III): forge or delete the lease or the fence. The
worst is that no scheduler leads (scheduling stalls while the forged lease lasts: one without a
TTL is given one lease of life, one of another type is deleted) or that two lead at once; results stay
right either way, since they never depended on one scheduler acting alone -- every commit,
reclaim and enqueue is arbitrated by the sealed, per-workload state (``rqp.ledger``).

The scripts are ``lua/leader_*.lua``, their KEYS and ARGV documented there.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import redis

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.identity import process_identity
from rqp.ledger import LEADER_FENCE, LEADER_LEASE, WorkloadKeys, register_script, unfinished

from .fence import READ_ONLY, FencedRedis

__all__ = [
    "FENCE",
    "LEADER_POLL_SECONDS",
    "LEASE",
    "MAX_GENERATION",
    "READ_ONLY",
    "FencedRedis",
    "LeaderLease",
    "LeaderLost",
    "parse_generation",
]

log = logging.getLogger("rqp.scheduler")

#: the lease: ``"<generation> <holder>"`` with a TTL, renewed by the leader
LEASE = LEADER_LEASE
#: the latest leader's ``"<generation> <holder>"`` (no TTL): what every fenced write checks
FENCE = LEADER_FENCE
#: how often a standby looks whether the lease lapsed
LEADER_POLL_SECONDS = 0.5
#: generations stay below 2**53 - 1 (exact as a Lua double); one at or above it is junk, read as 0
#: (``MAX_GENERATION`` in ``lua/_helpers.lua``)
MAX_GENERATION = 2**53 - 1


class LeaderLost(redis.ConnectionError):
    """This scheduler's lease was taken by another: it must write nothing more and step down."""


@cache
def _script(name: str) -> str:
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("_helpers.lua").read_text() + "\n" + lua.joinpath(f"leader_{name}.lua").read_text()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def parse_generation(value: str) -> int:
    """The generation at the head of ``"<generation> <holder>"``; 0 for junk (not digits, or at
    or above ``MAX_GENERATION``), as the Lua scripts read it -- a Redis writer's value never raises."""
    head = value.split(" ", 1)[0]
    if not (head.isascii() and head.isdigit()) or len(head) > len(str(MAX_GENERATION)):
        return 0
    gen = int(head)
    return gen if gen < MAX_GENERATION else 0


class LeaderLease:
    """Take, keep and hand back the leader lease for one serving scheduler."""

    def __init__(self, r: redis.Redis, seconds: float, me: str | None = None) -> None:
        self.r = r
        self.seconds = seconds
        self.me = me or process_identity()
        #: ``"<generation> <holder>"`` once this scheduler leads
        self.token: str | None = None
        #: the leader before this one (its ``"<generation> <holder>"``; "" for the first)
        self.former = ""
        #: set when the lease was lost: the scheduler's loop stops on it
        self.lost = threading.Event()
        #: what every fenced write checks (``rqp_scheduler.fence``)
        self.key = FENCE
        self._on_lost: list[Callable[[], None]] = []
        self._take = register_script(r, _script("take"))
        self._renew = register_script(r, _script("renew"))
        self._release = register_script(r, _script("release"))

    @classmethod
    def open(cls, settings: Settings) -> LeaderLease:
        """A lease on the coordinating Redis (a checked client: one line if it is unreachable)."""
        return cls(connect_redis(settings), settings.leader_lease_seconds)

    @property
    def generation(self) -> int:
        return parse_generation(self.token or "")

    def _ms(self) -> int:
        return max(1, int(self.seconds * 1000))

    def try_take(self) -> str | None:
        """Take the lease if nobody holds it: None when taken, else the holder's ``"<gen> <holder>"``."""
        taken, value, former = self._take(keys=[LEASE, FENCE], args=[self.me, self._ms(), math.ceil(self.seconds)])
        if not taken:
            return _text(value)
        self.token, self.former = _text(value), _text(former)
        self.lost.clear()  # leading (again): under a new generation
        return None

    def wait(self, stop: threading.Event) -> bool:
        """Wait until this scheduler leads (True), riding out Redis outages; False when ``stop``
        is set first. Says once whom it waits behind."""
        waiting_for = None
        while not stop.is_set():
            try:
                holder = self.try_take()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("standby: Redis unreachable (%s); retrying", str(exc).split("\n")[0])
                stop.wait(LEADER_POLL_SECONDS * 4)
                continue
            if holder is None:
                former = f", after {self.former}" if self.former else ""
                log.info("leading as %s (generation %d%s)", self.me, self.generation, former)
                return True
            if holder != waiting_for:
                log.info("standby: %s leads; taking over when its lease lapses", holder)
                waiting_for = holder
            stop.wait(LEADER_POLL_SECONDS)
        return False

    def renew(self) -> bool:
        """Extend the lease; False (and ``lost`` set) when the lease or fence no longer names this
        scheduler (another took it over, or a Redis writer forged it)."""
        assert self.token is not None
        if self.lost.is_set():
            return False
        if self._renew(keys=[LEASE, FENCE], args=[self.token, self._ms()]):
            return True
        self.step_down()
        return False

    def step_down(self) -> None:
        """Mark the lease lost (once) and tell the callbacks: the loop stops, nothing more is written."""
        if self.lost.is_set():
            return
        self.lost.set()
        log.error(
            "lost the leader lease (generation %d; taken over by another scheduler, or written behind "
            "rqp's back: Redis now holds %s): this one writes nothing more and steps down",
            self.generation,
            self._held(),
        )
        for callback in self._on_lost:
            callback()

    def _held(self) -> str:
        """What Redis holds in the lease and the fence, for the step-down line (best effort: the
        operator is told what replaced this leader's token, which may be no scheduler at all)."""
        try:
            lease, fence = (_text(self.r.get(key)) or "nothing" for key in (LEASE, FENCE))
        except redis.ResponseError:
            return "a lease or fence of another type (junk)"
        except redis.RedisError as exc:
            return f"(unknown: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        return f"lease {lease!r}, fence {fence!r}"

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    def keep(self, stop: threading.Event) -> threading.Thread:
        """Renew every third of the lease in a thread until ``stop`` or the lease is lost. A renewal
        that cannot reach Redis is retried at the next beat: the lease may lapse meanwhile, and a
        standby take over (the fence then stops this one)."""

        def beat() -> None:
            while not stop.wait(self.seconds / 3) and not self.lost.is_set():
                try:
                    self.renew()
                except redis.RedisError as exc:
                    log.warning("could not renew the leader lease (%s)", str(exc).split("\n")[0])

        thread = threading.Thread(target=beat, name="rqp-leader-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Hand the lease on at once (a clean stop), if this scheduler still holds it."""
        if self.token is None or self.lost.is_set():
            return
        try:
            self._release(keys=[LEASE, FENCE], args=[self.token])
        except redis.RedisError as exc:
            log.warning("could not release the leader lease (%s); a standby takes over when it lapses", exc)

    def fenced(self) -> FencedRedis:
        """A client sharing this lease's connections whose every write is fenced by it."""
        assert self.token is not None, "take the lease first"
        return FencedRedis(self.r.connection_pool, (self,))

    def lost_error(self, discarded: bool) -> LeaderLost:
        if discarded:
            return LeaderLost(
                f"this scheduler's lease (generation {self.generation}) was taken while it wrote; Redis discarded the write"
            )
        return LeaderLost(f"this scheduler no longer leads (generation {self.generation}); it writes nothing")

    def release_former_locks(self, r: redis.Redis) -> int:
        """Free the workload locks the former leader held, so this one resumes its workloads now
        rather than after the locks' TTL (the former leader is fenced out: it cannot renew them)."""
        former = self.former.split(" ", 1)[1] if " " in self.former else ""
        if not former:
            return 0
        freed = 0
        for wid in unfinished(self.r):
            key = WorkloadKeys(wid).lock
            if _text(self.r.get(key)) == former:
                freed += int(r.delete(key))
        return freed
