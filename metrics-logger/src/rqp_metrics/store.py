"""Samples in the blob store as JSON Lines, one blob per cycle, date and VM.

Names: ``metrics/<YYYY-MM-DD>/<vm>/<HHMMSS>-<uuid>.jsonl`` (UTC; HHMMSS is the blob's earliest
sample). Blobs are never appended to — every backend can write a whole blob atomically, few can
append — and the uuid keeps two loggers (or a retried write) from overwriting each other. Reading
a time range lists only the dates it covers and skips blobs that start after its end. Only the
``BlobStore`` interface is used: the same code runs on a directory or Azure Blob Storage.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from rqp.storage import BlobStore

from .sample import Sample

__all__ = ["DEFAULT_PREFIX", "ReadResult", "SampleStore", "blob_vm_name"]

DEFAULT_PREFIX = "metrics"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME_RE = re.compile(r"^(?P<hms>\d{6})-[0-9a-f]+\.jsonl$")


def blob_vm_name(vm: str) -> str:
    """A VM name usable as one blob-name segment (Azure VM names already are)."""
    safe = _UNSAFE.sub("_", vm).lstrip(".")
    return safe or "_"


@dataclass
class ReadResult:
    samples: list[Sample] = field(default_factory=list)
    blobs: int = 0
    #: lines that were not a sample (never written by rqp; counted, not fatal)
    bad_lines: int = 0
    duplicates: int = 0


class SampleStore:
    def __init__(self, blobs: BlobStore, prefix: str = DEFAULT_PREFIX) -> None:
        self.blobs = blobs
        self.prefix = prefix.strip("/")

    @property
    def location(self) -> str:
        return f"{self.blobs.location}/{self.prefix}"

    # ------------------------------------------------------------------ writing
    @staticmethod
    def group(samples: Iterable[Sample]) -> dict[tuple[date, str], list[Sample]]:
        """Samples by (UTC date, VM): the unit of one blob."""
        groups: dict[tuple[date, str], list[Sample]] = defaultdict(list)
        for s in samples:
            groups[(s.ts.astimezone(UTC).date(), s.vm)].append(s)
        return dict(groups)

    def blob_name(self, day: date, vm: str, first: datetime) -> str:
        hms = first.astimezone(UTC).strftime("%H%M%S")
        return f"{self.prefix}/{day.isoformat()}/{blob_vm_name(vm)}/{hms}-{uuid.uuid4().hex}.jsonl"

    def write_group(self, day: date, vm: str, samples: list[Sample]) -> str:
        """One blob holding ``samples`` (all of one date and VM); raises ``StorageError``."""
        ordered = sorted(samples, key=lambda s: s.ts)
        name = self.blob_name(day, vm, ordered[0].ts)
        body = "".join(s.to_json() + "\n" for s in ordered).encode()
        self.blobs.put(name, body, overwrite=False)
        return name

    # ------------------------------------------------------------------ reading
    def read(self, since: datetime, until: datetime, vms: Iterable[str] | None = None) -> ReadResult:
        """Samples with ``since <= ts <= until``, oldest first, duplicates dropped."""
        since, until = since.astimezone(UTC), until.astimezone(UTC)
        result = ReadResult()
        wanted = None if vms is None else set(vms)
        seen: set[tuple] = set()
        day = since.date()
        while day <= until.date():
            prefixes = [f"{self.prefix}/{day.isoformat()}/"]
            if wanted is not None:
                prefixes = [f"{prefixes[0]}{blob_vm_name(v)}/" for v in sorted(wanted)]
            for prefix in prefixes:
                for name in self.blobs.list(prefix):
                    if not self._may_overlap(name, day, until):
                        continue
                    result.blobs += 1
                    self._read_blob(name, since, until, wanted, seen, result)
            day += timedelta(days=1)
        result.samples.sort(key=lambda s: (s.ts, s.vm, s.source, s.metric))
        return result

    @staticmethod
    def _may_overlap(name: str, day: date, until: datetime) -> bool:
        m = _NAME_RE.match(name.rsplit("/", 1)[-1])
        if not m:
            return False
        hms = m.group("hms")
        start = datetime.combine(day, time(int(hms[:2]), int(hms[2:4]), int(hms[4:])), tzinfo=UTC)
        return start <= until

    def _read_blob(
        self, name: str, since: datetime, until: datetime, wanted: set[str] | None, seen: set[tuple], result: ReadResult
    ) -> None:
        for line in self.blobs.get(name).decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                s = Sample.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                result.bad_lines += 1
                continue
            if not since <= s.ts <= until or (wanted is not None and s.vm not in wanted):
                continue
            if s.key in seen:
                result.duplicates += 1
                continue
            seen.add(s.key)
            result.samples.append(s)
