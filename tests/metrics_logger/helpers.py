"""Test doubles: a blob store that fails like an outage, a source with known samples."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from rqp.errors import StorageUnavailableError
from rqp.storage import BlobStore
from rqp_metrics.sample import CPU_PERCENT, NET_IN_BYTES, Sample
from rqp_metrics.sources import Collection


class FlakyBlobStore(BlobStore):
    """Delegates to a real store; ``put`` raises ``StorageUnavailableError`` while ``failures`` > 0."""

    def __init__(self, inner: BlobStore, failures: int = 0) -> None:
        self.inner = inner
        self.failures = failures
        self.failed_puts = 0
        self.location = inner.location

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.failed_puts += 1
            raise StorageUnavailableError(
                f"cannot write blob {name} in {self.location}: service unavailable (test outage)"
            )
        self.inner.put(name, data, overwrite=overwrite)

    def put_stream(self, name: str, chunks: Iterable[bytes], *, overwrite: bool = True) -> int:
        data = b"".join(chunks)
        self.put(name, data, overwrite=overwrite)
        return len(data)

    def get(self, name: str) -> bytes:
        return self.inner.get(name)

    def iter_chunks(self, name: str, chunk_size: int = 4 << 20) -> Iterator[bytes]:
        return self.inner.iter_chunks(name, chunk_size)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def size(self, name: str) -> int:
        return self.inner.size(name)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        self.inner.delete(name)


class ScriptedSource:
    """Yields a known batch per cycle: ``vms`` x (CPU, net in) at one timestamp per cycle."""

    name = "host"

    def __init__(
        self, start: datetime, vms: tuple[str, ...] = ("vm-1", "vm-2"), step: timedelta = timedelta(seconds=60)
    ) -> None:
        self.start = start
        self.vms = vms
        self.step = step
        self.cycle = 0
        self.emitted: list[Sample] = []

    def collect(self) -> Collection:
        ts = self.start + self.step * self.cycle
        self.cycle += 1
        out = Collection()
        for i, vm in enumerate(self.vms):
            out.samples.append(Sample(ts, vm, "host", CPU_PERCENT, 10.0 * (i + 1) + self.cycle, "Percent", 60.0))
            out.samples.append(Sample(ts, vm, "host", NET_IN_BYTES, 1000.0 * self.cycle, "Bytes", 60.0))
        self.emitted.extend(out.samples)
        return out

    def close(self) -> None:
        pass
