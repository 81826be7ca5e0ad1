"""The operators' control of one workload, as its *signed* requests say.

The scheduler used to obey the plain ``meta.control`` field, which anyone holding the Redis
password could set (a forged cancel finished a workload short with exit 0). Now it folds the
workload's signed requests (``rqp.oplog``: a trusted operator's, or the workload's own
submitter's) and acts on nothing else: pause, resume, cancel and the priority its chunks are
queued at. The shown state in ``meta`` stays what people read; when it disagrees with the
verified state (someone wrote it behind rqp's back), it is put back and the attempt recorded in
``rqp:rejected``.
"""

from __future__ import annotations

import logging

from rqp.ledger import Control, Meta, Priority, State, record_rejection, text
from rqp.oplog import ControlReader, ControlVerifier

from .context import RunContext

__all__ = ["Controls"]

log = logging.getLogger("rqp.scheduler")

#: every state a scheduler writes; any other in ``meta.state`` is a Redis writer's, put back
_KNOWN_STATES = frozenset(s.value for s in State)


class Controls:
    """Reads ``ctx``'s new signed requests each step and says what the run must do."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        b = ctx.backends
        verifier = ControlVerifier(b.operators, b.trust, ctx.workload.signer)
        m = ctx.workload.manifest
        self.reader = ControlReader(ctx.r, ctx.id, verifier, m.created, ctx.me, m.content_digest())
        #: the shown control disagreed with the verified one at the last poll: a request posted
        #: between our read of the list and of ``meta`` looks like that once, a forgery twice
        self._suspect = False

    @property
    def priority(self) -> Priority:
        return self.reader.state.priority or Priority.NORMAL

    def poll(self) -> Control | None:
        """What the verified requests ask of the run now: PAUSE, CANCEL or None (run)."""
        accepted = self.reader.poll()
        for req in accepted:
            log.info("workload %s: %s %s (signed request by %s)", self.ctx.id, req.action, req.arg, req.actor)
        state = self.reader.state
        wanted = Control.CANCEL if state.cancelling else Control.PAUSE if state.paused else None
        if accepted:
            self._suspect = False
            if self.priority is not self.ctx.priority:
                self.ctx.priority = self.priority
                self.ctx.ledger.show_priority(self.priority)
        self._correct_shown(wanted)
        return wanted

    def retry_requested(self, round_: int) -> bool:
        """Whether a verified ``retry`` request asked for round ``round_``."""
        self.reader.poll()
        return round_ in self.reader.state.retry_rounds

    def _correct_shown(self, wanted: Control | None) -> None:
        """Put the shown state back when a Redis writer changed it: the control field, or a state
        no version knows (e.g. ``zzz``, which the client would not take for a running one)."""
        ledger = self.ctx.ledger
        # both fields in one round trip (``ledger.control()`` then an HGET of the state were two,
        # on every step: a step's Redis reads are most of its CPU)
        control, current = (text(v) for v in ledger.r.hmget(ledger.k.meta, [Meta.CONTROL, Meta.STATE]))
        shown = Control(control) if control else None
        made_up = current is not None and current not in _KNOWN_STATES
        if not made_up and (shown is wanted or (wanted is None and shown is Control.RESUME)):
            self._suspect = False
            return
        if not self._suspect:
            self._suspect = True
            return
        self._suspect = False
        state = {None: State.RUNNING, Control.PAUSE: State.PAUSED, Control.CANCEL: State.CANCELLING}[wanted]
        pipe = ledger.r.pipeline(transaction=True)
        if wanted is None:
            pipe.hdel(ledger.k.meta, Meta.CONTROL)
        else:
            pipe.hset(ledger.k.meta, Meta.CONTROL, wanted.value)
        pipe.hset(ledger.k.meta, Meta.STATE, state.value)
        pipe.execute()
        if shown is not None or made_up or current in (State.PAUSED, State.CANCELLING):
            reason = (
                f"workload {self.ctx.id}: control field {shown.value if shown else 'none'!s} (state {current}) was not "
                f"asked for by any signed request; ignored and put back to {state.value}"
            )
            record_rejection(
                ledger.r, job=f"control:{self.ctx.id}", workload=self.ctx.id, worker=self.ctx.me, reason=reason
            )
            log.warning("%s", reason)
