"""Ride out storage outages: retry transient failures instead of losing or failing work.

Wraps any ``BlobStore``; a ``StorageUnavailableError`` (disk full, directory gone, network
blip, Azure 5xx) is retried with exponential backoff and jitter for up to ``budget`` seconds,
so a workload visibly stalls during an outage and continues when storage returns. Permanent
errors (not found, refused, bad name) pass straight through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import StorageUnavailableError
from ._blob import BlobStore

__all__ = ["DEFAULT_STORAGE_RETRY_SECONDS", "RetryingBlobStore"]

log = logging.getLogger("rqp.storage")
DEFAULT_STORAGE_RETRY_SECONDS = 300.0


@functools.cache
def _tenacity() -> tuple[Any, Any, Any, Any]:
    """tenacity's pieces, imported on the first retried call: the ``rqp`` commands never retry
    (``Backends(retry_storage=False)``), and tenacity's import (~10 ms, tornado's included) was
    on every one's start -- ``rqp submit``'s is on the clock of a workload's start."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential  # noqa: PLC0415

    return Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential(multiplier=0.2, max=5.0)


class RetryingBlobStore(BlobStore):
    def __init__(self, inner: BlobStore, budget: float = DEFAULT_STORAGE_RETRY_SECONDS) -> None:
        self.inner = inner
        self.budget = budget
        self.location = inner.location
        self.read_chunk = inner.read_chunk  # the wrapped store's, whichever it is
        self.remote = inner.remote

    def _call(self, op: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def before_sleep(state: Any) -> None:
            log.warning(
                "blob store %s unavailable during %s %s (%s); retrying",
                self.location,
                op,
                name,
                state.outcome.exception(),
            )

        Retrying, retry_if_exception_type, stop_after_delay, wait = _tenacity()
        retrying = Retrying(
            retry=retry_if_exception_type(StorageUnavailableError),
            stop=stop_after_delay(self.budget),
            wait=wait,
            reraise=True,
            before_sleep=before_sleep,
        )
        return retrying(fn, *args, **kwargs)

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        self._call("put", name, self.inner.put, name, data, overwrite=overwrite)

    def put_stream(self, name: str, chunks: Iterable[bytes], *, overwrite: bool = True) -> int:
        # a stream can be consumed once; retrying it whole is only safe for re-iterable input
        if isinstance(chunks, (list, tuple)):
            return self._call("put", name, self.inner.put_stream, name, chunks, overwrite=overwrite)
        return self.inner.put_stream(name, chunks, overwrite=overwrite)

    def get(self, name: str) -> bytes:
        return self._call("get", name, self.inner.get, name)

    def iter_chunks(self, name: str, chunk_size: int | None = None) -> Iterator[bytes]:
        return self._call("open", name, self.inner.iter_chunks, name, chunk_size)

    def exists(self, name: str) -> bool:
        return self._call("stat", name, self.inner.exists, name)

    def size(self, name: str) -> int:
        return self._call("stat", name, self.inner.size, name)

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(self._call("list", prefix, lambda: list(self.inner.list(prefix))))

    def move(self, src: str, dst: str) -> None:
        self._call("move", src, self.inner.move, src, dst)

    def delete(self, name: str) -> None:
        self._call("delete", name, self.inner.delete, name)

    def delete_many(self, names: Iterable[str]) -> int:
        batch = list(names)  # re-iterable, so a retry deletes the same names again (absent is fine)
        return self._call("delete", batch[0] if batch else "", self.inner.delete_many, batch)

    def prefetch(self, names: Iterable[str]) -> None:
        self.inner.prefetch(names)

    def close(self) -> None:
        self.inner.close()
