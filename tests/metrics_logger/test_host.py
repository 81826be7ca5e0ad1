"""The host source on the real machine, through psutil."""

from __future__ import annotations

import os
import time

import psutil
import pytest

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


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0
  eth0: {rx} 20 0 0 0 0 0 0 {tx} 30 0 0 0 0 0 0
docker0: {rx} 20 0 0 0 0 0 0 {tx} 30 0 0 0 0 0 0
vethab12: {rx} 20 0 0 0 0 0 0 {tx} 30 0 0 0 0 0 0
"""


def test_network_is_read_from_the_configured_net_dev_file_counting_only_the_vms_own_nics(tmp_path):
    """Issue 24 item 23: in a container /proc/net/dev is the container's; the logger reads the file
    it is told (the VM's namespace), and counts the NIC, not loopback nor the engine's bridge and veths."""
    f = tmp_path / "net_dev"
    f.write_text(NET_DEV.format(lo=5_000_000, rx=161_000_000, tx=9_000_000))
    src = HostSource("vm", net_dev=str(f), first_window=0.0)
    src.collect()
    f.write_text(NET_DEV.format(lo=9_000_000, rx=161_804_254, tx=9_000_500))
    m = _by_metric(src.collect().samples)
    assert (m[NET_IN_BYTES].value, m[NET_OUT_BYTES].value) == (804_254, 500)


def test_the_net_dev_setting_is_read_and_checked(tmp_path):
    from rqp.errors import ConfigError
    from rqp_metrics.settings import DEFAULT_NET_DEV_PATH, MetricsSettings

    assert MetricsSettings.from_env(env={}).net_dev == DEFAULT_NET_DEV_PATH == "/proc/net/dev"
    f = tmp_path / "dev"
    f.write_text(NET_DEV.format(lo=1, rx=2, tx=3))
    assert MetricsSettings.from_env(env={"RQP_METRICS_NET_DEV": str(f)}).net_dev == str(f)
    with pytest.raises(ConfigError, match=r"RQP_METRICS_NET_DEV=/nonexistent/dev cannot be read"):
        MetricsSettings.from_env(env={"RQP_METRICS_NET_DEV": "/nonexistent/dev"})
