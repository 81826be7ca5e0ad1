"""What a worker process needs per workload, loaded once and kept in memory.

Opening a workload unwraps its data key (an RSA or Key Vault operation) and decrypts and
imports its script; doing that per chunk would dominate small chunks, so contexts are cached
(a few, least recently used first out).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rqp.keys import KeyProvider
from rqp.script import Script, load_script
from rqp.storage import BlobStore
from rqp.workload import Workload

__all__ = ["WorkloadContext", "ContextCache", "MAX_CONTEXTS"]

MAX_CONTEXTS = 8


@dataclass
class WorkloadContext:
    workload: Workload
    script: Script


class ContextCache:
    def __init__(self, store: BlobStore, keys: KeyProvider, size: int = MAX_CONTEXTS) -> None:
        self.store = store
        self.keys = keys
        self.size = size
        self._cache: OrderedDict[str, WorkloadContext] = OrderedDict()

    def get(self, workload_id: str) -> WorkloadContext:
        ctx = self._cache.get(workload_id)
        if ctx is not None:
            self._cache.move_to_end(workload_id)
            return ctx
        workload = Workload.open(self.store, self.keys, workload_id)
        script = load_script(workload.script_source(), workload_id)
        ctx = WorkloadContext(workload, script)
        self._cache[workload_id] = ctx
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return ctx

    def workload(self, workload_id: str) -> Workload:
        """Just the opened workload (key and manifest), without importing the script."""
        ctx = self._cache.get(workload_id)
        return ctx.workload if ctx else Workload.open(self.store, self.keys, workload_id)
