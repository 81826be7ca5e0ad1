"""``rqp.Workload``: the handle ``Client.submit`` and ``Client.workload`` return -- its status,
a wait with a progress bar, its results (streamed as chunks commit, or consolidated), its
failures, and the operator's control actions, each signed as the CLI signs them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import control
from ..backends import round_facts, unchecked_round
from ..errors import BlobNotFoundError, RqpError, WorkloadError
from ..export_check import client_rows
from ..identity import actor
from ..ledger import SUBMISSIONS, Ledger
from ..results import failures_so_far, read_results
from ..round_marker import AnyRound
from ..status import read_progress, verified_progress
from ..summary import Failure, StaleSummaryError, Summary, read_summary
from ..verification import (
    Report,
    Row,
    attestation_of,
    check_rows,
    make_proof,
    results_trust,
    stored_rows,
)
from ..workload import Workload as OpenedWorkload
from ..workload import blob_name
from ._status import WorkloadStatus, is_ended, is_known
from ._stream import Seen, committed_results, parse_line, remaining
from ._streamed import StreamedResult, changed_after_streaming

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["POLL_SECONDS", "WaitTimeoutError", "Workload"]

#: how often ``wait`` and ``stream`` look at Redis again
POLL_SECONDS = 0.5
#: ended states no sealed summary vouches for (failed as a whole, refused): ``wait`` ends on them
#: as they are; a done or cancelled one ends it only once its summary opens (when the KEK is here)
_UNSEALED_ENDS = frozenset({"failed", "refused"})


class WaitTimeoutError(WorkloadError, TimeoutError):
    """``Workload.wait`` or ``stream`` ran out of time before the workload ended."""


class Workload:
    """A workload by id, bound to a ``Client`` (its settings, Redis, blob store and keys). Cheap
    to make: nothing is read until a method asks."""

    def __init__(self, client: Client, workload_id: str) -> None:
        self.client = client
        self.id = workload_id

    def __repr__(self) -> str:
        return f"rqp.Workload({self.id!r})"

    # ------------------------------------------------------------------ reading
    def _opened(self) -> OpenedWorkload:
        """Opened as the roles open it (trusted signature first, then the key): needs the KEK."""
        return self.client.backends.workload(self.id)

    def status(self) -> WorkloadStatus:
        """A snapshot of where it stands; once it ended, the counts are its sealed summary's."""
        b = self.client.backends
        p = read_progress(b.redis, self.id)
        if p is None:
            if not b.blobs.exists(blob_name(self.id, "manifest.json")):
                raise control.unknown(self.id)
            queued = {x.decode() if isinstance(x, bytes) else str(x) for x in b.redis.lrange(SUBMISSIONS, 0, -1)}
            return WorkloadStatus.not_started(self.id, "submitted" if self.id in queued else "packed")
        if is_ended(p.state):
            read: list[Summary] = []
            p = verified_progress(p, lambda: self._remember(read, self._sealed_summary()))
            why = unchecked_round(b.redis, b.blobs, self._opened(), read[0].sealed_round) if read else ""
            if p.verified and why:  # no sealed head confirms the round (as rqp status says)
                p = replace(p, verified=False, round_note=why)
        if p.verified is None and (is_ended(p.state) or not is_known(p.state)):
            # an ended state without a sealed summary to vouch for it (``failed`` as a whole), or
            # one this version does not know: Redis's plain counts, so say they are unverified
            p = replace(p, verified=False)
        return WorkloadStatus.from_progress(p)

    @staticmethod
    def _remember(into: list[Summary], summary: Summary | None) -> Summary | None:
        if summary is not None:
            into.append(summary)
        return summary

    def _holds_kek(self) -> bool:
        """Whether this client can open the sealed summary (else an ended state cannot be checked)."""
        settings = self.client.settings
        return bool(settings.kek_file or settings.key_vault_key_id)

    def _sealed_summary(self) -> Summary | None:
        """The authenticated summary when this client holds the KEK and it opens, else None (an
        ended workload's counts are then shown unverified, as ``rqp status`` shows them)."""
        if not self._holds_kek():
            return None
        try:
            return read_summary(self.client.backends.blobs, self._opened())
        except StaleSummaryError:
            raise  # an older round's summary put back: said as such, never shown as verified
        except (RqpError, ValueError):
            return None

    def wait(self, timeout: float | None = None, progress: bool = True, poll: float = POLL_SECONDS) -> WorkloadStatus:
        """Block until it ends (done, failed, cancelled); its final status. ``progress``: a tqdm
        bar (a widget in a notebook) when tqdm is installed (``rqp[progress]``), nothing otherwise
        or when False. ``WaitTimeoutError`` after ``timeout`` seconds. A workload whose sealed
        summary says it ended but whose round no sealed head confirms (Redis's head deleted, or
        expired after the status TTL) has ended too: returned with ``verified`` False and
        ``round_note`` saying why (as ``rqp status``), never waited on for a head that cannot come."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _bar(self.id) if progress else None
        try:
            while True:
                s = self.status()
                if bar is not None:
                    bar(s)
                if s.ended and (s.verified or s.round_note or s.state in _UNSEALED_ENDS or not self._holds_kek()):
                    return s
                _pause(deadline, poll, self.id, s)
        finally:
            if bar is not None:
                bar(None)

    def results(self, *, any_round: AnyRound = False) -> Iterator[dict[str, Any]]:
        """Its results in record order, each ``{"id": N, "result": ...}`` (with ``"key"`` when
        packed with an id field; ``{"id": N, "error": ...}`` for a result that is not JSON),
        decrypted and checked against the sealed summary. ``WorkloadError`` until it has ended.
        Without the sealed head in Redis nothing proves they are the current round's:
        ``RoundUncheckedError`` then (as ``rqp results``), unless ``any_round=True`` -- or
        ``any_round="older"`` when the sealed round marker says a later round was begun."""
        b = self.client.backends
        opened = self._opened()
        summary = self._summary_or_why(opened)
        self._round_or_raise(opened, summary.sealed_round, any_round, "results")
        for line in read_results(b.blobs, opened, summary):  # the summary whose round was checked
            if line:
                yield parse_line(line)

    def _round_or_raise(
        self, opened: OpenedWorkload, round_: int, any_round: AnyRound, command: str, method: str = ""
    ) -> str:
        """Every reader's round rule (``rqp.backends.RoundFacts.check``) for round ``round_``: the
        note (``""`` when the sealed head confirms it), ``RoundUncheckedError`` unless ``any_round``
        accepts it. ``command``: the ``rqp`` command a refusal names; ``method``: this client's."""
        b = self.client.backends
        return round_facts(b.redis, b.blobs, opened).check(self.id, round_, any_round, command, method)

    def _summary_or_why(self, opened: OpenedWorkload) -> Summary:
        b = self.client.backends
        try:
            return read_summary(b.blobs, opened)
        except BlobNotFoundError:
            s = self.status()
            if s.state == "failed":
                raise WorkloadError(
                    f"workload {self.id} failed as a whole and has no results: {s.error or 'no reason recorded'}"
                ) from None
            raise WorkloadError(
                f"workload {self.id} has no results yet ({s.state}); wait for it first (Workload.wait()), or read "
                f"them as they come with Workload.stream()"
            ) from None

    def failures(self, *, any_round: AnyRound = False) -> list[Failure]:
        """Its failed records (id, error, attempts, key): the sealed summary's once it ended, else
        those failed for good so far (not final). An ended workload's take the round rule of
        ``results`` (as ``rqp results --failed``): ``RoundUncheckedError`` unless ``any_round``."""
        b = self.client.backends
        opened = self._opened()
        try:
            summary = read_summary(b.blobs, opened)
        except BlobNotFoundError:
            pass
        else:
            self._round_or_raise(opened, summary.sealed_round, any_round, "results --failed", "failures")
            return summary.failures
        led = Ledger(b.redis, self.id)
        return failures_so_far(led, opened) if led.exists() else []

    # ------------------------------------------------------------------ verifiable results
    def root(self) -> dict[str, Any]:
        """Its signed results root (``rqp.results_root``): the statement (workload, root, size,
        manifest digests), the signature and the signer's public key, as the sealed summary holds
        it -- NOT checked here, its round included: without a sealed head in Redis it may be an
        older round's (``verify`` checks the signature and the round; ``proof`` applies the round rule)."""
        opened = self._opened()
        return attestation_of(self._summary_or_why(opened), self.id).to_dict()

    def verify(
        self,
        signer: str | Path | None = None,
        results: Iterable[dict[str, Any]] | None = None,
        *,
        any_round: AnyRound = False,
    ) -> Report:
        """Check its results against the signed root (as ``rqp verify W``): the stored ones, or
        ``results`` -- records as ``results()`` or ``stream()`` gave them, in any order (held in
        memory to sort when out of order). The report of a match; ``IntegrityError`` naming the
        records that differ, are missing, extra or repeated, or the untrusted signer.
        ``signer``: the results key's .pub.pem (default: the trusted results keys, or operators).
        Without the sealed head in Redis nothing proves the round is the current one:
        ``RoundUncheckedError`` then, unless ``any_round=True`` (the report's ``note`` says so);
        when the sealed round marker says a later round was begun, only ``any_round="older"``."""
        b = self.client.backends
        opened = self._opened()
        self._summary_or_why(opened)
        trust = results_trust(self.client.settings, None if signer is None else Path(signer))
        if results is None:
            rows: Iterable[Row] = stored_rows(b.blobs, opened)
        else:
            rows = client_rows(b.blobs, opened, list(results))
        report = check_rows(b.blobs, opened, trust, rows)
        report.raise_if_failed()
        report.note = self._round_or_raise(opened, report.round, any_round, "verify")
        return report

    def verify_streamed(
        self, results: Iterable[Mapping[str, Any]], signer: str | Path | None = None, *, any_round: AnyRound = False
    ) -> Report:
        """Check what ``stream()`` yielded -- kept as it came (``StreamedResult``), or stored with
        its leaf inputs as ``{**r, "leaf": r.leaf.to_dict()}`` -- against the signed root, once
        the workload has ended: each record as it was streamed must be the one the fleet signed,
        and must still hash to the digest it was streamed with. The report of a match;
        ``IntegrityError`` naming each record changed after it was streamed, not signed as
        streamed, missing, extra or repeated (give the whole stream), or the untrusted signer.
        The round rule of ``verify``: ``RoundUncheckedError`` unless ``any_round`` (the report's
        ``note`` says what was accepted)."""
        b = self.client.backends
        opened = self._opened()
        self._summary_or_why(opened)
        trust = results_trust(self.client.settings, None if signer is None else Path(signer))
        rows, changed = changed_after_streaming(results)
        rows.sort(key=lambda r: r.id)
        report = check_rows(b.blobs, opened, trust, rows, what="streamed results")
        for problem in changed:
            report.add(problem)
        report.raise_if_failed()
        report.note = self._round_or_raise(opened, report.round, any_round, "verify", "verify_streamed")
        return report

    def proof(self, record: int, *, any_round: AnyRound = False) -> dict[str, Any]:
        """A self-contained proof of one record's result (as ``rqp proof W --record N``), which
        ``rqp.verification.check_proof`` -- or the README's plain check -- verifies with only the
        signer's public key. Checked offline, a proof cannot tell whether its round is current:
        without the sealed head in Redis confirming it, ``RoundUncheckedError`` (as ``rqp proof``),
        unless ``any_round=True`` -- or ``any_round="older"`` when the sealed round marker says a
        later round was begun."""
        opened = self._opened()
        self._summary_or_why(opened)
        proof = make_proof(self.client.backends.blobs, opened, record)
        self._round_or_raise(opened, proof["round"], any_round, "proof")
        return proof

    def stream(
        self, timeout: float | None = None, poll: float = POLL_SECONDS, *, any_round: AnyRound = False
    ) -> Iterator[StreamedResult]:
        """Its results as chunks commit, before consolidation, each record once (in commit order,
        not record order), verified under the workload's key as the final results are; ends when
        the workload has ended and every result was yielded. Each is the record's dict with a
        ``leaf`` attribute -- the id, key and result digest it came with -- which
        ``verify_streamed`` checks against the signed root once it exists.
        ``WaitTimeoutError`` after ``timeout`` seconds. What it yields after the end comes from the
        consolidated results, under the round rule of ``results`` (``RoundUncheckedError`` unless
        ``any_round``)."""
        b = self.client.backends
        opened = self._opened()
        led = Ledger(b.redis, self.id)
        seen = Seen()
        notes: dict[str, bytes] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.status()  # before the notes: a chunk committed after this is read next time
            yield from committed_results(led, b.blobs, opened, seen, notes)
            if s.ended:
                break
            _pause(deadline, poll, self.id, s)
        if s.state == "failed":
            return  # failed as a whole: no consolidated results beyond what was streamed
        summary = self._summary_or_why(opened)
        self._round_or_raise(opened, summary.sealed_round, any_round, "results", "stream")
        yield from remaining(read_results(b.blobs, opened, summary), seen)

    def to_pandas(self, *, any_round: AnyRound = False) -> Any:
        """Its results as a pandas DataFrame (``rqp[dataframe]``): ``id`` (and ``key``), then the
        result's fields as columns when every result is a flat object, else one ``result``
        column; an ``error`` column when a result was not JSON. ``any_round``: as ``results``."""
        from ._frames import to_pandas  # noqa: PLC0415 - pandas loads only when asked for

        return to_pandas(self.results(any_round=any_round))

    def failures_to_pandas(self, *, any_round: AnyRound = False) -> Any:
        """Its failures as a pandas DataFrame: ``id``, ``key``, ``attempts``, ``error``.
        ``any_round``: as ``failures``."""
        from ._frames import failures_to_pandas  # noqa: PLC0415

        return failures_to_pandas(self.failures(any_round=any_round))

    def to_parquet(self, path: str | Path, *, any_round: AnyRound = False) -> Path:
        """Its results written to a Parquet file (``rqp[dataframe]``), in batches: the columns of
        ``to_pandas``, a non-flat result as its JSON text. ``any_round``: as ``results``."""
        from ._frames import to_parquet  # noqa: PLC0415

        return to_parquet(lambda: self.results(any_round=any_round), Path(path))

    # ------------------------------------------------------------------ control
    def pause(self) -> str:
        """Nothing new is queued; chunks in hand finish (``rqp pause``)."""
        return self._advisory(control.pause)

    def resume(self) -> str:
        """Go on with a paused workload (``rqp resume``)."""
        return self._advisory(control.resume)

    def cancel(self) -> str:
        """Stop for good; what was done is consolidated (``rqp cancel``)."""
        return self._advisory(control.cancel)

    def _advisory(self, action: Callable[..., str]) -> str:
        b = self.client.backends
        return action(b.redis, self.client.operator_key(), self.id, actor(), lambda: b.blobs)

    def retry_failed(self) -> int:
        """Run an ended workload's failed records again in a new round (``rqp retry --failed``);
        how many (0: none failed)."""
        b = self.client.backends
        signer = self.client.operator_key()
        if not control.check_known(b.redis, b.blobs, self.id):
            raise WorkloadError(f"workload {self.id} is packed but has not run; it has no failed records to retry")
        return control.retry_failed(b.redis, b.blobs, b.workload(self.id), signer, actor())

    def set_priority(self, level: str) -> str:
        """``high``, ``normal`` or ``low``, for its chunks queued from now on (``rqp priority``)."""
        b = self.client.backends
        return control.set_priority(b.redis, self.client.operator_key(), self.id, level, actor(), lambda: b.blobs).value

    def delete(self, *, shred: bool = False) -> tuple[int, int]:
        """Remove an ended workload's Redis state and blobs (``rqp delete``); with ``shred`` its
        wrapped data key is destroyed first. (Redis keys, blobs) removed."""
        b = self.client.backends
        return control.delete(b.redis, b.blobs, self.client.operator_key(), self.id, actor(), shred=shred)


def _pause(deadline: float | None, poll: float, workload_id: str, s: WorkloadStatus) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeoutError(
            f"workload {workload_id} had not ended in time ({s.state}: {s.done:,} done, {s.failed:,} failed of "
            f"{s.total if s.total is not None else '?'}); wait longer, or look with 'rqp status {workload_id}'"
        )
    time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def _bar(workload_id: str) -> Callable[[WorkloadStatus | None], None] | None:
    """An updater of a tqdm progress bar (None when tqdm is not installed); called with None to
    close it."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - optional (rqp[progress])
    except ImportError:
        return None
    bar = tqdm(desc=workload_id, unit="rec", total=None, leave=True)

    def update(s: WorkloadStatus | None) -> None:
        if s is None:
            bar.close()
            return
        if s.total is not None and bar.total != s.total:
            bar.total = s.total
        bar.n = s.finished
        bar.set_postfix_str(s.state + (f", {s.failed:,} failed" if s.failed else ""), refresh=False)
        bar.refresh()

    return update
