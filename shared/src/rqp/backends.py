"""One bundle of a role's live clients, built once from ``Settings``.

Every role needs the same five things -- the coordinating Redis, the blob store, the message
queue, the key provider and the trust store -- and used to open them with the same five lines and
then pass them one by one. ``Backends`` opens each lazily on first use (a CLI command that only
reads Redis never needs a KEK), caches it, and travels whole into the scheduler, the processor and
the console, typed, so nothing downstream is ``Any``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import redis

from .config import Settings
from .connect import (
    connect_redis,
    open_blob_store,
    open_key_provider,
    open_message_queue,
    open_operator_trust,
    open_trust_store,
)
from .errors import IntegrityError
from .keys import KeyProvider
from .ledger import TOMBSTONES, Head, Ledger, State
from .round_marker import AnyRound, check_round_or_raise, marked_round, round_checked, round_note
from .signing import TrustStore
from .storage import BlobStore, MessageQueue
from .summary import MarkerFloor
from .workload import Workload

__all__ = [
    "Backends",
    "RoundFacts",
    "check_tombstone",
    "head_round",
    "open_head",
    "other_generation",
    "round_facts",
    "sealed_head",
]


class Backends:
    """The live clients of one process.

    ``retry_storage``: long-running roles ride out blob-store outages (``storage_retry_seconds``);
    a CLI command fails at once instead. ``need_private``: a packer needs only the public KEK.
    Any client may be given ready-made (tests, or a role that already holds a connection).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry_storage: bool = False,
        need_private: bool = True,
        redis_client: redis.Redis | None = None,
        blobs: BlobStore | None = None,
        queue: MessageQueue | None = None,
        keys: KeyProvider | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        self.settings = settings
        self._retry_storage = retry_storage
        self._need_private = need_private
        given = {"redis": redis_client, "blobs": blobs, "queue": queue, "keys": keys, "trust": trust}
        for name, value in given.items():
            if value is not None:
                self.__dict__[name] = value  # pre-fills the cached_property

    @cached_property
    def redis(self) -> redis.Redis:
        """The coordinating Redis, checked (one clear line if unreachable or misconfigured)."""
        return connect_redis(self.settings)

    @cached_property
    def blobs(self) -> BlobStore:
        retry = self.settings.storage_retry_seconds if self._retry_storage else None
        return open_blob_store(self.settings.blob_url, retry_seconds=retry)

    @cached_property
    def queue(self) -> MessageQueue:
        """The status/events message queue (Redis streams on this Redis, or Azure Queue)."""
        return open_message_queue(self.settings, self.__dict__.get("redis"))

    @cached_property
    def keys(self) -> KeyProvider:
        return open_key_provider(self.settings, need_private=self._need_private)

    @cached_property
    def trust(self) -> TrustStore:
        return open_trust_store(self.settings)

    @cached_property
    def operators(self) -> TrustStore | None:
        """The operators whose signed requests count (None: only each workload's submitter)."""
        return open_operator_trust(self.settings)

    def open_all(self) -> Backends:
        """Open every client now, so a role fails at start with one line rather than mid-run."""
        for name in ("redis", "blobs", "queue", "keys", "trust"):
            getattr(self, name)
        return self

    def workload(self, workload_id: str) -> Workload:
        """Open a workload: its signature is checked against the trust store before any key is
        used, and a workload deleted once (its manifest's digest has a tombstone) is refused, so
        its signed blobs uploaded again never run or read as current."""
        workload = Workload.open(self.blobs, self.keys, workload_id, self.trust)
        check_tombstone(self.redis, workload)
        workload.sealed_round = head_round(self.redis, workload, self.blobs)
        return workload


def sealed_head(r: redis.Redis, workload: Workload) -> tuple[int, bool] | None:
    """(round, closed) of the workload's sealed head in Redis; None when Redis holds none that
    opens under its key (Redis lost, a Redis writer deleted or junked it, or not started), or for
    a superseded generation (whose head is the new generation's: never compared)."""
    if workload.generation:
        return None
    return open_head(r, workload)


def open_head(r: redis.Redis, workload: Workload) -> tuple[int, bool] | None:
    """(round, closed) of the sealed head Redis holds under ``workload``'s id when it opens under
    ``workload``'s key, whichever its generation (``rqp results`` asks it of a superseded one
    whose successor has not started); None otherwise."""
    raw = Ledger(r, workload.id).head()
    if raw is None:
        return None
    try:
        head = Head.open(workload, raw)
    except (IntegrityError, ValueError, KeyError, TypeError):
        return None
    return head.round, head.closed


