"""Noticing that Redis went back in time: a restart from an older snapshot, or a failover to an
asynchronous replica that had not received the last writes.

Such a rollback loses recent writes, and with them commits: a chunk whose commit was lost shows
in Redis as leased again, by a worker that finished it long ago and will never renew or commit
it. Left alone it waits for its lease to run out (``RQP_LEASE_SECONDS``). To notice at once, the
supervising scheduler keeps a *beat*: a counter it seals under the workload's data key into the
meta hash (``Meta.BEAT``) about once a second, and remembers in its own memory. When Redis holds
a beat older than the one this scheduler wrote last, writes were lost; the reclaimer then takes
back at once every leased chunk whose lease was written before the first beat Redis lost
(``Reclaimer.expired``): any of them may be a chunk whose commit was lost. A lease written after
that (a worker started or renewed it since Redis came back) belongs to a live worker and is left
to it.

What a Redis writer can do with it: put back an earlier beat (or junk, or delete it). Each reads
as a rollback, and the chunks in flight are re-run -- wasted work for that one workload, never a
wrong or a doubled result, since the pending set still decides which of two runs of a chunk
commits (``rqp.ledger``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
import time

from rqp.errors import IntegrityError
from rqp.ledger import Meta
from rqp.workload import Workload

from .context import RunContext

__all__ = ["ANY_TIME", "BEATS_REMEMBERED", "BEAT_PURPOSE", "RollbackWatch", "open_beat", "seal_beat"]

log = logging.getLogger("rqp.scheduler")

#: what a beat is sealed as (a beat does not open as any other sealed value, nor they as one)
BEAT_PURPOSE = "beat"
#: beats whose write time this scheduler remembers (an hour of them); a rollback further back,
#: or to a beat it never wrote, takes back every leased chunk
BEATS_REMEMBERED = 3600
#: the cut of a rollback whose time is unknown: after every lease (finite: never a queued chunk's +inf)
ANY_TIME = sys.float_info.max


def seal_beat(workload: Workload, n: int) -> str:
    return base64.b64encode(workload.seal(BEAT_PURPOSE, "", json.dumps({"n": n}).encode())).decode()


def open_beat(workload: Workload, value: bytes | str | None) -> int | None:
    """The count in a sealed beat; None when there is none or it does not open (junk, another
    workload's)."""
    if value is None:
        return None
    try:
        sealed = base64.b64decode(value, validate=True)
        n = json.loads(workload.open_sealed(BEAT_PURPOSE, "", sealed))["n"]
    except (IntegrityError, binascii.Error, ValueError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


class RollbackWatch:
    """The beat of one workload's run: ``check()`` once per reclaim pass, one round trip."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        #: the beat this scheduler wrote last (None: none yet -- it adopts what Redis holds)
        self.written: int | None = None
        #: how many rollbacks this run noticed (for tests and the log)
        self.noticed = 0
        #: beat -> when this scheduler sent it (``time.time()``), the last ``BEATS_REMEMBERED``
        self._sent: dict[int, float] = {}

    def check(self) -> float | None:
        """Write the next beat. When Redis held an older one than this scheduler wrote last, the
        time before which a lease may be one Redis kept while losing its chunk's commit (when
        the first beat Redis lost was sent); None when nothing was lost. The first check adopts
        Redis's beat (a scheduler that takes a workload over has no memory of it)."""
        ctx = self.ctx
        meta = ctx.ledger.k.meta
        now = time.time()
        if self.written is None:
            self.written = open_beat(ctx.workload, ctx.r.hget(meta, Meta.BEAT)) or 0
            ctx.r.hset(meta, Meta.BEAT, seal_beat(ctx.workload, self.written))
            self._sent[self.written] = now
            return None
        nxt = self.written + 1
        pipe = ctx.r.pipeline(transaction=True)
        pipe.hget(meta, Meta.BEAT)
        pipe.hset(meta, Meta.BEAT, seal_beat(ctx.workload, nxt))
        held, _ = pipe.execute()
        seen, self.written = open_beat(ctx.workload, held), nxt
        self._sent[nxt] = now
        self._sent.pop(nxt - BEATS_REMEMBERED, None)
        if seen is not None and seen >= nxt - 1:
            return None
        self.noticed += 1
        # the first beat Redis lost was sent at cut; a beat this scheduler did not send (junk, none,
        # one from before its memory): the writes lost may be any, every lease is suspect
        cut = self._sent.get(seen + 1, ANY_TIME) if seen is not None else ANY_TIME
        found = "no beat" if held is None else ("a beat that does not open" if seen is None else f"beat {seen}")
        since = f"at least those of the last {now - cut:.1f} s" if cut != ANY_TIME else "how far back unknown"
        reason = (
            f"Redis holds {found} where this scheduler wrote beat {nxt - 1}: it lost recent writes ({since}: a "
            "restart from an older snapshot or a failover to a replica); the chunks leased before then are re-run "
            "at once"
        )
        log.warning("workload %s: %s", ctx.id, reason)
        return cut
