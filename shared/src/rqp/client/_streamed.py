"""What a streamed result carries so it can be checked against the workload's signed root once
the root exists (issue #29 item 4).

``Workload.stream()`` yields results before consolidation, so before the results root is signed.
Each one it yields is a ``StreamedResult``: the record as a plain dict (``{"id", "result"}``,
``"key"`` with ``--id-field``, or ``{"id", "error"}``), equal to what ``results()`` gives, plus a
``leaf`` attribute -- the leaf inputs the stream saw: the record id, its key, and the kind and
SHA-256 digest of its result as ``rqp.results_root`` hashes it (canonical JSON; the printed line
for a result that is not JSON). The record's input digest is not in it: only the scheduler can
compute that (it is keyed from the workload's data key) and it is in ``inputs.bin`` beside the
root.

A consumer that keeps streamed results elsewhere (a database, a queue) keeps ``r.leaf.to_dict()``
with each, e.g. as ``{**r, "leaf": r.leaf.to_dict()}``; ``Workload.verify_streamed`` takes either
form once the workload has ended and names each record that was changed after it was streamed
(its value no longer hashes to the digest it came with) or that the fleet did not sign as it was
streamed (the digest it came with is not its leaf's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError, WorkloadError
from ..results_root import row_leaf
from ..verification import Row

__all__ = ["LEAF_FIELD", "StreamedLeaf", "StreamedResult", "changed_after_streaming"]

#: the field a stored streamed result keeps its leaf inputs in (``{**r, "leaf": r.leaf.to_dict()}``)
LEAF_FIELD = "leaf"


@dataclass(frozen=True)
class StreamedLeaf:
    """A streamed record's leaf inputs as the stream saw them (see the module's docstring)."""

    id: int
    key: str | None
    kind: str
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "kind": self.kind, "digest": self.digest}

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> StreamedLeaf:
        """The leaf inputs of a results record (``{"id", "result"}`` / ``{"id", "error"}``)."""
        kind, digest = row_leaf(dict(doc))
        key = doc.get("key")
        return cls(int(doc["id"]), None if key is None else str(key), kind, digest)

    @classmethod
    def from_dict(cls, doc: Any) -> StreamedLeaf:
        try:
            key = doc.get("key")
            return cls(int(doc["id"]), None if key is None else str(key), str(doc["kind"]), str(doc["digest"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise WorkloadError(
                f"a streamed result's {LEAF_FIELD!r} is not what Workload.stream() gave ({str(doc)[:80]}); "
                f"keep r.leaf.to_dict() with each streamed result"
            ) from None


class StreamedResult(dict[str, Any]):
    """A streamed record (a plain dict, equal to the consolidated one) with its ``leaf``."""

    leaf: StreamedLeaf

    @classmethod
    def of(cls, doc: dict[str, Any]) -> StreamedResult:
        out = cls(doc)
        out.leaf = StreamedLeaf.of(doc)
        return out


def _leaf_of(item: Mapping[str, Any]) -> tuple[StreamedLeaf, dict[str, Any]]:
    """(the leaf the item was streamed with, the item's record without it)."""
    leaf = getattr(item, "leaf", None)
    record = {k: v for k, v in item.items() if k != LEAF_FIELD}
    if isinstance(leaf, StreamedLeaf):
        return leaf, record
    if LEAF_FIELD not in item:
        raise WorkloadError(
            f"record {item.get('id')!r} carries no leaf inputs: give what Workload.stream() yielded, or keep "
            f"r.leaf.to_dict() as {LEAF_FIELD!r} with each streamed result"
        )
    return StreamedLeaf.from_dict(item[LEAF_FIELD]), record


#: the fields of a streamed record (``key`` too with ``--id-field``)
_FIELDS = ({"id", "result"}, {"id", "error"})


def _hashes(record: dict[str, Any]) -> bool:
    """Whether ``record`` can be hashed at all (its value is JSON rqp could have written)."""
    try:
        StreamedLeaf.of(record)
    except (TypeError, ValueError, KeyError, RecursionError):
        return False
    return True


def changed_after_streaming(items: Iterable[Mapping[str, Any]]) -> tuple[list[Row], list[str]]:
    """The rows to check against the root -- each as it was streamed (its carried leaf inputs) --
    and a problem naming each record whose value no longer hashes to the digest it came with."""
    rows: list[Row] = []
    problems: list[str] = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise IntegrityError(
                f"streamed item {n} is a {type(item).__name__}, not a record: give what Workload.stream() yielded"
            )
        leaf, record = _leaf_of(item)
        fields = set(record) - ({"key"} if leaf.key is not None else set())
        if fields not in _FIELDS:
            problems.append(
                f"record {leaf.id} carries fields rqp does not stream ({', '.join(sorted(map(str, record)))[:80]}): "
                f"changed after it was streamed"
            )
        elif not _hashes(record):
            problems.append(
                f"record {leaf.id} holds a value that is not JSON rqp could have streamed (NaN, too deep, not "
                f"serializable): changed after it was streamed"
            )
        elif record.get("id") != leaf.id or isinstance(record.get("id"), bool):
            problems.append(f"record {leaf.id} was streamed but now says it is record {record.get('id')!r}")
        elif StreamedLeaf.of(record) != leaf:
            problems.append(
                f"record {leaf.id} was changed after it was streamed (its value or key no longer hashes to the "
                f"digest it was streamed with)"
            )
        rows.append(Row(leaf.id, leaf.key, [(leaf.kind, leaf.digest)]))
    return rows, problems
