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
import contextlib
import functools
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from ..errors import BlobNotFoundError, StorageError
from ..storage._blob import DEFAULT_READ_CHUNK, BlobStore
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

__all__ = ["DEFAULT_BLOCK_SIZE", "MAX_BLOCKS", "AzureBlobStore"]

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


class AzureBlobStore(BlobStore):
    """Blobs in one container. Every call has connect/read timeouts and the shared retry policy."""

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
        return self._container.get_blob_client(_check_name(name))

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
        """Stage ``chunks`` as blocks of ``block_size`` and commit them in one request.

        Memory stays at about one block plus one chunk, whatever the total size. Block ids carry a
        random per-upload prefix, so two writers streaming to the same name never mix blocks.
        """
        blob = self._blob(name)
        if not overwrite and self.exists(name):
            raise self._exists_error(name)  # fail before uploading gigabytes; the commit re-checks
        upload = uuid.uuid4().hex
        block_ids: list[str] = []
        size = 0
        buf = bytearray()

        def stage(piece: bytes | bytearray | memoryview) -> None:
            if len(block_ids) >= MAX_BLOCKS:
                raise StorageError(
                    f"blob {name} in {self.location} needs more than {MAX_BLOCKS} blocks of {self._block_size} bytes; "
                    f"use a larger block_size"
                )
            block_id = base64.b64encode(f"{upload}-{len(block_ids):08d}".encode()).decode()
            data = bytes(piece)
            self._call(lambda: blob.stage_block(block_id, data, length=len(data)), name)
            block_ids.append(block_id)

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
        blob = self._blob(name)
        return self._call(lambda: blob.download_blob().readall(), name)

    def iter_chunks(self, name: str, chunk_size: int = DEFAULT_READ_CHUNK) -> Iterator[bytes]:
        """Ranged reads of ``chunk_size`` bytes, each retried on its own.

        Every range is read under If-Match on the ETag seen first, so a blob replaced mid-read
        raises instead of yielding a splice of two versions. A missing blob raises here, at call
        time, not at the first ``next()``.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        blob = self._blob(name)
        props = self._call(blob.get_blob_properties, name)
        total, etag = props.size, props.etag

        def read(offset: int) -> bytes:
            return blob.download_blob(
                offset, min(chunk_size, total - offset), etag=etag, match_condition=MatchConditions.IfNotModified
            ).readall()

        def gen() -> Iterator[bytes]:
            for offset in range(0, total, chunk_size):
                try:
                    yield self._call(functools.partial(read, offset), name, expect=(ResourceModifiedError,))
                except ResourceModifiedError:
                    raise StorageError(
                        f"blob {name} in {self.location} was replaced while being read; read it again"
                    ) from None

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
        with contextlib.suppress(BlobNotFoundError):  # absent is not an error
            self._call(lambda: blob.delete_blob(delete_snapshots="include"), name)

    def close(self) -> None:
        self._container.close()
        for cred in self._target.owned:
            cred.close()
