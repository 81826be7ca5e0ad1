"""Cost by VM (issue #27 item 6): processor hosts (containers, with random host names) grouped by
the VM their processor said it runs on, labelled Spot or regular; junk in a label only ever
shows a host as itself, unlabelled."""

from __future__ import annotations

from rqp.status import ChunkNote
from rqp.vms import VmLabel, by_vm, processor_seconds_by_host, record_vm, vm_key, vm_labels


def _note(worker: str | None, started: float | None, finished: float | None) -> ChunkNote:
    return ChunkNote("c00000000", "rqp-w-c00000000-0", ((0, 1, 1),), (), None, started, finished, worker)


def test_seconds_are_summed_by_the_vm_each_host_runs_on(r):
    notes = [_note("a1b2:7", 10.0, 12.5), _note("c3d4:7", 0.0, 1.0), _note("a1b2:8", 5.0, 6.0), _note(None, 0, 9)]
    ran = processor_seconds_by_host(notes)
    assert ran == {"a1b2": 3.5, "c3d4": 1.0}
    record_vm(r, "a1b2", VmLabel("vmss_3", "spot"))
    record_vm(r, "c3d4", VmLabel("vmss_3", "spot"))
    labels = vm_labels(r, [*ran, "e5f6"])
    assert labels["e5f6"] == VmLabel("e5f6")  # a processor that knew no VM: shown as its host
    assert by_vm(ran, labels) == {"vmss_3": 4.5}
    assert 0 < r.ttl(vm_key("a1b2")) <= 30 * 24 * 3600  # outlives an evicted VM for a while, not for ever


def test_junk_in_a_label_shows_the_host_unlabelled(r):
    junk = [b"\xff", b"[]", b'{"vm": 7, "priority": "spot"}', b'{"vm": "' + b"v" * 500 + b'"}', b'{"vm": "\\n"}']
    for i, value in enumerate(junk):
        r.set(vm_key(f"h{i}"), value)
    r.set(vm_key("ok"), b'{"vm": "vm-1", "priority": "moon"}')
    labels = vm_labels(r, [f"h{i}" for i in range(len(junk))] + ["ok"])
    assert [labels[f"h{i}"].vm for i in range(len(junk))] == [f"h{i}" for i in range(len(junk))]
    assert labels["h2"].priority == "spot"  # a readable priority stays, beside the host's own name
    assert labels["ok"] == VmLabel("vm-1", "")  # an unknown priority reads as unknown
