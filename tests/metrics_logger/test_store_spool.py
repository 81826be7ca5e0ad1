from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from rqp.storage import FileBlobStore
from rqp_metrics.logger import MetricsLogger
from rqp_metrics.sample import CPU_PERCENT, Sample
from rqp_metrics.spool import Spool
from rqp_metrics.store import SampleStore, blob_vm_name

from .helpers import FlakyBlobStore, ScriptedSource

NAME_RE = re.compile(r"^metrics/(\d{4}-\d{2}-\d{2})/([A-Za-z0-9._-]+)/(\d{6})-[0-9a-f]{32}\.jsonl$")


def _s(ts: datetime, vm: str = "vm-1", value: float = 1.0, metric: str = CPU_PERCENT) -> Sample:
    return Sample(ts, vm, "host", metric, value, "Percent", 60.0)


def test_samples_are_stored_by_date_and_vm_and_read_back_equal(sample_store, blob_store):
    t = datetime(2026, 11, 24, 23, 59, 10, tzinfo=UTC)
    samples = [
        _s(t, "vm-1", 1),
        _s(t + timedelta(seconds=60), "vm-1", 2),
        _s(t, "vm-2", 3),
        _s(t + timedelta(minutes=2), "vm/odd name", 4),
    ]
    spool = Spool(sample_store)
    spool.add(samples)
    result = spool.flush()
    assert (result.stored, result.spooled, result.error) == (4, 0, None)
    names = sorted(blob_store.list("metrics/"))
    assert names == sorted(result.blobs)
    parsed = sorted(NAME_RE.match(n).groups() for n in names)  # type: ignore[union-attr]
    assert parsed == [
        ("2026-11-24", "vm-1", "235910"),
        ("2026-11-24", "vm-2", "235910"),
        ("2026-11-25", "vm-1", "000010"),  # the same VM after midnight is another partition
        ("2026-11-25", "vm_odd_name", "000110"),
    ]
    back = sample_store.read(t - timedelta(hours=1), t + timedelta(hours=1))
    assert back.samples == sorted(samples, key=lambda s: (s.ts, s.vm, s.source, s.metric))
    assert back.bad_lines == 0


def test_read_filters_by_time_and_vm_and_drops_duplicates(sample_store):
    t = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    batch = [_s(t + timedelta(minutes=i), vm, float(i)) for i in range(10) for vm in ("a", "b")]
    for day_vm, group in SampleStore.group(batch).items():
        sample_store.write_group(*day_vm, group)
        sample_store.write_group(*day_vm, group[:3])  # a retried write: stored twice
    got = sample_store.read(t + timedelta(minutes=2), t + timedelta(minutes=5), vms=["b"])
    assert [(s.vm, s.value) for s in got.samples] == [("b", 2.0), ("b", 3.0), ("b", 4.0), ("b", 5.0)]
    assert got.duplicates == 1  # minute 2 of vm b was in both blobs
    assert sample_store.read(t - timedelta(days=2), t - timedelta(days=1)).samples == []


def test_a_line_that_is_not_a_sample_is_counted_not_fatal(sample_store, blob_store):
    t = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    good = _s(t)
    blob_store.put("metrics/2026-11-24/vm-1/100000-" + "a" * 32 + ".jsonl", (good.to_json() + "\n{not json\n").encode())
    got = sample_store.read(t - timedelta(minutes=1), t + timedelta(minutes=1))
    assert got.samples == [good] and got.bad_lines == 1


def test_storage_outage_spools_samples_and_writes_them_when_storage_returns(blob_store, sample_store):
    flaky = FlakyBlobStore(blob_store, failures=3)
    source = ScriptedSource(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    logger = MetricsLogger([source], Spool(SampleStore(flaky)))

    first = logger.run_once()  # storage down: 2 VMs -> the first write fails, everything stays
    assert first.flush.stored == 0 and first.flush.spooled == 4
    assert "test outage" in (first.summary.storage_error or "")
    assert list(blob_store.list("metrics/")) == []

    second = logger.run_once()  # still down (failures 2 and 3)
    assert second.flush.spooled == 8 and flaky.failed_puts == 2

    third = logger.run_once()  # third failure on the first group, then...
    assert third.flush.spooled == 12
    fourth = logger.run_once()  # ...storage is back: all four cycles' samples are written
    assert fourth.flush.spooled == 0 and fourth.flush.stored == 16 and fourth.summary.storage_error is None
    back = sample_store.read(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))
    assert sorted(back.samples, key=lambda s: s.key) == sorted(source.emitted, key=lambda s: s.key)
    assert len(back.samples) == 16


def test_partial_outage_keeps_only_the_unwritten_groups(blob_store, sample_store):
    """The second of two blobs fails: the first is not written twice, the second is kept."""

    class FailSecond(FlakyBlobStore):
        def put(self, name, data, *, overwrite=True):
            self.calls = getattr(self, "calls", 0) + 1
            self.failures = 1 if self.calls == 2 else 0
            super().put(name, data, overwrite=overwrite)

    spool = Spool(SampleStore(FailSecond(blob_store)))
    t = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    spool.add([_s(t, "vm-1"), _s(t, "vm-2")])
    r1 = spool.flush()
    assert (r1.stored, r1.spooled, len(r1.blobs)) == (1, 1, 1)
    r2 = spool.flush()
    assert (r2.stored, r2.spooled) == (1, 0)
    back = sample_store.read(t, t)
    assert [s.vm for s in back.samples] == ["vm-1", "vm-2"] and back.duplicates == 0


def test_real_directory_outage_path_blocked_by_a_file(tmp_path):
    """A FileBlobStore whose metrics directory is replaced by a file fails for real (even as root);
    the spool holds the samples and writes them once the directory is back."""
    store = FileBlobStore(tmp_path / "blobs")
    blocker = tmp_path / "blobs" / "metrics"
    blocker.write_text("not a directory")
    spool = Spool(SampleStore(store))
    t = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    spool.add([_s(t, "vm-1", 7.0)])
    down = spool.flush()
    assert down.stored == 0 and down.spooled == 1 and "cannot write blob" in (down.error or "")
    blocker.unlink()
    up = spool.flush()
    assert up.stored == 1 and up.spooled == 0
    assert [s.value for s in SampleStore(store).read(t, t).samples] == [7.0]
    shutil.rmtree(tmp_path / "blobs")


def test_spool_is_bounded_and_counts_what_it_drops(tmp_path):
    flaky = FlakyBlobStore(FileBlobStore(tmp_path / "b"), failures=10)
    spool = Spool(SampleStore(flaky), max_samples=5)
    t = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    spool.add([_s(t + timedelta(seconds=i), value=float(i)) for i in range(8)])
    r = spool.flush()
    assert r.dropped == 3 and r.spooled == 5
    flaky.failures = 0
    r = spool.flush()
    assert r.dropped == 0 and r.stored == 5
    kept = SampleStore(flaky).read(t, t + timedelta(minutes=1)).samples
    assert [s.value for s in kept] == [3.0, 4.0, 5.0, 6.0, 7.0]  # the newest survive


@pytest.mark.parametrize(
    ("vm", "safe"), [("vm-a", "vm-a"), ("a b/c", "a_b_c"), ("..", "_"), (".hidden", "hidden"), ("", "_")]
)
def test_vm_names_become_one_safe_blob_segment(vm, safe):
    assert blob_vm_name(vm) == safe
