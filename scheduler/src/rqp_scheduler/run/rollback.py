"""Noticing that Redis went back in time: a restart from an older snapshot, or a failover to an
asynchronous replica that had not received the last writes.

Such a rollback loses recent writes, and with them commits: a chunk whose commit was lost shows
in Redis as leased again, by a worker that finished it long ago and will never renew or commit
it. Left alone it waits for its lease to run out (``RQP_LEASE_SECONDS``). To notice at once, the
supervising scheduler keeps a *beat*: a counter it seals under the workload's data key into the
meta hash (``Meta.BEAT``) about once a second, and remembers in its own memory. When Redis holds
a beat older than the one this scheduler wrote last, writes were lost; the reclaimer then takes
back every leased chunk at once (``Reclaimer.expired``).

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

from rqp.errors import IntegrityError
from rqp.ledger import Meta
from rqp.workload import Workload

from .context import RunContext

__all__ = ["BEAT_PURPOSE", "RollbackWatch", "open_beat", "seal_beat"]

log = logging.getLogger("rqp.scheduler")

#: what a beat is sealed as (a beat does not open as any other sealed value, nor they as one)
BEAT_PURPOSE = "beat"


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

    def check(self) -> str | None:
        """Write the next beat; the reason (one line) when Redis held an older one than this
        scheduler wrote last, else None. The first check adopts Redis's beat (a scheduler that
        takes a workload over has no memory of it)."""
        ctx = self.ctx
        meta = ctx.ledger.k.meta
        if self.written is None:
            self.written = open_beat(ctx.workload, ctx.r.hget(meta, Meta.BEAT)) or 0
            ctx.r.hset(meta, Meta.BEAT, seal_beat(ctx.workload, self.written))
            return None
        nxt = self.written + 1
        pipe = ctx.r.pipeline(transaction=True)
        pipe.hget(meta, Meta.BEAT)
        pipe.hset(meta, Meta.BEAT, seal_beat(ctx.workload, nxt))
        held, _ = pipe.execute()
        seen, self.written = open_beat(ctx.workload, held), nxt
        if seen is not None and seen >= nxt - 1:
            return None
        self.noticed += 1
        found = "no beat" if held is None else ("a beat that does not open" if seen is None else f"beat {seen}")
        reason = (
            f"Redis holds {found} where this scheduler wrote beat {nxt - 1}: it lost recent writes (a restart "
            "from an older snapshot or a failover to a replica); chunks in flight are re-run at once"
        )
        log.warning("workload %s: %s", ctx.id, reason)
        return reason
