"""What a worker process needs per workload, loaded once and kept in memory.

Opening a workload checks its submitter's signature, unwraps its data key (an RSA or Key Vault
operation), checks the start pin the scheduler left in Redis and decrypts its script; doing that
per chunk would dominate small chunks, so contexts are cached (a few, least recently used first
out). The script itself never runs in this process: its source goes to the workload's script
host (``rqp.sandbox``), which has none of this.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rqp.keys import KeyProvider
from rqp.signing import TrustStore
from rqp.storage import BlobStore
from rqp.workload import Workload

__all__ = ["MAX_CONTEXTS", "ContextCache", "WorkloadContext"]

MAX_CONTEXTS = 8


@dataclass
class WorkloadContext:
    workload: Workload
    #: the decrypted script, for the script host (loaded on first use)
    _source: bytes | None = None
    #: the workload's start pin in Redis matched (checked once, before its first chunk runs)
    pinned: bool = False

    def source(self) -> bytes:
        if self._source is None:
            self._source = self.workload.script_source()
        return self._source


class ContextCache:
    def __init__(
        self,
        store: BlobStore,
        keys: KeyProvider,
        trust: TrustStore,
        read_pin: Callable[[str], bytes | None],
        size: int = MAX_CONTEXTS,
    ) -> None:
        self.store = store
        self.keys = keys
        self.trust = trust
        self.read_pin = read_pin
        self.size = size
        self._cache: OrderedDict[str, WorkloadContext] = OrderedDict()

    def get(self, workload_id: str) -> WorkloadContext:
        """The workload's context, signature checked and key unwrapped; ``IntegrityError`` when
        it is unsigned, untrusted or altered."""
        ctx = self._cache.get(workload_id)
        if ctx is not None:
            self._cache.move_to_end(workload_id)
            return ctx
        workload = Workload.open(self.store, self.keys, workload_id, self.trust)
        ctx = WorkloadContext(workload)
        self._cache[workload_id] = ctx
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return ctx

    def check_pin(self, ctx: WorkloadContext) -> None:
        """``IntegrityError`` unless this is the workload its scheduler started (once per context)."""
        if not ctx.pinned:
            ctx.workload.check_pin(self.read_pin(ctx.workload.id))
            ctx.pinned = True
