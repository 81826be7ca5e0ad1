"""Fenced writes: a scheduler writes to Redis only while the fences it holds still name it.

A lease or a lock with a TTL alone does not stop its holder from writing after it lapsed: a
process paused past it (SIGSTOP, a VM frozen, a GC pause, a network partition) wakes up and writes
as if it still held it, while another took over. So each lease or lock has a *fence* next to it:
a string ``"<generation> <holder>"`` without a TTL, rewritten (one generation higher) by every
take-over and by nothing else. Every write goes through ``FencedRedis``: a single command or a
whole pipeline runs in a ``MULTI`` that ``WATCH``es each fence after checking that it still names
this holder's token. A take-over rewrites the fence, so the former holder's next write raises
before anything is sent, and one already between its check and its ``EXEC`` is discarded by Redis
(the ``WATCH``).

Two kinds of fence use it (``Fence``): the serving schedulers' leader lease
(``rqp_scheduler.leader``: all of a leader's writes) and each workload's run lock
(``rqp_scheduler.run.lock``: the writes of one workload's run). A run's client carries both.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import redis
from redis.client import Pipeline

__all__ = ["READ_ONLY", "Fence", "FencedPipeline", "FencedRedis", "fenced", "is_write"]

_READ_ONLY_NAMES = (
    "GET MGET STRLEN GETRANGE GETBIT BITCOUNT BITPOS EXISTS TYPE TTL PTTL EXPIRETIME SCAN KEYS DBSIZE "
    "HGET HMGET HGETALL HLEN HEXISTS HKEYS HVALS HSCAN HSTRLEN HRANDFIELD "
    "LLEN LRANGE LINDEX LPOS SCARD SISMEMBER SMISMEMBER SMEMBERS SSCAN SRANDMEMBER "
    "ZCARD ZSCORE ZMSCORE ZRANK ZREVRANK ZCOUNT ZLEXCOUNT ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE "
    "ZRANGEBYLEX ZREVRANGEBYLEX ZSCAN ZRANDMEMBER XLEN XRANGE XREVRANGE XINFO XPENDING "
    "EVALSHA_RO EVAL_RO FCALL_RO PING ECHO INFO TIME ROLE CLIENT HELLO AUTH SELECT COMMAND SCRIPT MEMORY OBJECT "
    "WATCH UNWATCH"
)
#: commands that change nothing: sent as they are. Every other command is fenced.
READ_ONLY = frozenset(_READ_ONLY_NAMES.split())
#: a transaction Redis discarded although every fence still names its holder (a Redis writer
#: setting a fence to the value it had: WATCH fires on any write) is sent again, this many times
_DISCARDED_RETRIES = 3


class _Discarded(redis.WatchError):
    """Redis answered a fenced transaction's EXEC with nil: a watched fence was written, nothing ran."""


class Fence(Protocol):
    """What ``FencedRedis`` needs of a lease or lock."""

    #: the fence's key: ``"<generation> <holder>"``, no TTL
    key: str
    #: the value the fence holds while this holder holds it (None: not taken, nothing is written)
    token: str | None
    #: set once the holder learnt it lost it: nothing more is written under it
    lost: threading.Event

    def step_down(self) -> None:
        """Mark it lost (once), say so, and tell whoever waits on it."""

    def lost_error(self, discarded: bool) -> Exception:
        """The exception a write under a lost fence raises (``discarded``: Redis threw the write away)."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def is_write(args: tuple[Any, ...]) -> bool:
    return _text(args[0]).split(" ", 1)[0].upper() not in READ_ONLY


class FencedRedis(redis.Redis):
    """A client whose reads go as they are and whose every write is fenced by ``fences`` (see the
    module's docstring). Shares ``pool`` with the client it was made from."""

    def __init__(self, pool: redis.ConnectionPool, fences: tuple[Fence, ...]) -> None:
        super().__init__(connection_pool=pool)
        self.fences = fences

    def with_fence(self, fence: Fence) -> FencedRedis:
        """This client's fences and ``fence`` too, on the same connections."""
        return FencedRedis(self.connection_pool, (*self.fences, fence))

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if not is_write(args):
            return super().execute_command(*args, **options)
        with self.pipeline(transaction=True) as pipe:
            pipe.execute_command(*args, **options)
            return pipe.execute()[0]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> FencedPipeline:
        return FencedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint, self.fences)


