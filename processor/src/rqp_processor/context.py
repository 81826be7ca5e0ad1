"""What a worker process needs per workload, loaded once and kept in memory.

Opening a workload checks its submitter's signature, unwraps its data key (an RSA or Key Vault
operation), checks the start pin the scheduler left in Redis and decrypts its script; doing that
per chunk would dominate small chunks, so contexts are cached. The script itself never runs in
this process: its source goes to the workload's script host (``rqp.sandbox``), which has none
of this.

Unwrapping is also what a Redis writer can make a worker do for free, by queueing jobs that
name workloads: so a worker unwraps each workload's key once (keys stay cached for
``MAX_CONTEXTS`` workloads; only the decrypted scripts are limited to ``MAX_SOURCES``), a
workload that failed to open is refused from memory for ``FAILED_OPEN_SECONDS``, and failed
opens as a whole are rate limited (``FailedOpenLimiter``): a flood of jobs naming workloads that
do not open costs a bounded number of unwraps -- and of Key Vault calls -- per worker and minute.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rqp.errors import IntegrityError, RqpError, WorkloadError, WrongKeyError
from rqp.keys import KeyProvider
from rqp.signing import TrustStore
from rqp.storage import BlobStore
from rqp.workload import Workload

__all__ = [
    "FAILED_OPENS_PER_MINUTE",
    "FAILED_OPEN_BURST",
    "FAILED_OPEN_SECONDS",
    "MAX_CONTEXTS",
    "MAX_SOURCES",
    "ContextCache",
    "FailedOpenLimiter",
    "WorkloadContext",
]

#: workloads whose unwrapped key a worker keeps (a few hundred bytes each)
MAX_CONTEXTS = 256
#: workloads whose decrypted script a worker keeps
MAX_SOURCES = 8
#: how long a workload that failed to open is refused without trying again
FAILED_OPEN_SECONDS = 60.0
#: failed opens a worker allows itself at once, and then per minute
FAILED_OPEN_BURST = 10
FAILED_OPENS_PER_MINUTE = 12

#: failures that opening again soon would only repeat
_LASTING = (IntegrityError, WorkloadError, WrongKeyError)


@dataclass
class WorkloadContext:
    workload: Workload
    #: the decrypted script, for the script host (loaded on first use)
    _source: bytes | None = None
    #: the workload's start pin in Redis matched (checked once, before its first chunk runs)
    pinned: bool = False
    #: the pin as it was when it matched: a different one later means the id was re-packed
    pin_raw: bytes | None = None

    def source(self) -> bytes:
        if self._source is None:
            self._source = self.workload.script_source()
        return self._source


class FailedOpenLimiter:
    """A token bucket over failed opens: each costs a token; with none left, the next open of a
    workload not in memory waits for one. ``clock`` and ``sleep`` are the process's own by
    default (tests pass theirs to see the waits without spending them)."""

    def __init__(
        self,
        burst: int = FAILED_OPEN_BURST,
        per_minute: float = FAILED_OPENS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self.sleep = sleep
        self.tokens = float(burst)
        self.at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait(self) -> None:
        """Before an open that may fail: wait until a failure could be paid for."""
        self._refill()
        if self.tokens < 1.0:
            self.sleep((1.0 - self.tokens) / self.rate)
            self._refill()

    def failed(self) -> None:
        self._refill()
        self.tokens = max(0.0, self.tokens - 1.0)


class ContextCache:
    def __init__(
        self,
        store: BlobStore,
        keys: KeyProvider,
        trust: TrustStore,
        read_pin: Callable[[str], bytes | None],
        size: int = MAX_CONTEXTS,
        limiter: FailedOpenLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys = keys
        self.trust = trust
        self.read_pin = read_pin
        self.size = size
        self.limiter = limiter or FailedOpenLimiter()
        self.clock = clock
        self._cache: OrderedDict[str, WorkloadContext] = OrderedDict()
        #: workload id -> (refused until, the error it failed with)
        self._failed: OrderedDict[str, tuple[float, RqpError]] = OrderedDict()

    def get(self, workload_id: str) -> WorkloadContext:
        """The workload's context, signature checked and key unwrapped; ``IntegrityError`` when
        it is unsigned, untrusted or altered (the same error, from memory, for a while after)."""
        ctx = self._cache.get(workload_id)
        if ctx is not None:
            self._cache.move_to_end(workload_id)
            return ctx
        failed = self._failed.get(workload_id)
        if failed is not None:
            if failed[0] > self.clock():
                raise failed[1]
            del self._failed[workload_id]
        self.limiter.wait()
        try:
            workload = Workload.open(self.store, self.keys, workload_id, self.trust)
        except RqpError as exc:
            self.limiter.failed()
            if isinstance(exc, _LASTING):  # not an outage of the blob store or the key service
                self._failed[workload_id] = (self.clock() + FAILED_OPEN_SECONDS, exc)
                while len(self._failed) > self.size:
                    self._failed.popitem(last=False)
            raise
        ctx = WorkloadContext(workload)
        self._cache[workload_id] = ctx
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        for older in list(self._cache.values())[:-MAX_SOURCES]:
            older._source = None  # scripts are re-read (not re-unwrapped) when needed again
        return ctx

    def check_pin(self, ctx: WorkloadContext) -> None:
        """``IntegrityError`` unless this is the workload its scheduler started (once per context)."""
        if not ctx.pinned:
            raw = self.read_pin(ctx.workload.id)
            ctx.workload.check_pin(raw)
            ctx.pinned, ctx.pin_raw = True, raw

    def replaced(self, ctx: WorkloadContext) -> WorkloadContext | None:
        """The workload opened again when its id now names another version (deleted and packed
        anew, or re-packed with ``--replace``), which a job sealed under the new data key shows;
        None when it is the same one. Costs one Redis read, and an open only when the pin moved
        from the one this context matched, or when the manifest blob itself changed -- so jobs
        forged to fail cost no unwrap."""
        wid = ctx.workload.id
        raw = self.read_pin(wid)
        if ctx.pinned:
            if raw is None or raw == ctx.pin_raw:
                return None
        else:
            try:
                current = self.store.get(f"workloads/{wid}/manifest.json")
            except RqpError:
                return None
            if current == ctx.workload.manifest.to_json():
                return None
        self._cache.pop(wid, None)
        return self.get(wid)
