"""``BlobStore.move`` on Azure (the default: a streamed copy, the final name written last, then
the staged blob deleted), against a real Azurite: what consolidation swaps its results in with."""

from __future__ import annotations

import os

import pytest

from rqp.errors import BlobNotFoundError

from .test_blob import BLOCK


def test_move_copies_in_blocks_then_deletes_the_source(store):
    data = os.urandom(BLOCK * 5 + 17)  # several blocks: streamed, never held whole
    store.put("workloads/w1/results.enc", b"old results")
    store.put("workloads/w1/results.enc.staged", data)
    store.move("workloads/w1/results.enc.staged", "workloads/w1/results.enc")
    assert store.get("workloads/w1/results.enc") == data
    assert not store.exists("workloads/w1/results.enc.staged")


def test_moving_a_missing_blob_keeps_the_target(store):
    store.put("workloads/w1/results.enc", b"kept")
    with pytest.raises(BlobNotFoundError):
        store.move("workloads/w1/results.enc.staged", "workloads/w1/results.enc")
    assert store.get("workloads/w1/results.enc") == b"kept"