def fenced(client: redis.Redis, fence: Fence) -> FencedRedis:
    """``client``'s connections, every write fenced by ``fence`` (and by ``client``'s own fences)."""
    if isinstance(client, FencedRedis):
        return client.with_fence(fence)
    return FencedRedis(client.connection_pool, (fence,))


class FencedPipeline(Pipeline):
    """A pipeline whose writes run only while every fence names its holder."""

    def __init__(self, pool: Any, callbacks: Any, transaction: Any, shard_hint: Any, fences: tuple[Fence, ...]) -> None:
        super().__init__(pool, callbacks, transaction, shard_hint)
        self.fences = fences
        self._keys = [f.key for f in fences]

    def _values(self) -> list[str]:
        # WATCHing: the pipeline holds the connection the EXEC will use; the fences' GETs go as one
        # write and their replies are read in turn (GET, not MGET: the roles' ACL has no MGET). A
        # key of another type (junk a Redis writer left) reads as nothing, which names nobody.
        conn = self.connection
        assert conn is not None, "WATCH first"
        conn.send_packed_command(conn.pack_commands([("GET", key) for key in self._keys]))
        values = []
        for _key in self._keys:
            try:
                values.append(_text(conn.read_response()))
            except redis.ResponseError:
                values.append("")
        return values

    def _lost(self, values: list[str]) -> Fence | None:
        for fence, value in zip(self.fences, values, strict=True):
            if fence.lost.is_set() or fence.token is None or value != fence.token:
                return fence
        return None

    def _check_fences(self) -> None:
        try:
            values = self._values()
        except BaseException:
            self.reset()  # the connection goes back to the pool (a caller may not reset this pipeline)
            raise
        lost = self._lost(values)
        if lost is not None:
            self.reset()
            lost.step_down()
            raise lost.lost_error(False)

    def watch(self, *names: Any) -> None:
        super().watch(*self._keys, *names)
        self._check_fences()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.watching or not any(is_write(args) for args, _ in self.command_stack):
            return super().execute(raise_on_error)  # a caller's own WATCH covers the fences too (``watch``)
        stack = self.command_stack
        for attempt in range(_DISCARDED_RETRIES + 1):
            self.command_stack = []
            self.explicit_transaction = False  # a caller's own MULTI (no WATCH): WATCH first, MULTI again below
            super().watch(*self._keys)
            self._check_fences()
            self.multi()
            self.command_stack = list(stack)
            try:
                return super().execute(raise_on_error)
            except _Discarded:
                # Redis answered the EXEC with nil: nothing of it ran. Which fence moved? Read them
                # again (unwatched): a take-over is a lost fence; a fence written with the value it
                # had is not, and the discarded write goes again
                lost = self._lost(self._values_unwatched())
                if lost is None and attempt < _DISCARDED_RETRIES:
                    continue
                # every fence still names its holder, yet Redis keeps discarding the write: a
                # writer rewriting one in a loop. The most particular fence (a workload's run lock,
                # not the leader lease that every workload shares) is the one given up
                lost = lost or self.fences[-1]
                lost.step_down()
                raise lost.lost_error(True) from None
            except redis.WatchError as exc:
                # redis-py's name for a connection lost while WATCHing (``_disconnect_raise_on_watching``):
                # whether the EXEC ran is unknown, so it is never sent again here -- an outage, which
                # the scheduler's loop rides out, re-reading its state from Redis
                raise redis.ConnectionError(f"Redis went away while a fenced write was sent ({exc})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> list[Any]:
        # a WatchError raised in here is Redis's nil EXEC (the WATCH fired: nothing ran); one
        # raised around it is redis-py's for a lost connection (the EXEC may have run)
        try:
            return super()._execute_transaction(connection, commands, raise_on_error)
        except redis.WatchError as exc:
            raise _Discarded(str(exc)) from None

    def _values_unwatched(self) -> list[str]:
        # the pipeline was reset by the discarded EXEC: a plain client on the same connections
        plain = redis.Redis(connection_pool=self.connection_pool)
        values = []
        for key in self._keys:
            try:
                values.append(_text(plain.get(key)))
            except redis.ResponseError:
                values.append("")
        return values
