"""What a run cost, by VM: processor-seconds per processor VM and whether each VM was Spot.

Running batch work on your own VMs is about cost, and Spot VMs are the cheap ones that get
evicted: the workload summary (and the console) say, per VM, how many processor-seconds its
workers spent on the workload's committed chunks and whether the VM was Spot, so a user sees what
a run cost and what its evictions cost.

The seconds come from the committed chunks' sealed notes (when and on which ``host:pid`` each
chunk ran), so they are what the workers did, not what Redis says. Whether a VM is Spot cannot
come from there: each processor says so at start (``RQP_VM_PRIORITY``, or the instance metadata's
``compute.priority``) in ``rqp:vm:<host>``, kept ``VM_TTL_SECONDS`` after its last start so the
label outlives an evicted VM until its workloads are summarised. That label is plain: a Redis
writer can change only the "spot" shown beside a VM's seconds.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from .status import ChunkNote

__all__ = [
    "PRIORITIES",
    "VM_KEY_PREFIX",
    "VM_TTL_SECONDS",
    "processor_seconds_by_vm",
    "record_vm",
    "vm_key",
    "vm_priorities",
]

VM_KEY_PREFIX = "rqp:vm:"
#: how long a VM's Spot label is kept after its processor last started
VM_TTL_SECONDS = 30 * 24 * 3600
#: the labels a processor writes ("" when it does not know)
PRIORITIES = ("spot", "regular")


def vm_key(host: str) -> str:
    """String: "spot" or "regular", the priority of processor VM ``host``."""
    return f"{VM_KEY_PREFIX}{host}"


def record_vm(r: redis.Redis, host: str, priority: str) -> None:
    """Say at processor start whether this VM is Spot (nothing when unknown). Best effort."""
    if priority in PRIORITIES:
        try:
            r.set(vm_key(host), priority, ex=VM_TTL_SECONDS)
        except redis.RedisError:
            pass  # the summary then shows the VM's seconds without a label


def vm_priorities(r: redis.Redis, hosts: Iterable[str]) -> dict[str, str]:
    """Each host's label; "" for one unknown, junk (not rqp's) or unreadable."""
    names = sorted(set(hosts))
    if not names:
        return {}
    try:  # GETs in one round trip (no role's Redis user may MGET); advisory: a failure only drops the labels
        pipe = r.pipeline(transaction=False)
        for h in names:
            pipe.get(vm_key(h))
        values = pipe.execute()
    except redis.RedisError:
        return dict.fromkeys(names, "")
    out = {}
    for host, v in zip(names, values, strict=True):
        label = v.decode(errors="replace") if isinstance(v, bytes) else (v or "")
        out[host] = label if label in PRIORITIES else ""
    return out


def processor_seconds_by_vm(notes: Iterable[ChunkNote]) -> dict[str, float]:
    """Seconds the workers of each host spent on the committed chunks of ``notes``."""
    out: dict[str, float] = {}
    for note in notes:
        if not note.worker or note.started_at is None or note.finished_at is None:
            continue
        host = note.worker.rpartition(":")[0] or note.worker
        out[host] = out.get(host, 0.0) + max(0.0, note.finished_at - note.started_at)
    return {h: round(s, 3) for h, s in sorted(out.items())}
