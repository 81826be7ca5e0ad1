"""What the console can read only with the KEK: failure reasons and the start notes of chunks.

Off by default. A console started without ``RQP_KEK_FILE`` (or ``RQP_KEY_VAULT_KEY_ID``) has no
``Opener`` and shows only what Redis holds in the clear: record ids, counts, attempts, job ids,
leases, rqp's own error lines. Given the KEK it opens a workload the way ``rqp status --record``
does -- the submitter's signature checked against ``RQP_TRUSTED_SIGNERS_FILE`` before a key is
unwrapped -- and keeps a few opened workloads (their data keys) in memory for a few minutes, so a
page refresh does not unwrap a key each time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

import redis

from rqp.backends import Backends, head_round, round_failed, sealed_head, unchecked_round
from rqp.errors import RqpError
from rqp.keys import KeyProvider
from rqp.round_marker import marked_round, round_note
from rqp.signing import TrustStore
from rqp.status import StatusRecord, record_status
from rqp.storage import BlobStore
from rqp.summary import StaleSummaryError, Summary, read_summary
from rqp.workload import Manifest, NotAManifestError, Workload, blob_name

from .results_check import ResultsChecks

__all__ = ["Opener", "open_opener"]

#: opened workloads kept (each holds its data key in memory), and for how long unused
_KEEP = 16
_KEEP_SECONDS = 300.0
#: how long an ended workload's summary is kept (a signed retry's new round writes a new one)
_SUMMARY_SECONDS = 30.0
#: how long the manifest's generation, once read, is taken as the current one: as long as a page's
#: answer is cached (``routes.workloads.TTL_DETAIL``, ``TTL_LIST``), so the list, a page and its
#: start notes read each manifest at most once a second between them
GENERATION_SECONDS = 1.0


class Opener:
    """Opens workloads with the KEK and decrypts their sealed values. Thread-safe."""

    def __init__(self, store: BlobStore, keys: KeyProvider, trust: TrustStore, r: redis.Redis | None = None) -> None:
        self.store = store
        self.keys = keys
        self.trust = trust
        #: where a workload's sealed head is read, so a summary of an older round is refused
        self.r = r
        #: why a workload's summary was refused as an older round's (shown on its page)
        self.stale: dict[str, str] = {}
        self._open: OrderedDict[str, tuple[float, Workload]] = OrderedDict()
        self._lock = threading.Lock()
        #: each workload's current generation as last read (when, its manifest's SHA-256, its content digest)
        self._generations: dict[str, tuple[float, bytes, str]] = {}
        #: why a workload's manifest.json is not a manifest (shown on the list and its page)
        self.unreadable: dict[str, str] = {}
        #: ended workloads' summaries, each with the generation it belongs to (an ended workload's
        #: summary changes only with a new round, or a new generation: ``rqp pack --replace``)
        self._summaries: OrderedDict[str, tuple[float, str, Summary]] = OrderedDict()
        #: stored results checked against their signed roots, for the workload page's badge
        self.results_checks = ResultsChecks(store)

    def generation(self, workload_id: str, fresh: bool = False) -> str:
        """The content digest of the workload's manifest as the blob store holds it now: what an
        opened workload and its summary are kept under, so after ``rqp pack --replace`` the new
        generation is opened afresh and never shown the superseded one's root or counts.

        Read at most once per ``GENERATION_SECONDS`` per workload, whoever asks (the list, a page,
        its chunks' start notes): answers are reused that long anyway (``routes.workloads``), so a
        fresher read would show nothing sooner. A manifest whose bytes did not change is not parsed
        again. ``fresh`` reads now (a caller that must not trust the last second). ``RqpError``
        when there is none or it is not a manifest -- that one line also kept in ``unreadable``,
        what the list and the page show for that workload."""
        now = time.monotonic()
        with self._lock:
            hit = self._generations.get(workload_id)
        if not fresh and hit is not None and now - hit[0] < GENERATION_SECONDS:
            return hit[2]
        raw = self.store.get(blob_name(workload_id, "manifest.json"))
        seen = hashlib.sha256(raw).digest()  # kept instead of the bytes: a few per workload
        if hit is not None and hit[1] == seen:
            digest = hit[2]
        else:
            try:
                digest = Manifest.from_json(raw, workload_id).content_digest()
            except NotAManifestError as exc:
                with self._lock:
                    self.unreadable[workload_id] = str(exc)
                raise
        with self._lock:
            self.unreadable.pop(workload_id, None)
            if len(self._generations) > 10_000:
                self._generations.clear()
            self._generations[workload_id] = (now, seen, digest)
        return digest

    def workload(self, workload_id: str) -> Workload:
        """The opened workload of its current generation; ``RqpError`` (one line) when it cannot be
        opened or is not trusted."""
        now = time.monotonic()
        current = self.generation(workload_id)
        with self._lock:
            for wid in [w for w, (t, _) in self._open.items() if now - t > _KEEP_SECONDS]:
                del self._open[wid]
            hit = self._open.get(workload_id)
            if hit is not None and hit[1].manifest.content_digest() == current:
                self._open[workload_id] = (now, hit[1])
                self._open.move_to_end(workload_id)
                return hit[1]
            self._open.pop(workload_id, None)  # a superseded generation's (its data key) goes
        opened = Workload.open(self.store, self.keys, workload_id, self.trust)
        if self.r is not None:
            opened.sealed_round = head_round(self.r, opened, self.store)
        with self._lock:
            self._open[workload_id] = (now, opened)
            while len(self._open) > _KEEP:
                self._open.popitem(last=False)
        return opened

    def round_note(self, workload: Workload, summary_round: int) -> str:
        """What readers add about the round of a summary (``rqp.round_marker.round_note``): only
        the sealed head in Redis proves it is the current one; without it (deleted, lost, expired
        after the status TTL) the badge says "round not checked", as ``rqp verify`` does."""
        head = sealed_head(self.r, workload) if self.r is not None else None
        failed = self.r is not None and round_failed(self.r, workload.id, head)
        return round_note(head, marked_round(self.store, workload), summary_round, failed=failed)

    def unconfirmed(self, workload_id: str, summary: Summary) -> str:
        """Why ``summary``'s round is not confirmed as the current one, ``""`` when the sealed head
        confirms it: ``rqp.backends.unchecked_round``, the rule ``rqp status`` and
        ``Workload.status()`` mark the sealed counts unverified by, so the pages agree with them."""
        workload = self.workload(workload_id)
        if self.r is None:
            return self.round_note(workload, summary.sealed_round).strip()[1:-1]
        return unchecked_round(self.r, self.store, workload, summary.sealed_round)

    def summary(self, workload_id: str) -> Summary | None:
        """An ended workload's sealed summary of its current generation (kept a while, its manifest
        read at most once a second: ``generation``); None when it is missing or
        does not open: the page then says its counts are unverified (and why, when it is its
        manifest that is not one: ``unreadable``)."""
        now = time.monotonic()
        try:
            current = self.generation(workload_id)
        except (RqpError, ValueError):
            return None
        with self._lock:
            hit = self._summaries.get(workload_id)
        if hit is not None and hit[1] == current and now - hit[0] < _SUMMARY_SECONDS:
            return hit[2]
        try:
            opened = self.workload(workload_id)
            found = read_summary(self.store, opened)
        except StaleSummaryError as exc:
            with self._lock:
                self.stale[workload_id] = str(exc)
            return None
        except (RqpError, ValueError):
            with self._lock:
                self.stale.pop(workload_id, None)  # a superseded generation's refusal is not this one's
            return None
        with self._lock:
            self.stale.pop(workload_id, None)
        with self._lock:
            self._summaries[workload_id] = (now, opened.manifest.content_digest(), found)
            while len(self._summaries) > _KEEP:
                self._summaries.popitem(last=False)
        return found

    def error(self, workload_id: str, sealed: bytes) -> str:
        """A workload's whole-failure reason, decrypted (``Meta.ERROR_SEALED``, base64): the
        import error or parse failure the plain field only names as "details are encrypted"."""
        return self.workload(workload_id).open_sealed("error", "", base64.b64decode(sealed)).decode()

    def start_note(self, workload_id: str, jid: str, sealed: bytes) -> dict[str, Any]:
        """When and on which worker job ``jid`` started (``rqp.status.seal_start``)."""
        return dict(json.loads(self.workload(workload_id).open_sealed("start", jid, sealed)))

    def status(self, workload_id: str, rid: int, sealed: bytes) -> StatusRecord:
        return StatusRecord.open(self.workload(workload_id), rid, sealed)

    def record(self, r: redis.Redis, workload_id: str, rid: int) -> StatusRecord:
        """Record ``rid``'s status as ``rqp status --record`` shows it."""
        return record_status(r, self.workload(workload_id), rid)


def open_opener(backends: Backends) -> Opener | None:
    """An ``Opener`` on ``backends``' blob store, KEK and trust store when the console was given a
    KEK, else None (the default: no key provider or trust store is opened at all)."""
    settings = backends.settings
    if not (settings.kek_file or settings.key_vault_key_id):
        return None
    return Opener(backends.blobs, backends.keys, backends.trust, backends.redis)
