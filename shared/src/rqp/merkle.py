"""Merkle trees over a workload's records, RFC 6962 (RFC 9162) style: what lets one record's result
be checked against a signed root without the others.

Hashing is domain-separated so a leaf can never pass for an inner node (the second-preimage attack
on plain Merkle trees): ``leaf = SHA-256(0x00 || leaf bytes)``, ``node = SHA-256(0x01 || left ||
right)``. The tree over ``n`` leaves splits at the largest power of two below ``n`` -- the shape of
RFC 6962's ``MTH``, so the audit paths and their check are that RFC's, which any language has.

The root is built while the leaves stream past (``TreeBuilder``: a stack of the roots of complete
subtrees, one per bit of ``n``, so 64 hashes of memory for any workload); a path is computed in one
more streaming pass over the leaf hashes (``audit_path``), holding only the few subtrees it needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

__all__ = [
    "HASH_SIZE",
    "LEAF_PREFIX",
    "TreeBuilder",
    "audit_path",
    "iter_hashes",
    "leaf_hash",
    "node_hash",
    "root_from_path",
    "tree_root",
]

#: bytes of one hash (SHA-256)
HASH_SIZE = 32
_LEAF = b"\x00"
#: what ``leaf_hash`` puts before a leaf's bytes (for callers that hash many leaves inline)
LEAF_PREFIX = _LEAF
_NODE = b"\x01"
#: the root of a tree of no leaves (RFC 6962: the hash of the empty string)
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


class TreeBuilder:
    """The root of a tree whose leaf hashes are added one at a time, in order: a stack of
    (size, root) of complete power-of-two subtrees, merged as they pair up."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        #: leaves added so far
        self.size = 0

    def add(self, leaf: bytes) -> None:
        """Add the next leaf's hash (``leaf_hash`` of its bytes)."""
        self._push(1, leaf)

    def extend(self, leaves: list[bytes]) -> None:
        """Add many leaf hashes in order: what ``add`` gives for each, one after another, but
        each complete, aligned power-of-two run of them is reduced level by level (one list
        comprehension per level) instead of one Python call per leaf -- the results root adds a
        whole piece of leaves at a time."""
        at, n = 0, len(leaves)
        while at < n:
            # the largest aligned complete subtree that starts here: a power of two dividing the
            # leaves added so far (any, when none are) and no longer than what is left
            left = n - at
            span = self.size & -self.size if self.size else 1 << (left.bit_length() - 1)
            while span > left:
                span >>= 1
            level = leaves[at : at + span]
            while len(level) > 1:
                pairs = iter(level)
                level = [_sha256(_NODE + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
            self._push(span, level[0])
            at += span

    def _push(self, size: int, h: bytes) -> None:
        """Push the root ``h`` of a complete subtree of ``size`` leaves, merging equal sizes."""
        stack = self._stack
        leaves = size
        while stack and stack[-1][0] == size:
            _, left = stack.pop()
            h = node_hash(left, h)
            size *= 2
        stack.append((size, h))
        self.size += leaves

    def root(self) -> bytes:
        """RFC 6962's ``MTH`` of the leaves added: the complete subtrees folded from the right."""
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def iter_hashes(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Leaf hashes from a stream of bytes (``leaves.bin``: 32 bytes each, in pieces of any size)."""
    rest = b""
    for piece in chunks:
        buf = rest + piece if rest else piece
        end = len(buf) - len(buf) % HASH_SIZE
        for i in range(0, end, HASH_SIZE):
            yield buf[i : i + HASH_SIZE]
        rest = buf[end:]
    if rest:
        raise ValueError(f"a leaf-hash stream ends with {len(rest)} stray bytes (not a multiple of {HASH_SIZE})")


def tree_root(leaves: Iterable[bytes]) -> tuple[bytes, int]:
    """(root, number of leaves) of leaf hashes."""
    b = TreeBuilder()
    for leaf in leaves:
        b.add(leaf)
    return b.root(), b.size


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _sibling_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) of the subtrees on ``index``'s audit path, bottom-up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    out = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def audit_path(leaves: Iterable[bytes], index: int, size: int) -> tuple[bytes, list[bytes]]:
    """(leaf hash of ``index``, its audit path bottom-up) from the tree's leaf hashes in order,
    in one pass: the path's subtrees are disjoint ranges, each built as its leaves go by."""
    ranges = _sibling_ranges(index, size)
    builders = {r: TreeBuilder() for r in ranges}
    order = sorted(ranges)
    own: bytes | None = None
    seen = 0
    at = 0  # the range in ``order`` the current leaf may fall in
    for i, leaf in enumerate(leaves):
        if i >= size:
            raise ValueError(f"the leaf hashes hold more than the tree's {size} leaves")
        seen += 1
        if i == index:
            own = leaf
            continue
        while at < len(order) and i >= order[at][1]:
            at += 1
        if at < len(order) and order[at][0] <= i:
            builders[order[at]].add(leaf)
    if seen != size or own is None:
        raise ValueError(f"the leaf hashes hold {seen} leaves, the tree {size}")
    return own, [builders[r].root() for r in ranges]


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """The root that ``leaf`` at ``index`` of a ``size``-leaf tree and ``path`` lead to (RFC 9162
    section 2.1.3.2), or None when the path does not fit the tree's shape."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
