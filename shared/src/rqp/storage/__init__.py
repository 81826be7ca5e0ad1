"""Blob stores and message queues, chosen by URL.

``file:///dir`` or a plain path → ``FileBlobStore``; ``azure-blob://...`` → Azure Blob Storage.
``redis`` → Redis Streams on the coordinating Redis; ``azure-queue://...`` → Azure Queue Storage.
"""

from ._blob import BlobStore
from ._queue import MAX_MESSAGE_BYTES, Message, MessageQueue
from .local import FileBlobStore
from .redis_queue import RedisMessageQueue

__all__ = ["MAX_MESSAGE_BYTES", "BlobStore", "FileBlobStore", "Message", "MessageQueue", "RedisMessageQueue"]