@dataclass(frozen=True)
class RoundFacts:
    """What a reader knows of a summary's round, gathered once (``round_facts``): the sealed
    head's (round, closed), the sealed round marker's round, and -- when Redis holds a head that
    does not open under this generation's key -- this generation's manifest digest (``foreign``:
    the blob store holds another generation than the one Redis ran)."""

    head: tuple[int, bool] | None
    marked: int | None
    foreign: str = ""
    #: Redis shows the workload failed (wording of the note only: ``round_note``)
    failed: bool = False

    def note(self, summary_round: int) -> str:
        return round_note(self.head, self.marked, summary_round, foreign=bool(self.foreign), failed=self.failed)

    def check(
        self, workload_id: str, summary_round: int, any_round: AnyRound, command: str = "verify", method: str = ""
    ) -> str:
        """``rqp.round_marker.check_round_or_raise`` over these facts: the note, or
        ``RoundUncheckedError``."""
        return check_round_or_raise(
            workload_id, self.head, self.marked, summary_round, any_round, command, method or None,
            foreign=self.foreign, failed=self.failed,
        )  # fmt: skip


def other_generation(r: redis.Redis, workload: Workload) -> bool:
    """Whether Redis holds a sealed head for ``workload``'s id that does not open under
    ``workload``'s key (whichever its own generation): evidence of another generation than the
    one the blob store holds (a superseded one put back), or of a head altered -- never "no head",
    and never taken by plain ``--any-round``. Whatever the start pin says: a Redis writer can
    delete the pin as easily as the head, so the pin cannot turn such a head into "none"."""
    return Ledger(r, workload.id).head() is not None and open_head(r, workload) is None


def round_failed(r: redis.Redis, workload_id: str, head: tuple[int, bool] | None) -> bool:
    """Whether the round the sealed head names ended in failure, as Redis shows it (wording of
    ``round_note`` only: nothing is accepted on a shown state)."""
    return head is not None and not head[1] and Ledger(r, workload_id).state() == State.FAILED


def round_facts(r: redis.Redis, store: BlobStore, workload: Workload) -> RoundFacts:
    """The round facts of ``workload``'s current generation (see ``RoundFacts``)."""
    head = sealed_head(r, workload)
    foreign = head is None and not workload.generation and other_generation(r, workload)
    failed = round_failed(r, workload.id, head)
    return RoundFacts(
        head, marked_round(store, workload), workload.manifest.content_digest() if foreign else "", failed
    )


def head_round(
    r: redis.Redis, workload: Workload, store: BlobStore | None = None
) -> Callable[[], tuple[int, bool] | None]:
    """What ``Workload.sealed_round`` reads, fresh on each call: the sealed head's (round,
    closed), raised to the sealed round marker in ``store`` (``rqp.round_marker``) when the head
    is missing, junk or older than the marker: round R was begun, so a summary older than the
    round before R is refused even with Redis's head deleted (whether R itself ended only the
    head can tell: ``round_marker.round_note`` says so). None when neither is there: readers then
    say the round was not checked."""

    def read() -> tuple[int, bool] | None:
        head = sealed_head(r, workload)
        marked = None if store is None or workload.generation else marked_round(store, workload)
        if marked is not None and (head is None or marked > head[0]):
            return MarkerFloor((marked, False))  # the marker's floor: a refusal names it, not a head
        return head

    return read


def check_tombstone(r: redis.Redis, workload: Workload) -> None:
    """``IntegrityError`` when this exact workload (id, creation time, data and script) was deleted."""
    entry = r.hget(TOMBSTONES, workload.manifest.content_digest())
    if entry is None:
        return
    try:
        doc = json.loads(entry)
        who, at = str(doc.get("who", "?")), float(doc.get("at", 0))
    except (ValueError, TypeError, AttributeError):
        who, at = "?", 0.0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    raise IntegrityError(
        f"workload {workload.id} was deleted by {who} at {when} ('rqp audit'); its blobs uploaded again are "
        f"refused: pack it anew with 'rqp pack'"
    )


def unchecked_round(r: redis.Redis, store: BlobStore, workload: Workload, summary_round: int) -> str:
    """Why a summary of round ``summary_round`` is not confirmed as the current one -- no sealed
    head in Redis (``round_marker.round_note``: every round's marker is genuine, so only the head
    can tell) -- as one phrase, ``""`` when the head confirms it. ``rqp status`` and
    ``Workload.status()`` then mark the sealed counts unverified."""
    note = round_facts(r, store, workload).note(summary_round)
    return "" if round_checked(note) else note.strip()[1:-1]
