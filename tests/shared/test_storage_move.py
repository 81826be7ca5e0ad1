"""``BlobStore.move``: what consolidation stages its results under and swaps in once its checks
passed (F10). On a directory it is a rename: the old blob or the whole new one, never a mix."""

from __future__ import annotations

import re

import pytest

from rqp.errors import BlobNotFoundError
from rqp.storage import FileBlobStore
from rqp.storage.retrying import RetryingBlobStore


@pytest.mark.parametrize("wrap", [False, True], ids=["file", "retrying"])
def test_move_replaces_the_target_and_removes_the_source(tmp_path, wrap):
    inner = FileBlobStore(tmp_path / "blobs")
    store = RetryingBlobStore(inner, budget=1.0) if wrap else inner
    store.put("workloads/w1/results.enc", b"old results")
    store.put("workloads/w1/results.enc.staged", b"new results")
    store.move("workloads/w1/results.enc.staged", "workloads/w1/results.enc")
    assert store.get("workloads/w1/results.enc") == b"new results"
    assert not store.exists("workloads/w1/results.enc.staged")
    assert list(store.list("workloads/w1/")) == ["workloads/w1/results.enc"]


def test_moving_a_missing_blob_names_it_and_keeps_the_target(tmp_path):
    store = FileBlobStore(tmp_path / "blobs")
    store.put("workloads/w1/results.enc", b"kept")
    with pytest.raises(BlobNotFoundError, match=re.escape("blob workloads/w1/results.enc.staged not found")):
        store.move("workloads/w1/results.enc.staged", "workloads/w1/results.enc")
    assert store.get("workloads/w1/results.enc") == b"kept"
