"""What the console's manifest reads cost (#29 atk4 B5): since the last round it reads each ended
workload's manifest to key its summary by generation. Each is now read at most once per
``GENERATION_SECONDS`` whoever asks (the list, the page, its start notes), parsed again only when
its bytes change, and a new generation or a junk manifest still shows once that second is over."""

from __future__ import annotations

import time
from types import SimpleNamespace

from rqp.storage import FileBlobStore
from rqp.workload import blob_name
from rqp_console import sealed, workload_page
from rqp_console.sealed import GENERATION_SECONDS, Opener
from rqp_console.workload_page import PACKED_AT_SECONDS, ManifestTimes

SCRIPT = "def process(r):\n    return r['n']\n"
MANIFEST = blob_name("reads", "manifest.json")


class CountingStore(FileBlobStore):
    """The world's blob directory, counting the reads of one blob."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads = 0

    def get(self, name: str) -> bytes:
        self.reads += name == MANIFEST
        return super().get(name)


class Clock:
    """The caches' clock, moved by the test (what is tested is how long a read is kept)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_the_list_and_a_page_read_a_manifest_once_a_second_between_them(world, proc, monkeypatch):
    world.run_to_end(world.run(world.pack("reads", [{"n": i} for i in range(4)], SCRIPT)), proc)
    clock = Clock()
    monkeypatch.setattr(sealed, "time", SimpleNamespace(monotonic=clock.monotonic, time=time.time))
    store = CountingStore(world.store.root)
    opener = Opener(store, world.keys, world.trust(), world.r)
    first = opener.summary("reads")
    assert first is not None and first.done == 4
    for _ in range(20):  # a list refresh, a page, its start notes, many tabs: all within the second
        assert opener.summary("reads") is first
        opener.workload("reads")
    assert store.reads == 1 + 1  # the generation, and Workload.open's own read when it was opened
    clock.now += GENERATION_SECONDS
    assert opener.summary("reads") is first and store.reads == 3  # read again, unchanged: the same summary
    store.put(MANIFEST, b"null")  # a blob-store writer
    assert opener.summary("reads") is first  # within the second: as the answers, kept that long
    clock.now += GENERATION_SECONDS
    assert opener.summary("reads") is None
    assert opener.unreadable["reads"].startswith("manifest.json of workload reads is not a manifest (JSON null")


def test_packing_times_are_read_once_a_second_and_parsed_when_changed(world, monkeypatch):
    world.pack("reads", [{"n": 1}], SCRIPT)
    clock = Clock()
    monkeypatch.setattr(workload_page, "time", SimpleNamespace(monotonic=clock.monotonic, time=time.time))
    store = CountingStore(world.store.root)
    times = ManifestTimes(store)
    packed = times.packed_at("reads")
    assert isinstance(packed, float) and times.unreadable("reads") is None
    for _ in range(20):
        assert times.packed_at("reads") == packed
    assert store.reads == 1
    store.put(MANIFEST, store.get(MANIFEST).replace(b'"created": ', b'"created": 1e999, "x": ', 1))
    clock.now += PACKED_AT_SECONDS
    assert times.packed_at("reads") is None and "1e999" in (times.unreadable("reads") or "")
