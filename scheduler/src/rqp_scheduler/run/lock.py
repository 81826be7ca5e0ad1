"""The workload's scheduler lock: one scheduler supervises a workload at a time.

The lock (``rqp:w:W:lock``, the holder with a TTL) says who supervises; its fence
(``rqp:w:W:fence``, ``"<generation> <holder>"``, no TTL) says who took it last. Every write of the
run goes through a client fenced by it (``rqp_scheduler.fence``), so a scheduler whose lock lapsed
and was taken over -- it was paused, frozen or cut off from Redis for longer than the TTL --
writes nothing to that workload once it wakes: its writes raise ``LockLost`` and the run is
dropped. That is what lets a serving scheduler take over a workload whose lock lapsed
(``Scheduler.take_lapsed``) without two schedulers ever acting on it at once.

The lock is renewed by a thread (``LockKeeper``), not between steps: a step may take longer than
the TTL (a slow ``parse()``, a long consolidation) while its scheduler is alive and well.

A lock held by a process of this host that no longer exists (a crashed scheduler) is taken over
at once instead of after its TTL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterable

import redis

from rqp.errors import WorkloadError
from rqp.ledger import Ledger, LockHeld

__all__ = ["LOCK_SECONDS", "LockHeldError", "LockKeeper", "LockLost", "RunLock", "held_locks", "stop_keeping"]

log = logging.getLogger("rqp.scheduler")

#: the lock's TTL; it is renewed every third of it
LOCK_SECONDS = 30


class LockLost(WorkloadError):
    """Another scheduler took this workload's lock over: this run writes nothing more to it."""


class LockHeldError(WorkloadError):
    """Another scheduler holds the workload's lock: this one does not supervise it."""


class RunLock:
    """Take, renew and release one workload's lock in this scheduler's name; the fence its run's
    writes check (``rqp_scheduler.fence.Fence``)."""

    def __init__(self, r: redis.Redis, workload_id: str, me: str) -> None:
        #: a client the run's own fence does not cover: taking and renewing must not need it
        self.ledger = Ledger(r, workload_id)
        self.id = workload_id
        self.me = me
        #: the fence's key and, once taken, the value it holds while this run holds the lock
        self.key = self.ledger.k.fence
        self.token: str | None = None
        #: set once this run learnt another scheduler took the lock over
        self.lost = threading.Event()
        #: between ``take`` and ``release``: a lock released is not renewed (taken back) by the keeper
        self.holding = False
        self._mutex = threading.Lock()

    def take(self) -> None:
        try:
            token = self.ledger.take_lock(self.me, LOCK_SECONDS, _holder_dead)
        except LockHeld as held:
            raise LockHeldError(
                f"workload {self.id} is already being scheduled by {_short(held.holder)}; wait for it, or stop it and "
                f"retry in {LOCK_SECONDS}s"
            ) from None
        with self._mutex:
            self.token = token
            self.lost.clear()
            self.holding = True
        _hold(self)  # renewed from now on, while the run starts (a long setup()) and runs

    def renew(self) -> None:
        """``LockLost`` when another scheduler took the lock over (nothing once released). One
        renewal at a time, and never across a release: the keeper's renewal landing just after
        the run released the lock would put it back for a TTL (the thirteenth review, F8)."""
        with self._mutex:
            if not self.holding:
                return
            if self.lost.is_set() or self.token is None:
                renewed = False
            else:
                renewed = self.ledger.renew_lock(self.me, LOCK_SECONDS, self.token)
        if not renewed:
            self.step_down()
            raise self.lost_error(False)

    def abandon(self) -> None:
        """Stop supervising (a run dropped, or one whose start failed): released when Redis answers,
        else no longer renewed, so it lapses -- never renewed for good by the keeper for a run that
        is gone, which no serving scheduler could then take over."""
        try:
            self.release()
        except redis.RedisError:
            with self._mutex:
                self.holding = False
                _unhold(self)

    def release(self) -> None:
        with self._mutex:
            if not self.holding:
                return
            self.holding = False
            _unhold(self)
            if self.token is not None and not self.lost.is_set():
                self.ledger.release_lock(self.me, self.token)

    def generation(self) -> str:
        """The generation this run took the lock at (names its staged blobs); "0" before a take."""
        head = (self.token or "").split(" ", 1)[0]
        return head if head.isdigit() else "0"

    # ------------------------------------------------------------------ the fence (rqp_scheduler.fence.Fence)
    def step_down(self) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        _unhold(self)
        log.warning(
            "workload %s: %s (Redis's fence holds %s, this run's was %s); this one writes nothing more to it and "
            "stops supervising it",
            self.id, self._why(), self._fence_now(), self.token,
        )  # fmt: skip

    def lost_error(self, discarded: bool) -> LockLost:
        how = "; Redis discarded the write it was sending" if discarded else ""
        return LockLost(f"workload {self.id}: {self._why()}{how}; this one stops supervising it")

    def _why(self) -> str:
        """Why the lock is not this run's any more: taken over, or -- its fence gone with the rest of
        the workload's keys -- Redis lost its data (which a new run resumes from the checkpoint)."""
        try:
            gone = not self.ledger.r.exists(self.key, self.ledger.k.meta)
        except redis.RedisError:
            gone = False
        if gone:
            return (
                "its lock and state are gone from Redis (Redis lost its data, or they were deleted): resume it "
                f"with 'rqp-scheduler run {self.id}' (or 'rqp submit {self.id}' to a serving scheduler)"
            )
        try:
            unchanged = self.token is not None and self.ledger.r.get(self.key) == self.token.encode()
        except redis.RedisError:
            unchanged = False
        if unchanged:  # every write discarded, the fence as it was: rewritten, again and again
            return "its lock's fence keeps being rewritten behind rqp's back (a Redis writer)"
        return "another scheduler took over its lock"

    def _fence_now(self) -> str:
        try:
            value = self.ledger.r.get(self.key)
        except redis.ResponseError:
            return "a value of another type (junk)"
        except redis.RedisError as exc:
            return f"(unknown: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        return repr(_short(value.decode(errors="replace"))) if isinstance(value, bytes) else "nothing"


