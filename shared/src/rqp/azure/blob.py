"""A ``BlobStore`` on Azure Blob Storage (block blobs).

URL (``RQP_BLOB_URL``)::

    azure-blob://<account>/<container>
        DefaultAzureCredential; endpoint https://<account>.blob.core.windows.net
    azure-blob://<account>/<container>?connection_string_file=/run/secrets/storage-conn
    azure-blob://<account>/<container>?sas_file=/run/secrets/storage-sas
    azure-blob://devstoreaccount1/<container>?connection_string_file=F&endpoint=http://127.0.0.1:10000/devstoreaccount1

(see ``rqp.azure._common`` for every option). The container must exist: a missing one is a
configuration mistake reported as such, not something to paper over by creating it; setup code
can call ``create_container()``.

Atomicity, as ``BlobStore`` promises: a single-shot upload replaces the blob whole, and a
streamed upload stages blocks that stay invisible until one ``Put Block List`` commits them, so
a reader sees the old blob or the whole new one, and a crash mid-upload leaves only uncommitted
blocks, which Azure discards after a week.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from ..errors import BlobNotFoundError, StorageError
from ..storage._blob import BlobStore
from ..storage.local import _check_name  # one naming rule for every backend
from ._common import (
    CONNECTION_TIMEOUT,
    DEFAULT_RETRY,
    READ_TIMEOUT,
    RetryPolicy,
    StorageTarget,
    error_code,
    open_service_client,
    storage_error,
)

__all__ = [
    "BATCH_DELETE_MAX",
    "BLOB_CLIENT_CACHE",
    "DEFAULT_BLOCK_SIZE",
    "IO_THREADS",
    "MAX_BLOCKS",
    "PREFETCH_BLOBS",
    "READ_RANGE",
    "AzureBlobStore",
]

T = TypeVar("T")

#: bytes per staged block, and the largest blob sent in one request. 4 MiB keeps memory small
#: and a retried block cheap, and still allows 4 MiB x 50,000 blocks = 195 GiB per blob.
DEFAULT_BLOCK_SIZE = 4 << 20
#: Azure's limit of committed blocks per blob
MAX_BLOCKS = 50_000
SCHEMES = ("azure-blob", "azblob")
#: what a conditional create meets when the blob exists (409 BlobAlreadyExists, or 412)
_CONFLICT = (ResourceExistsError, ResourceModifiedError)
ROLE = "the 'Storage Blob Data Contributor' role on the container"
#: blob clients kept per store (one per name): building one costs ~10 % of a request's CPU
BLOB_CLIENT_CACHE = 1024
#: threads for reads ahead (the next range of ``iter_chunks``, blobs ``prefetch`` names); with the
#: caller's own, below the SDK's connection pool of 10, so no request waits for a connection
IO_THREADS = 8
#: blobs ``prefetch`` keeps read ahead of the caller: the memory of this many parts at most.
#: 8 rather than 4: consolidation's wall time on Azurite 0.40 s instead of 0.45 s (median of 6
#: interleaved runs each, 40,000 records in 22 parts; its CPU the same)
PREFETCH_BLOBS = 8
#: deletes per Blob Batch request (Azure's limit)
BATCH_DELETE_MAX = 256
#: bytes per ranged read of ``iter_chunks`` when the caller names no size (the data at enqueue,
#: the results object): 8 MiB, twice ``DEFAULT_READ_CHUNK``, halves the requests of reading a
#: large blob (40 MiB: 5 instead of 10, each a round trip and ~1.3 ms of client CPU plus the
#: bytes), and still well under the SDK's single-request limit (32 MiB). Azurite also spends
#: ~3x the CPU on a range of 4 MiB or less (measured: 16-23 ms vs 5-7 ms per request; the
#: benchmark's emulator shares the processors' cores, Azure's servers do not). Memory: the piece
#: in hand and the one read ahead, 16 MiB.
READ_RANGE = 8 << 20


class AzureBlobStore(BlobStore):
    """Blobs in one container. Every call has connect/read timeouts and the shared retry policy."""

    read_chunk = READ_RANGE
    remote = True

    def __init__(
        self,
        container: ContainerClient,
        target: StorageTarget,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self._container = container
        self._target = target
        self._retry = retry
        self._block_size = block_size
        self.container_name = container.container_name
        self.account = target.account
        self.location = target.location("blob", self.container_name)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        #: name -> its read started by ``prefetch``, in the order ``get`` will ask
        self._ahead: collections.OrderedDict[str, Future[bytes]] = collections.OrderedDict()
        self._pending: list[str] = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        block_size: int = DEFAULT_BLOCK_SIZE,
        connection_timeout: float = CONNECTION_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        credential: Any = None,
    ) -> AzureBlobStore:
        """The store an ``azure-blob://`` URL names; no network call is made here."""
        service, target, container = open_service_client(
            BlobServiceClient,
            url,
            schemes=SCHEMES,
            service="blob",
            needs_resource=True,
            role=ROLE,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            credential=credential,
        )
        assert container is not None  # needs_resource: the parser refused a URL without one
        return cls(service.get_container_client(container), target, retry=retry, block_size=block_size)

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[[], T], name: str | None = None, *, expect: tuple[type[BaseException], ...] = ()) -> T:
        """Run one SDK call under the retry policy and translate its failure; exceptions listed in
        ``expect`` reach the caller untranslated, for the cases it handles itself."""
        what = f"blob {name} in container {self.container_name}" if name else f"container {self.container_name}"
        try:
            return self._retry.call(fn, what)
        except expect:
            raise
        except Exception as exc:  # noqa: BLE001 - any SDK failure becomes one StorageError line
            raise self._error(exc, name) from None

    def _error(self, exc: BaseException, name: str | None) -> StorageError:
        code = error_code(exc)
        if code == "ContainerNotFound":
            return StorageError(
                f"container {self.container_name} does not exist in storage account {self.account} ({self._target.endpoint}); "
                f"create it (az storage container create -n {self.container_name} --account-name {self.account}) or fix RQP_BLOB_URL"
            )
        if code == "BlobNotFound" and name is not None:
            return BlobNotFoundError(
                f"blob {name} not found in {self.location}; check the workload id and RQP_BLOB_URL"
            )
        what = f"blob {name} in container {self.container_name}" if name else f"container {self.container_name}"
        return storage_error(exc, what=what, target=self._target)

    def _exists_error(self, name: str) -> StorageError:
        return StorageError(f"blob {name} already exists in {self.location}; choose another workload id or delete it")

    def _blob(self, name: str) -> Any:
        """The blob's client, built once per name: it shares the container's pipeline (one
        connection pool, one credential), so caching it only saves building the object."""
        client = self._clients.get(name)
        if client is None:
            client = self._container.get_blob_client(_check_name(name))
            if len(self._clients) >= BLOB_CLIENT_CACHE:
                self._clients.clear()
            self._clients[name] = client
        return client

    def _pool(self) -> ThreadPoolExecutor:
        """The read-ahead/upload threads, started on first use; a forked child (a worker process
        started after its parent used the store) gets its own, as the parent's threads do not
        exist there and a task given to them would wait forever."""
        with self._lock:
            if self._executor is None or self._executor_pid != os.getpid():
                self._executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="rqp-azblob")
                self._executor_pid = os.getpid()
                self._ahead.clear()
            return self._executor

    # ------------------------------------------------------------------ writes

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        if len(data) > self._block_size:
            bs = self._block_size
            self.put_stream(name, (data[i : i + bs] for i in range(0, len(data), bs)), overwrite=overwrite)
            return
        blob = self._blob(name)
        # If-None-Match: * makes "create only" one atomic request: two packers racing for the same
        # name cannot both win (checking exists() first would let them)
        cond = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
        try:
            self._call(lambda: blob.upload_blob(data, overwrite=True, **cond), name, expect=_CONFLICT)
        except _CONFLICT:
            raise self._exists_error(name) from None

    def put_stream(self, name: str, chunks: Iterable[bytes], *, overwrite: bool = True) -> int:
        """Stage ``chunks`` as blocks of ``block_size`` and commit them in one request; a stream
        that fits in one block is sent in one request instead.

        Up to ``IO_THREADS`` blocks are in flight while the caller produces the next (its CPU work
        overlaps the uploads), so memory stays at about ``IO_THREADS + 1`` blocks plus one chunk,
        whatever the total size. Block ids carry a random per-upload prefix, so two writers
        streaming to the same name never mix blocks; nothing is visible before the commit.
        """
        blob = self._blob(name)
        chunks = iter(chunks)
        head = bytearray()
        for chunk in chunks:
            head += chunk
            if len(head) >= self._block_size:
                break
        else:
            # the whole stream fits in one block: one Put Blob instead of Put Block + Put Block
            # List (and, for a create, no existence check first: If-None-Match decides)
            self.put(name, bytes(head), overwrite=overwrite)
            return len(head)
        if not overwrite and self.exists(name):
            raise self._exists_error(name)  # fail before uploading gigabytes; the commit re-checks
        chunks = _chain(bytes(head), chunks)
        upload = uuid.uuid4().hex
        block_ids: list[str] = []
        size = 0
        buf = bytearray()
        in_flight: collections.deque[Future[None]] = collections.deque()
        pool = self._pool()

        def put_block(block_id: str, data: bytes) -> None:
            self._call(lambda: blob.stage_block(block_id, data, length=len(data)), name)

        def stage(piece: bytes | bytearray | memoryview) -> None:
            if len(block_ids) >= MAX_BLOCKS:
                raise StorageError(
                    f"blob {name} in {self.location} needs more than {MAX_BLOCKS} blocks of {self._block_size} bytes; "
                    f"use a larger block_size"
                )
            block_id = base64.b64encode(f"{upload}-{len(block_ids):08d}".encode()).decode()
            while len(in_flight) >= IO_THREADS:
                in_flight.popleft().result()  # a failed block fails the upload here
            in_flight.append(pool.submit(put_block, block_id, bytes(piece)))
            block_ids.append(block_id)

        try:
            for chunk in chunks:
                size += len(chunk)
                buf += chunk
                if len(buf) >= self._block_size:
                    view = memoryview(buf)
                    start = 0
                    while len(buf) - start >= self._block_size:
                        stage(view[start : start + self._block_size])
                        start += self._block_size
                    view.release()
                    del buf[:start]
            if buf:
                stage(buf)
            while in_flight:
                in_flight.popleft().result()
        finally:
            for future in in_flight:  # the upload failed: no commit, the staged blocks expire
                future.cancel()
        blocks = [BlobBlock(block_id=b) for b in block_ids]
        cond = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
        try:
            self._call(lambda: blob.commit_block_list(blocks, **cond), name, expect=_CONFLICT)
        except _CONFLICT:
            raise self._exists_error(name) from None
        return size

    def create_container(self) -> bool:
        """Create the container for setup and tests; ``False`` if it already existed."""
        try:
            self._call(self._container.create_container, expect=(ResourceExistsError,))
        except ResourceExistsError:
            return False
        return True

    # ------------------------------------------------------------------ reads

    def get(self, name: str) -> bytes:
        ahead = self._take_prefetched(name)
        if ahead is not None:
            try:
                return ahead.result()
            except (StorageError, ResourceModifiedError):
                pass  # read it again below, so the error is this call's (and retried as one)
        return self._read_whole(name)

    def _read_whole(self, name: str) -> bytes:
        blob = self._blob(name)
        return self._call(lambda: blob.download_blob().readall(), name)

    def prefetch(self, names: Iterable[str]) -> None:
        """Read up to ``PREFETCH_BLOBS`` of ``names`` ahead, in parallel (see ``BlobStore``);
        each ``get`` of one starts the next. A new hint replaces the previous one."""
        with self._lock:
            self._ahead.clear()
            self._pending = list(reversed(list(names)))
        self._top_up()

    def _take_prefetched(self, name: str) -> Future[bytes] | None:
        if not self._ahead:
            return None
        with self._lock:
            future = self._ahead.pop(name, None)
        if future is not None:
            self._top_up()
        return future

    def _top_up(self) -> None:
        pool = self._pool()
        with self._lock:
            while self._pending and len(self._ahead) < PREFETCH_BLOBS:
                name = self._pending.pop()
                self._ahead[name] = pool.submit(self._read_whole, name)

    def iter_chunks(self, name: str, chunk_size: int | None = None) -> Iterator[bytes]:
        """Ranged reads of ``chunk_size`` bytes (``None``: ``READ_RANGE``), each retried on its own.

        Every range is read under If-Match on the ETag seen first, so a blob replaced mid-read
        raises instead of yielding a splice of two versions. A missing blob raises here, at call
        time, not at the first ``next()``.
        """
        chunk_size = self.read_chunk if chunk_size is None else chunk_size
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        blob = self._blob(name)

        # the first range tells the size and the ETag (no properties request first); an empty
        # blob has no range to read (HTTP 416), and is then read whole: zero bytes
        def opening(*window: int) -> tuple[int, str, bytes]:
            reply = blob.download_blob(*window)
            whole = reply.properties.content_range  # "bytes 0-4194303/<blob size>"
            return int(whole.rsplit("/", 1)[1]) if whole else reply.size, reply.properties.etag, reply.readall()

        try:
            total, etag, first = self._call(lambda: opening(0, chunk_size), name, expect=(HttpResponseError,))
        except HttpResponseError as exc:
            if error_code(exc) != "InvalidRange":
                raise self._error(exc, name) from None
            total, etag, first = self._call(opening, name)

        def read(offset: int) -> bytes:
            try:
                return self._call(
                    lambda: blob.download_blob(
                        offset,
                        min(chunk_size, total - offset),
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    ).readall(),
                    name,
                    expect=(ResourceModifiedError,),
                )
            except ResourceModifiedError:
                raise StorageError(
                    f"blob {name} in {self.location} was replaced while being read; read it again"
                ) from None

        def gen() -> Iterator[bytes]:
            # the next range is read while the caller works on this one (one range ahead: the
            # memory of two chunks); each is still read under If-Match on the first range's ETag
            offsets = range(len(first), total, chunk_size)
            ahead = self._pool().submit(read, offsets[0]) if offsets else None
            if first:
                yield first
            for k in range(len(offsets)):
                assert ahead is not None
                piece = ahead.result()
                ahead = self._pool().submit(read, offsets[k + 1]) if k + 1 < len(offsets) else None
                yield piece

        return gen()

    def exists(self, name: str) -> bool:
        blob = self._blob(name)
        try:
            self._call(blob.get_blob_properties, name)
        except BlobNotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        blob = self._blob(name)
        return int(self._call(blob.get_blob_properties, name).size)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Committed blobs only (a streamed upload in progress is invisible), sorted."""
        names = self._call(lambda: sorted(self._container.list_blob_names(name_starts_with=prefix or None)))
        return iter(names)

    def delete(self, name: str) -> None:
        blob = self._blob(name)
        self._clients.pop(name, None)
        with contextlib.suppress(BlobNotFoundError):  # absent is not an error
            self._call(lambda: blob.delete_blob(delete_snapshots="include"), name)

    def delete_many(self, names: Iterable[str]) -> int:
        """Blob Batch: up to ``BATCH_DELETE_MAX`` deletes per request (a round's parts in one
        round trip instead of one each). A sub-request that finds its blob gone is fine; any
        other refusal is retried as a single delete, which reports it in the usual words."""
        todo = [_check_name(n) for n in names]
        for start in range(0, len(todo), BATCH_DELETE_MAX):
            batch = todo[start : start + BATCH_DELETE_MAX]
            for n in batch:
                self._clients.pop(n, None)
            if len(batch) == 1:
                self.delete(batch[0])
                continue
            try:
                replies: Sequence[Any] = self._call(
                    functools.partial(self._delete_batch, batch), batch[0], expect=(HttpResponseError,)
                )
            except HttpResponseError:
                replies = []  # the batch itself refused (a SAS without batch rights): one by one
            for n, reply in itertools.zip_longest(batch, replies):
                if n is not None and (reply is None or reply.status_code not in (200, 202, 404)):
                    self.delete(n)
        return len(todo)

    def _delete_batch(self, batch: Sequence[str]) -> Sequence[Any]:
        return list(self._container.delete_blobs(*batch, delete_snapshots="include", raise_on_any_failure=False))

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
            self._ahead.clear()
            self._pending = []
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._container.close()
        for cred in self._target.owned:
            cred.close()


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
