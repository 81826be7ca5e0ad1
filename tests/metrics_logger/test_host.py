"""The host source on the real machine, through psutil."""

from __future__ import annotations

import os
import time

import psutil

from rqp_metrics.sample import (
    CPU_PERCENT,
    DISK_READ_BYTES,
    DISK_USED_PERCENT,
    DISK_WRITE_BYTES,
    DISK_WRITE_OPS,
    MEM_PERCENT,
    MEM_USED_BYTES,
    NET_IN_BYTES,
    NET_OUT_BYTES,
    SOURCE_HOST,
)
from rqp_metrics.sources.host import FIRST_WINDOW_SECONDS, HostSource

BUSY_SECONDS = 0.6
WRITE_BYTES = 8 << 20


def _by_metric(samples):
    return {s.metric: s for s in samples}


def test_first_collection_has_sane_cpu_memory_disk_and_network_samples():
    out = HostSource("host-under-test").collect()
    m = _by_metric(out.samples)
    for metric in (CPU_PERCENT, MEM_PERCENT, MEM_USED_BYTES, DISK_USED_PERCENT, NET_IN_BYTES, NET_OUT_BYTES):
        assert metric in m, metric
    assert all(s.vm == "host-under-test" and s.source == SOURCE_HOST for s in out.samples)
    assert 0.0 <= m[CPU_PERCENT].value <= 100.0
    assert 0.0 < m[MEM_PERCENT].value <= 100.0
    assert 0 < m[MEM_USED_BYTES].value <= psutil.virtual_memory().total
    assert 0.0 < m[DISK_USED_PERCENT].value <= 100.0
    assert m[NET_IN_BYTES].value >= 0 and m[NET_OUT_BYTES].value >= 0
    # the first collection measures over its own short window
    assert FIRST_WINDOW_SECONDS * 0.9 <= m[CPU_PERCENT].period <= FIRST_WINDOW_SECONDS + 5
    if psutil.disk_io_counters() is None:
        assert any("no disk I/O counters" in w for w in out.warnings)
    else:
        assert m[DISK_READ_BYTES].value >= 0 and m[DISK_WRITE_BYTES].value >= 0


def test_second_collection_sees_cpu_work_and_disk_writes_done_in_between(tmp_path):
    src = HostSource("host-under-test")
    src.collect()
    deadline = time.monotonic() + BUSY_SECONDS
    n = 0
    while time.monotonic() < deadline:  # keep one core busy
        n += 1
    with open(tmp_path / "io.bin", "wb") as fh:
        fh.write(os.urandom(WRITE_BYTES))
        fh.flush()
        os.fsync(fh.fileno())
    out = src.collect()
    m = _by_metric(out.samples)
    assert m[CPU_PERCENT].period >= BUSY_SECONDS
    # one of the machine's cores was busy for the whole window
    assert m[CPU_PERCENT].value >= 100.0 / psutil.cpu_count() * 0.5
    assert m[DISK_WRITE_BYTES].value >= WRITE_BYTES
    assert m[DISK_WRITE_OPS].value > 0 and m[DISK_WRITE_OPS].unit == "CountPerSecond"
