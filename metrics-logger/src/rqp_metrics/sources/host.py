"""The machine's own counters via psutil: works on any Linux VM, in any cloud or none.

Network counters come from a ``/proc/net/dev`` file (``RQP_METRICS_NET_DEV``): a process sees its
own network namespace's there, so in a container they are the container's, not the VM's. The
VM Compose files run the logger in the VM's network namespace (``network_mode: host``); a file
of another namespace (a host's ``/proc/1/net/dev`` mounted in) may be named instead.

Disk and network counters are cumulative since boot; a sample is the delta since the previous
collection, so totals over a report window add up exactly. The first collection has no previous
counters, so it measures over a short window of its own (``--once`` still yields real numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil

from ..sample import (
    CPU_PERCENT,
    DISK_READ_BYTES,
    DISK_READ_OPS,
    DISK_USED_PERCENT,
    DISK_WRITE_BYTES,
    DISK_WRITE_OPS,
    MEM_PERCENT,
    MEM_USED_BYTES,
    NET_IN_BYTES,
    NET_OUT_BYTES,
    SOURCE_HOST,
    Sample,
)
from ..settings import DEFAULT_NET_DEV_PATH
from . import Collection

__all__ = ["DEFAULT_NET_DEV_PATH", "FIRST_WINDOW_SECONDS", "HostSource", "read_net_dev"]

#: how long the first collection measures CPU and I/O when there is no previous reading
FIRST_WINDOW_SECONDS = 0.5
#: the file system whose fullness is reported
DEFAULT_DISK_PATH = "/"
#: interfaces that are not the machine's own traffic: loopback, and the virtual ones container
#: engines and traffic shaping add (a container's packets cross its veth, the bridge and the NIC:
#: counting all three would triple them)
VIRTUAL_NIC_PREFIXES = ("lo", "veth", "docker", "br-", "cni", "podman", "virbr", "vnet", "flannel", "cali", "ifb")


@dataclass(frozen=True)
class _Counters:
    mono: float
    disk: tuple[int, int, int, int] | None  # read bytes, write bytes, read ops, write ops
    net: tuple[int, int]  # bytes received, bytes sent


def read_net_dev(path: str) -> tuple[int, int]:
    """Bytes received and sent by the machine's own interfaces, from a ``/proc/net/dev`` file:
    two header lines, then ``name: rx_bytes rx_packets ... (8 fields) tx_bytes ...``."""
    rx = tx = 0
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f.read().splitlines()[2:]:
            name, sep, counters = line.partition(":")
            fields = counters.split()
            if not sep or len(fields) < 9 or name.strip().startswith(VIRTUAL_NIC_PREFIXES):
                continue
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def _read_counters(net_dev: str) -> _Counters:
    d = psutil.disk_io_counters(perdisk=False)
    disk = None if d is None else (d.read_bytes, d.write_bytes, d.read_count, d.write_count)
    return _Counters(time.monotonic(), disk, read_net_dev(net_dev))


class HostSource:
    """Samples of this machine, filed under ``vm_name`` (its host name by default)."""

    name = SOURCE_HOST

    def __init__(
        self,
        vm_name: str,
        *,
        disk_path: str = DEFAULT_DISK_PATH,
        net_dev: str = DEFAULT_NET_DEV_PATH,
        first_window: float = FIRST_WINDOW_SECONDS,
    ) -> None:
        self.vm_name = vm_name
        self._disk_path = disk_path
        self.net_dev = net_dev
        self._first_window = first_window
        self._prev: _Counters | None = None

    def collect(self) -> Collection:
        out = Collection()
        if self._prev is None:
            psutil.cpu_percent(interval=None)  # start psutil's CPU accounting
            self._prev = _read_counters(self.net_dev)
            time.sleep(self._first_window)  # a measurement window, not synchronisation
        cpu = psutil.cpu_percent(interval=None)
        now = _read_counters(self.net_dev)
        ts = datetime.now(UTC)
        prev, self._prev = self._prev, now
        period = round(max(now.mono - prev.mono, 1e-3), 3)

        def add(metric: str, value: float, unit: str, per: float | None = None) -> None:
            out.samples.append(Sample(ts, self.vm_name, SOURCE_HOST, metric, float(value), unit, per))

        add(CPU_PERCENT, cpu, "Percent", period)
        mem = psutil.virtual_memory()
        add(MEM_PERCENT, mem.percent, "Percent")
        add(MEM_USED_BYTES, mem.total - mem.available, "Bytes")
        try:
            add(DISK_USED_PERCENT, psutil.disk_usage(self._disk_path).percent, "Percent")
        except OSError as exc:
            out.warnings.append(f"host {self.vm_name}: cannot read usage of {self._disk_path} ({exc.strerror})")

        if now.disk is None or prev.disk is None:
            out.warnings.append(f"host {self.vm_name}: no disk I/O counters on this machine; disk samples skipped")
        else:
            dr, dw, dro, dwo = (b - a for a, b in zip(prev.disk, now.disk, strict=True))
            if min(dr, dw, dro, dwo) < 0:
                out.warnings.append(
                    f"host {self.vm_name}: disk counters went backwards (reset); disk samples skipped this cycle"
                )
            else:
                add(DISK_READ_BYTES, dr, "Bytes", period)
                add(DISK_WRITE_BYTES, dw, "Bytes", period)
                add(DISK_READ_OPS, dro / period, "CountPerSecond", period)
                add(DISK_WRITE_OPS, dwo / period, "CountPerSecond", period)

        rx, tx = (b - a for a, b in zip(prev.net, now.net, strict=True))
        if min(rx, tx) < 0:
            out.warnings.append(
                f"host {self.vm_name}: network counters went backwards (interface change); network samples skipped this cycle"
            )
        else:
            add(NET_IN_BYTES, rx, "Bytes", period)
            add(NET_OUT_BYTES, tx, "Bytes", period)
        return out

    def close(self) -> None:
        pass
