"""The blob-store interface. Everything above it speaks names ("workloads/W/data.enc"), never paths,
so the same roles run on a directory, Azure Blob Storage, or anything else that can hold bytes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_READ_CHUNK", "BlobStore"]

DEFAULT_READ_CHUNK = 4 << 20


class BlobStore(ABC):
    """Named immutable-ish blobs. Writes are atomic: a reader sees the old blob or the whole new one."""

    #: shown in errors and logs; never contains a secret
    location: str
    #: the piece size ``iter_chunks`` reads when its caller names none: what suits this store
    #: (Azure: larger, as each piece is a request to another service)
    read_chunk: int = DEFAULT_READ_CHUNK
    #: each read is a round trip to another service (Azure: milliseconds of latency), so a
    #: reader that needs several independent blobs at once (``Workload.open``: the manifest and
    #: the wrapped key) reads them in parallel; a local store reads them one after the other
    remote: bool = False

    @abstractmethod
    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        """Store ``data``. With ``overwrite=False`` raise ``StorageError`` if the blob exists."""

    @abstractmethod
    def put_stream(self, name: str, chunks: Iterable[bytes], *, overwrite: bool = True) -> int:
        """Store the concatenation of ``chunks`` without holding it all in memory; returns its size."""

    @abstractmethod
    def get(self, name: str) -> bytes:
        """The whole blob; raises ``BlobNotFoundError`` naming it when absent."""

    @abstractmethod
    def iter_chunks(self, name: str, chunk_size: int | None = None) -> Iterator[bytes]:
        """The blob in pieces of ``chunk_size`` bytes (``None``: the store's ``read_chunk``), for
        blobs larger than memory."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def size(self, name: str) -> int: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Names under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a blob; absent is not an error."""

    def move(self, src: str, dst: str) -> None:
        """Put blob ``src`` under the name ``dst`` (replacing it) and remove ``src``: how a writer
        stages blobs under temporary names and swaps them in only once they are known good. A
        reader of ``dst`` sees the old blob or the whole new one. This default copies (streaming,
        so the final name is written last) then deletes; a store that can rename overrides it."""
        self.put_stream(dst, self.iter_chunks(src))
        self.delete(src)

    def delete_many(self, names: Iterable[str]) -> int:
        """Remove every blob named (absent ones are not an error); returns how many were named.
        This default deletes one at a time; a store with a batch request (Azure's Blob Batch:
        up to 256 deletes in one round trip) overrides it."""
        n = 0
        for name in names:
            self.delete(name)
            n += 1
        return n

    def delete_prefix(self, prefix: str) -> int:
        return self.delete_many(list(self.list(prefix)))

    def prefetch(self, names: Iterable[str]) -> None:  # noqa: B027 - a hint: doing nothing is correct
        """A hint: ``get`` will be called for ``names``, in this order, soon (consolidation reading
        every part of a round). A store where each read is a network round trip starts a few of
        them ahead, in parallel, so the caller's CPU work overlaps the waits; a local store needs
        nothing. A name read in another order, or never, is still served correctly: ``get`` of a
        name not prefetched reads it as usual. Only for blobs that do not change while prefetched
        (parts: written once under a unique name), as the bytes are those of the moment of the read."""

    def close(self) -> None:  # noqa: B027 - optional: a backend with nothing to release keeps this
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"
