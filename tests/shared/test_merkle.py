"""The Merkle tree of ``rqp.merkle`` is RFC 6962's: its streamed root equals the recursive
definition for every shape, every leaf's audit path leads back to it, a changed leaf or a path
moved to another index does not, and a proof in a 1,000,000-leaf tree is small and fast to check."""

from __future__ import annotations

import hashlib
import time

import pytest

from rqp.merkle import HASH_SIZE, TreeBuilder, audit_path, iter_hashes, leaf_hash, node_hash, root_from_path, tree_root


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962's recursive MTH over leaf hashes, as the reference."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(b"record %d" % i) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
def test_streamed_root_is_rfc6962_and_every_path_leads_to_it(n: int) -> None:
    leaves = _leaves(n)
    root, size = tree_root(leaves)
    assert size == n
    assert root == _mth(leaves)
    for i in range(n):
        leaf, path = audit_path(iter(leaves), i, n)
        assert leaf == leaves[i]
        assert root_from_path(leaf, i, n, path) == root


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9, 31, 33, 100, 257])
@pytest.mark.parametrize("pieces", [(1,), (3,), (4, 1, 7), (64,), (5, 64, 2)])
def test_extend_in_pieces_is_the_rfc6962_root(n: int, pieces: tuple[int, ...]) -> None:
    """``TreeBuilder.extend`` (the results root adds a piece of leaves at a time, reduced level by
    level) gives the recursive MTH whatever the pieces' sizes and where they fall, and mixes with
    ``add``."""
    leaves = _leaves(n)
    b = TreeBuilder()
    at, i = 0, 0
    while at < n:
        size = pieces[i % len(pieces)]
        if i % 3 == 2:
            for leaf in leaves[at : at + size]:
                b.add(leaf)
        else:
            b.extend(leaves[at : at + size])
        at, i = at + size, i + 1
    assert b.size == n
    assert b.root() == (_mth(leaves) if n else hashlib.sha256(b"").digest())


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    # a leaf whose bytes are two hashes does not hash as the node of those two
    assert leaf_hash(a + b) != node_hash(a, b)


def test_a_changed_leaf_or_a_moved_path_does_not_verify() -> None:
    leaves = _leaves(11)
    root, _ = tree_root(leaves)
    leaf, path = audit_path(iter(leaves), 6, 11)
    assert root_from_path(leaf_hash(b"record 6!"), 6, 11, path) != root
    assert root_from_path(leaf, 5, 11, path) != root
    assert root_from_path(leaf, 6, 11, path[:-1]) != root
    assert root_from_path(leaf, 11, 11, path) is None


def test_iter_hashes_reads_leaves_in_pieces_of_any_size() -> None:
    leaves = _leaves(5)
    raw = b"".join(leaves)
    assert list(iter_hashes([raw[:7], raw[7:70], raw[70:]])) == leaves
    with pytest.raises(ValueError, match="stray bytes"):
        list(iter_hashes([raw + b"x"]))


def test_a_proof_in_a_million_leaf_tree_is_small_and_verifies_in_milliseconds() -> None:
    n = 1_000_000
    raw = b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n))
    root, size = tree_root(iter_hashes([raw]))
    assert size == n
    index = 765_432
    leaf, path = audit_path(iter_hashes([raw]), index, n)
    assert len(path) == 20
    proof_bytes = len(path) * HASH_SIZE * 2 + HASH_SIZE * 2  # hex: the path and the leaf, the root
    assert proof_bytes < 2048
    t0 = time.perf_counter()
    for _ in range(100):
        assert root_from_path(leaf, index, n, path) == root
    per_check = (time.perf_counter() - t0) / 100
    assert per_check < 0.005, f"a check took {per_check * 1000:.2f} ms"
