"""``rqp.AsyncClient``: the client for code that already runs an event loop.

It is deliberately thin: every call runs the synchronous ``Client``'s in a worker thread
(``asyncio.to_thread``), so the loop never blocks on Redis, the blob store or encryption, and
there is one implementation of each operation. Calls on one ``AsyncClient`` are serialised by a
lock (a ``Client`` is not shared between threads at once); make one per concurrent task that
needs its own throughput. ``stream`` and ``results`` iterate over a ``Client`` of their own, so
the body of an ``async for`` may await the other calls."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from ..config import Settings
from ..verification import Report
from ._client import Client
from ._handle import Workload
from ._status import WorkloadStatus

__all__ = ["AsyncClient", "AsyncWorkload"]

T = TypeVar("T")
_DONE = object()


class AsyncClient:
    """``Client``'s operations as coroutines (same arguments, same errors)."""

    def __init__(
        self, config: str | os.PathLike[str] | None = None, *, settings: Settings | None = None, **overrides: Any
    ) -> None:
        self.sync = Client(config, settings=settings, **overrides)
        self._lock = asyncio.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def submit(self, data: Any, script: str | os.PathLike[str] | bytes, **kwargs: Any) -> AsyncWorkload:
        return AsyncWorkload(self, await self._run(self.sync.submit, data, script, **kwargs))

    async def workload(self, workload_id: str) -> AsyncWorkload:
        return AsyncWorkload(self, await self._run(self.sync.workload, workload_id))

    async def workloads(self) -> list[AsyncWorkload]:
        return [AsyncWorkload(self, w) for w in await self._run(self.sync.workloads)]

    async def close(self) -> None:
        await self._run(self.sync.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncWorkload:
    """``rqp.Workload``'s methods as coroutines; ``stream`` and ``results`` as async iterators."""

    def __init__(self, client: AsyncClient, handle: Workload) -> None:
        self.client = client
        self.sync = handle
        self.id = handle.id

    def __repr__(self) -> str:
        return f"rqp.AsyncWorkload({self.id!r})"

    async def status(self) -> WorkloadStatus:
        return await self.client._run(self.sync.status)

    async def wait(self, timeout: float | None = None, progress: bool = False) -> WorkloadStatus:
        """As ``Workload.wait`` (no bar unless asked: a service has no terminal)."""
        return await self.client._run(self.sync.wait, timeout, progress)

    async def failures(self) -> list[Any]:
        return await self.client._run(self.sync.failures)

    async def to_pandas(self) -> Any:
        return await self.client._run(self.sync.to_pandas)

    async def verify_streamed(self, results: Iterable[Mapping[str, Any]], signer: str | None = None) -> Report:
        """As ``Workload.verify_streamed``: what ``stream()`` yielded, checked against the signed root."""
        return await self.client._run(self.sync.verify_streamed, list(results), signer)

    async def pause(self) -> str:
        return await self.client._run(self.sync.pause)

    async def resume(self) -> str:
        return await self.client._run(self.sync.resume)

    async def cancel(self) -> str:
        return await self.client._run(self.sync.cancel)

    async def retry_failed(self) -> int:
        return await self.client._run(self.sync.retry_failed)

    async def set_priority(self, level: str) -> str:
        return await self.client._run(self.sync.set_priority, level)

    async def delete(self, *, shred: bool = False) -> tuple[int, int]:
        return await self.client._run(self.sync.delete, shred=shred)

    async def results(self) -> AsyncIterator[dict[str, Any]]:
        async for item in self._iterate(lambda w: w.results()):
            yield item

    async def stream(self, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        async for item in self._iterate(lambda w: w.stream(timeout=timeout)):
            yield item

    async def _iterate(self, make: Callable[[Workload], Any]) -> AsyncIterator[dict[str, Any]]:
        """Each ``next`` of the synchronous iterator in a worker thread, over a ``Client`` of its
        own: a long stream holds no lock, so the loop body may await this workload's other
        methods (its status, a cancel) without waiting for the stream to end."""
        own = Client(settings=self.client.sync.settings)
        try:
            iterator = await asyncio.to_thread(make, Workload(own, self.id))
            try:
                while True:
                    item = await asyncio.to_thread(next, iterator, _DONE)
                    if item is _DONE:
                        return
                    yield cast("dict[str, Any]", item)
            finally:
                await asyncio.to_thread(iterator.close)
        finally:
            await asyncio.to_thread(own.close)
