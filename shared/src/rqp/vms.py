"""What a run cost, by VM: processor-seconds per processor VM and whether each VM was Spot.

Running batch work on your own VMs is about cost, and Spot VMs are the cheap ones that get
evicted: the workload summary (and the console) say, per VM, how many processor-seconds its
workers spent on the workload's committed chunks, how many its drains lost (chunks handed back,
to re-run whole elsewhere: what its evictions cost) and whether the VM was Spot.

The seconds come from the committed chunks' sealed notes (when and on which ``host:pid`` each
chunk ran) and from the drains' ``drained_seconds:<host>`` (``rqp.ledger``). A processor's host
name is not its VM's: in a container it is a random id. So each processor that knows its VM
(``RQP_VM_NAME``, the instance metadata's ``compute.name`` when ``RQP_SCHEDULED_EVENTS_URL`` is
set, or ``RQP_VM_PRIORITY``) says at start, in ``rqp:vm:<host>``, which VM it runs on and whether
that VM is Spot, kept ``VM_TTL_SECONDS`` so the label outlives an evicted VM until its workloads
are summarised; hosts without one are shown as themselves. That label is plain: a Redis writer
can change only which VM name and "spot" a host's seconds are shown under.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

from .status import ChunkNote

__all__ = [
    "PRIORITIES",
    "VM_KEY_PREFIX",
    "VM_TTL_SECONDS",
    "VmLabel",
    "by_vm",
    "processor_seconds_by_host",
    "record_vm",
    "vm_key",
    "vm_labels",
]

VM_KEY_PREFIX = "rqp:vm:"
#: how long a host's VM label is kept after its processor last started
VM_TTL_SECONDS = 30 * 24 * 3600
#: the priorities a processor writes ("" when it does not know)
PRIORITIES = ("spot", "regular")
#: the longest VM name kept (Azure's are at most 64 characters)
MAX_VM_NAME = 80


@dataclass(frozen=True)
class VmLabel:
    """The VM a processor host runs on, and whether it is Spot ("spot", "regular", "" unknown)."""

    vm: str
    priority: str = ""


def vm_key(host: str) -> str:
    """String: JSON ``{"vm": name, "priority": "spot"|"regular"|""}`` for processor host ``host``."""
    return f"{VM_KEY_PREFIX}{host}"


def record_vm(r: redis.Redis, host: str, label: VmLabel) -> None:
    """Say at processor start which VM this host is and whether it is Spot. Best effort."""
    value = json.dumps({"vm": label.vm[:MAX_VM_NAME], "priority": label.priority})
    try:
        r.set(vm_key(host), value, ex=VM_TTL_SECONDS)
    except redis.RedisError:
        pass  # the summary then shows the host's seconds under its own name, unlabelled


def _label(host: str, raw: object) -> VmLabel:
    """The label stored for ``host``; the host itself, unlabelled, for none or junk."""
    try:
        doc = json.loads(raw) if isinstance(raw, (bytes, str)) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return VmLabel(host)
    vm, priority = doc.get("vm"), doc.get("priority")
    vm = vm if isinstance(vm, str) and 0 < len(vm) <= MAX_VM_NAME and vm.isprintable() else host
    return VmLabel(vm, priority if priority in PRIORITIES else "")


def vm_labels(r: redis.Redis, hosts: Iterable[str]) -> dict[str, VmLabel]:
    """Each host's label: in one round trip (GETs: no role's Redis user may MGET); advisory, so
    an error only leaves the hosts unlabelled."""
    names = sorted(set(hosts))
    if not names:
        return {}
    try:
        pipe = r.pipeline(transaction=False)
        for h in names:
            pipe.get(vm_key(h))
        values = pipe.execute()
    except redis.RedisError:
        values = [None] * len(names)
    return {h: _label(h, v) for h, v in zip(names, values, strict=True)}


def processor_seconds_by_host(notes: Iterable[ChunkNote]) -> dict[str, float]:
    """Seconds the workers of each host spent on the committed chunks of ``notes``."""
    out: dict[str, float] = {}
    for note in notes:
        if not note.worker or note.started_at is None or note.finished_at is None:
            continue
        host = note.worker.rpartition(":")[0] or note.worker
        out[host] = out.get(host, 0.0) + max(0.0, note.finished_at - note.started_at)
    return out


def by_vm(seconds: Mapping[str, float], labels: Mapping[str, VmLabel]) -> dict[str, float]:
    """Per-host seconds summed by the VM each host runs on. A sum that is not finite (hosts a
    Redis writer labelled as one VM, each with a huge plain count) is left out: it would be sealed
    into the summary as a non-standard ``Infinity``."""
    out: dict[str, float] = {}
    for host, s in seconds.items():
        vm = labels.get(host, VmLabel(host)).vm
        out[vm] = out.get(vm, 0.0) + s
    return {vm: round(s, 3) for vm, s in sorted(out.items()) if math.isfinite(s)}
