"""The message-queue interface, for status records, workload events and metrics summaries.

Semantics are Azure Queue Storage's, which every backend can provide: at-least-once delivery;
a received message is invisible for ``visibility_timeout`` seconds and comes back unless deleted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["MAX_MESSAGE_BYTES", "Message", "MessageQueue"]

#: the smallest limit of any backend (Azure Queue Storage: 64 KiB, base64-encoded)
MAX_MESSAGE_BYTES = 48 * 1024


@dataclass(frozen=True)
class Message:
    id: str
    body: bytes
    #: backend handle needed to delete (Azure pop receipt, Redis stream id)
    receipt: str
    dequeue_count: int = 1


class MessageQueue(ABC):
    location: str
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: a send is a round trip to another service (Azure Queue Storage: milliseconds of client
    #: and server CPU and the network's latency), so a worker publishes its status messages off
    #: its chunk's critical path (``rqp_processor.publisher``); a queue on the coordinating Redis
    #: (a few commands on a connection already open) is published inline
    remote: bool = False

    @abstractmethod
    def send(self, queue: str, body: bytes) -> str:
        """Enqueue one message (at most ``max_message_bytes``); returns its id."""

    def send_many(self, queue: str, bodies: list[bytes]) -> list[str]:
        return [self.send(queue, b) for b in bodies]

    @abstractmethod
    def receive(
        self, queue: str, max_messages: int = 32, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        """Up to ``max_messages``, waiting up to ``wait`` seconds for the first."""

    @abstractmethod
    def delete(self, queue: str, message: Message) -> None:
        """Acknowledge: the message will not be delivered again."""

    @abstractmethod
    def peek(self, queue: str, max_messages: int = 32) -> list[Message]:
        """Look without taking (for ``rqp events --peek``)."""

    @abstractmethod
    def length(self, queue: str) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional: a backend with nothing to release keeps this
        pass
