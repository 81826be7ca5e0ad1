from rqp.storage import FileBlobStore


def test_list_by_prefix_walks_only_the_named_folder(tmp_path, monkeypatch):
    store = FileBlobStore(tmp_path / "blobs")
    for name in (
        "workloads/a/parts/c1.part",
        "workloads/a/parts/c2.part",
        "workloads/a/results.enc",
        "workloads/ab/parts/c1.part",
        "metrics/2026-11-25/vm1.jsonl",
        "top.txt",
    ):
        store.put(name, b"x")
    assert list(store.list("workloads/a/parts/")) == ["workloads/a/parts/c1.part", "workloads/a/parts/c2.part"]
    assert list(store.list("workloads/a/")) == [
        "workloads/a/parts/c1.part",
        "workloads/a/parts/c2.part",
        "workloads/a/results.enc",
    ]
    assert list(store.list("workloads/a")) == [  # a plain name prefix matches siblings too
        "workloads/a/parts/c1.part",
        "workloads/a/parts/c2.part",
        "workloads/a/results.enc",
        "workloads/ab/parts/c1.part",
    ]
    assert list(store.list("workloads/missing/")) == []
    assert len(list(store.list())) == 6
    assert list(store.list("../blobs/")) == []  # never outside the store

    import os

    walked = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, *a, **k: (walked.append(str(top)), real_walk(top, *a, **k))[1])
    list(store.list("workloads/a/parts/"))
    assert walked == [str(tmp_path / "blobs" / "workloads" / "a" / "parts")]


def test_delete_many_and_prefetch_defaults_hold_for_every_store(tmp_path):
    """The BlobStore defaults (one delete at a time; prefetch a hint that changes nothing) as a
    directory store and the retrying wrapper inherit them: ``get`` answers the same with or
    without the hint, and absent names are not an error."""
    from rqp.storage.retrying import RetryingBlobStore

    for store in (FileBlobStore(tmp_path / "plain"), RetryingBlobStore(FileBlobStore(tmp_path / "retry"))):
        for i in range(3):
            store.put(f"parts/{i}", bytes([i]))
        store.put("keep", b"k")
        store.prefetch(["parts/2", "parts/0", "missing"])
        assert [store.get(f"parts/{i}") for i in range(3)] == [b"\x00", b"\x01", b"\x02"]
        assert store.delete_many(["parts/0", "never-was"]) == 2
        assert store.delete_prefix("parts/") == 2
        assert list(store.list()) == ["keep"]
