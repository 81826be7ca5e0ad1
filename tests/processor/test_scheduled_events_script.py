"""The fake metadata service run as a script (``tools/test-vms.sh`` runs it on the test LAN's own
address for processor VM 2): it announces an eviction when told on stdin, reports each
acknowledgement on stdout, clears the events once the VM is gone, and refuses the link-local
metadata address outright."""

from __future__ import annotations

import os
import threading
import time

import pytest
from scheduled_events import FakeScheduledEvents, serve

from rqp_processor.evictions import ScheduledEvents, find_notice


class Lines:
    """stdout for ``serve``: the lines written, and a wait for one that starts with a word."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._partial = ""

    def write(self, text: str) -> None:
        with self._changed:
            self._partial += text
            *done, self._partial = self._partial.split("\n")
            self.lines += done
            self._changed.notify_all()

    def flush(self) -> None:
        pass

    def wait_for(self, word: str, timeout: float = 10.0) -> list[str]:
        with self._changed:
            ok = self._changed.wait_for(lambda: any(x.split()[:1] == [word] for x in self.lines), timeout)
        assert ok, f"no '{word}' line within {timeout}s: {self.lines}"
        return next(x for x in self.lines if x.split()[:1] == [word]).split()


def test_the_script_announces_on_command_reports_acknowledgements_and_clears():
    read_fd, write_fd = os.pipe()
    commands, out = os.fdopen(read_fd), Lines()
    svc = FakeScheduledEvents("Spot", "vm-2")
    runner = threading.Thread(target=serve, args=(svc, commands, out), daemon=True)
    runner.start()
    with os.fdopen(write_fd, "w") as stdin:
        url = out.wait_for("serving")[1]
        events = ScheduledEvents(url)
        assert events.document()["Events"] == []
        label = events.compute()
        assert label is not None and (label.vm, label.priority) == ("vm-2", "spot")
        stdin.write("announce Preempt 6 vm-2\n")
        stdin.flush()
        _, eid, at = out.wait_for("announced")
        notice = find_notice(events.document(), "vm-2", ("Preempt",))
        assert notice is not None and notice.event_id == eid
        assert 4 <= notice.not_before - float(at) <= 6  # NotBefore is whole seconds
        events.acknowledge(eid)
        _, acked, acked_at = out.wait_for("acknowledged")
        # the script prints its time rounded to the millisecond, which can be up to 0.5 ms ahead
        assert acked == eid and float(acked_at) <= time.time() + 0.0005
        stdin.write("clear\n")
        stdin.flush()
        out.wait_for("cleared")
        assert events.document()["Events"] == []  # the VM is gone: its event is over
    runner.join(10)
    assert not runner.is_alive(), "the stub did not stop when its commands ended"


def test_the_stub_refuses_the_link_local_metadata_address():
    with pytest.raises(ValueError, match="link-local"):
        FakeScheduledEvents(host="169.254.169.254")
