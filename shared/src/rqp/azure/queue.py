"""A ``MessageQueue`` on Azure Queue Storage.

URL (``RQP_QUEUE_URL``)::

    azure-queue://<account>
        DefaultAzureCredential; endpoint https://<account>.queue.core.windows.net
    azure-queue://<account>?connection_string_file=/run/secrets/storage-conn
    azure-queue://<account>?sas_file=/run/secrets/storage-sas
    azure-queue://devstoreaccount1?connection_string_file=F&endpoint=http://127.0.0.1:10001/devstoreaccount1

(see ``rqp.azure._common`` for every option). Queue names come from the caller (the settings'
``status_queue``/``events_queue``); they must follow Azure's rule (3-63 lowercase letters,
digits, hyphens). A queue is created by the first ``send`` that finds it missing; reading a
missing queue finds nothing.

Encoding: bodies are bytes and Azure stores text, so rqp sends standard base64 (what the SDK's
``BinaryBase64EncodePolicy`` and Azure Functions use). A message is at most 64 KiB *after*
base64, hence ``max_message_bytes`` = 48 KiB; a larger body raises ``StorageError`` before
anything is sent. A received message that is not valid base64 (another producer's plain text)
is delivered as its UTF-8 bytes: deciding whether it is rqp's is the envelope check's job, one
layer up, and a message dropped here could never be inspected.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from ..errors import StorageError
from ..storage._queue import Message, MessageQueue
from ._common import (
    CONNECTION_TIMEOUT,
    DEFAULT_RETRY,
    READ_TIMEOUT,
    RetryPolicy,
    StorageTarget,
    check_resource_name,
    error_code,
    open_service_client,
    storage_error,
)

__all__ = ["AZURE_MAX_MESSAGE_BYTES", "AZURE_MAX_MESSAGE_CHARS", "AzureMessageQueue"]

T = TypeVar("T")

#: Azure Queue Storage's limit on one message as stored (our base64 text)
AZURE_MAX_MESSAGE_CHARS = 64 * 1024
#: the largest body whose base64 fits: 4 characters per 3 bytes
AZURE_MAX_MESSAGE_BYTES = AZURE_MAX_MESSAGE_CHARS // 4 * 3
#: Azure returns at most 32 messages per receive or peek request
AZURE_BATCH_LIMIT = 32
#: visibility timeouts are whole seconds between 1 s and 7 days
MAX_VISIBILITY_TIMEOUT = 7 * 24 * 3600
#: parallel sends in ``send_many``: Azure has no batch send, and one request is ~3 ms of client
#: CPU but tens of ms of network round trip to a real account, so a few threads hide the latency
SEND_CONCURRENCY = 8
#: ``receive(wait=...)`` polls (Azure has no long poll), starting fast and backing off to this
POLL_INITIAL = 0.1
POLL_MAX = 1.0
SCHEMES = ("azure-queue", "azqueue")
ROLE = "the 'Storage Queue Data Contributor' role"


def encode_body(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


def decode_body(content: str | bytes | None) -> bytes:
    """rqp's base64, or a foreign message's text as it is (see the module docstring)."""
    if content is None:
        return b""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw


class AzureMessageQueue(MessageQueue):
    """Queues of one storage account. Delivery is at-least-once and not ordered (Azure's terms)."""

    max_message_bytes = AZURE_MAX_MESSAGE_BYTES
    remote = True

    def __init__(
        self,
        service: QueueServiceClient,
        target: StorageTarget,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        send_concurrency: int = SEND_CONCURRENCY,
    ) -> None:
        self._service = service
        self._target = target
        self._retry = retry
        self._send_concurrency = max(1, send_concurrency)
        self._clients: dict[str, QueueClient] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._lock = threading.Lock()
        self.account = target.account
        self.location = target.location("queue")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        connection_timeout: float = CONNECTION_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        credential: Any = None,
    ) -> AzureMessageQueue:
        """The queues an ``azure-queue://`` URL names; no network call is made here."""
        service, target, _ = open_service_client(
            QueueServiceClient,
            url,
            schemes=SCHEMES,
            service="queue",
            needs_resource=False,
            role=ROLE,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            credential=credential,
        )
        return cls(service, target, retry=retry)

    # ------------------------------------------------------------------ plumbing

    def _client(self, queue: str) -> QueueClient:
        client = self._clients.get(queue)
        if client is None:
            check_resource_name(queue, "queue", "the queue settings")
            # no encode/decode policy: bodies are encoded here, so foreign messages can be tolerated
            client = self._clients[queue] = self._service.get_queue_client(queue)
        return client

    def _call(self, fn: Callable[[], T], queue: str, *, expect: tuple[type[BaseException], ...] = ()) -> T:
        what = f"queue {queue}"
        try:
            return self._retry.call(fn, what)
        except expect:
            raise
        except Exception as exc:  # noqa: BLE001 - any SDK failure becomes one StorageError line
            raise storage_error(exc, what=what, target=self._target) from None

    def _missing(self, exc: BaseException) -> bool:
        return error_code(exc) == "QueueNotFound"

    # ------------------------------------------------------------------ interface

    def _check_size(self, queue: str, body: bytes) -> None:
        if len(body) > self.max_message_bytes:
            raise StorageError(
                f"message of {len(body)} bytes for queue {queue} in storage account {self.account} is over the "
                f"{self.max_message_bytes}-byte limit (64 KiB after base64); put large payloads in the blob store and send a reference"
            )

    def send(self, queue: str, body: bytes) -> str:
        self._check_size(queue, body)
        client = self._client(queue)
        content = encode_body(body)
        try:
            return self._call(lambda: client.send_message(content), queue, expect=(ResourceNotFoundError,)).id
        except ResourceNotFoundError as exc:
            if not self._missing(exc):
                raise storage_error(exc, what=f"queue {queue}", target=self._target) from None
        self.create_queue(queue)
        return self._call(lambda: client.send_message(content), queue).id

    def send_many(self, queue: str, bodies: list[bytes]) -> list[str]:
        """All sizes are checked before anything is sent; ids come back in the order of ``bodies``."""
        for body in bodies:
            self._check_size(queue, body)
        if len(bodies) <= 1 or self._send_concurrency == 1:
            return [self.send(queue, b) for b in bodies]
        with self._lock:
            if self._executor is None or self._executor_pid != os.getpid():  # a forked child: threads of its own
                self._executor = ThreadPoolExecutor(self._send_concurrency, thread_name_prefix="rqp-azq")
                self._executor_pid = os.getpid()
        # the first send creates a missing queue once, not once per thread
        first = self.send(queue, bodies[0])
        try:
            rest = list(self._executor.map(lambda b: self.send(queue, b), bodies[1:]))
        except RuntimeError:  # the interpreter is shutting down (an atexit publish): no new threads
            rest = [self.send(queue, b) for b in bodies[1:]]
        return [first, *rest]

    def create_queue(self, queue: str) -> bool:
        """Create ``queue``; ``False`` if it already existed."""
        client = self._client(queue)
        try:
            self._call(client.create_queue, queue, expect=(ResourceExistsError,))
        except ResourceExistsError:
            return False
        return True

    def receive(
        self, queue: str, max_messages: int = 32, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        vt = min(MAX_VISIBILITY_TIMEOUT, max(1, math.ceil(visibility_timeout)))
        deadline = time.monotonic() + max(0.0, wait)
        delay = POLL_INITIAL
        while True:
            out = self._receive_once(queue, max_messages, vt)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)

    def _receive_once(self, queue: str, max_messages: int, vt: int) -> list[Message]:
        client = self._client(queue)
        out: list[Message] = []
        while len(out) < max_messages:
            k = min(AZURE_BATCH_LIMIT, max_messages - len(out))

            def fetch(k: int = k) -> list[Any]:
                return list(client.receive_messages(messages_per_page=k, max_messages=k, visibility_timeout=vt))

            try:
                batch = self._call(fetch, queue, expect=(ResourceNotFoundError,))
            except ResourceNotFoundError as exc:
                if self._missing(exc):
                    return out
                raise storage_error(exc, what=f"queue {queue}", target=self._target) from None
            out.extend(Message(m.id, decode_body(m.content), m.pop_receipt or "", m.dequeue_count or 1) for m in batch)
            if len(batch) < k:
                break
        return out

    def delete(self, queue: str, message: Message) -> None:
        """Acknowledge. Already gone (a retried delete, a deleted queue) is not an error; a pop
        receipt made stale by a re-delivery is, because that message will be processed again."""
        client = self._client(queue)
        try:
            self._call(lambda: client.delete_message(message.id, message.receipt), queue, expect=(HttpResponseError,))
        except ResourceNotFoundError:
            return  # MessageNotFound or QueueNotFound
        except HttpResponseError as exc:
            if error_code(exc) == "PopReceiptMismatch":
                raise StorageError(
                    f"message {message.id} in queue {queue} (storage account {self.account}) was received again after its "
                    f"visibility timeout expired, so it will be processed again; use a longer visibility_timeout"
                ) from None
            raise storage_error(exc, what=f"queue {queue}", target=self._target) from None

    def peek(self, queue: str, max_messages: int = 32) -> list[Message]:
        """Up to 32 messages (Azure's peek limit) without hiding them; receipts are empty."""
        client = self._client(queue)
        k = max(1, min(AZURE_BATCH_LIMIT, max_messages))
        try:
            batch = self._call(
                lambda: list(client.peek_messages(max_messages=k)), queue, expect=(ResourceNotFoundError,)
            )
        except ResourceNotFoundError as exc:
            if self._missing(exc):
                return []
            raise storage_error(exc, what=f"queue {queue}", target=self._target) from None
        return [Message(m.id, decode_body(m.content), "", m.dequeue_count or 0) for m in batch]

    def length(self, queue: str) -> int:
        """Azure's approximate count: it may lag, and includes messages currently invisible."""
        client = self._client(queue)
        try:
            props = self._call(client.get_queue_properties, queue, expect=(ResourceNotFoundError,))
        except ResourceNotFoundError as exc:
            if self._missing(exc):
                return 0
            raise storage_error(exc, what=f"queue {queue}", target=self._target) from None
        return int(props.approximate_message_count or 0)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._service.close()
        for cred in self._target.owned:
            cred.close()