class LockKeeper(threading.Thread):
    """Renews every lock this process holds (``held_locks``) every third of ``LOCK_SECONDS``, so
    neither a step longer than the TTL nor a long start (a ``setup()`` loading a model) lets a live
    scheduler's lock lapse (the eleventh review, F2; the thirteenth, F4). One per process, started
    by the first lock taken (``keep_locks``). A renewal that finds the lock taken marks that
    run's lock lost: its next write raises ``LockLost``."""

    def __init__(self, held: Callable[[], Iterable[RunLock]] | None = None, every: float | None = None) -> None:
        super().__init__(name="rqp-lock-keeper", daemon=True)
        self.held = held or held_locks
        self.every = LOCK_SECONDS / 3 if every is None else every
        self._stop_event = threading.Event()

    def renew_all(self) -> None:
        for lock in list(self.held()):
            try:
                lock.renew()
            except LockLost:
                pass  # said once by step_down; the run's next write drops it
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # unreachable: the loop says so and rides it out (or fenced out as leader: stopping)
            except redis.RedisError as exc:
                log.warning("could not renew the lock of workload %s (%s)", lock.id, str(exc).split("\n")[0][:200])

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            self.renew_all()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)


#: the locks this process holds, and the keeper renewing them (weakly: a run dropped and forgotten
#: without a release stops being renewed once it is collected)
_held: weakref.WeakSet[RunLock] = weakref.WeakSet()
_registry = threading.Lock()
_keeper: LockKeeper | None = None


def _hold(lock: RunLock) -> None:
    global _keeper
    with _registry:
        _held.add(lock)
        if _keeper is None or not _keeper.is_alive():
            _keeper = LockKeeper()
            _keeper.start()


def _unhold(lock: RunLock) -> None:
    with _registry:
        _held.discard(lock)


def held_locks() -> list[RunLock]:
    with _registry:
        return list(_held)


def stop_keeping() -> None:
    """Stop renewing (this process's keeper ends; the locks held lapse): for a process that goes on
    after its schedulers ended, a test run."""
    global _keeper
    with _registry:
        keeper, _keeper = _keeper, None
        _held.clear()
    if keeper is not None:
        keeper.stop()


def _short(value: str, limit: int = 80) -> str:
    """A value read from Redis as a log line or an error quotes it: a Redis writer's 20 MiB fence is
    not copied into either (the thirteenth review, F7)."""
    if len(value) <= limit and value.isprintable():
        return value
    return repr(value[:limit]) + (f"... ({len(value)} characters)" if len(value) > limit else "")


def _holder_dead(holder: str) -> bool:
    """A lock held by a process of this host that no longer exists (a crashed scheduler)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
