"""What becomes of one record after an attempt: done, queued again, or failed for good.

One rule for both roles: the processor applies it to each record of a chunk it ran, and the
scheduler to each record of a chunk whose worker died or whose job was lost.
"""

from __future__ import annotations

from enum import StrEnum

from .sandbox import OK, RETRYABLE

__all__ = ["Decision", "decide", "may_retry"]


class Decision(StrEnum):
    DONE = "done"
    RETRY = "retry"
    FAIL = "fail"


def may_retry(attempt: int, max_attempts: int) -> bool:
    """Whether a record whose attempt number ``attempt`` failed gets another (``attempt + 1``)."""
    return attempt < max_attempts


def decide(kind: int, attempt: int, max_attempts: int) -> Decision:
    """The record's fate from its outcome ``kind`` (``rqp.sandbox``'s OK, RAISED, ...; any other
    value is a failure decided before the script saw the record, which is never retried). Only
    ``RETRYABLE`` kinds are tried again: a result over ``RQP_MAX_RESULT_BYTES`` (``TOO_LARGE``),
    like a malformed record or a permanent error, would only be repeated."""
    if kind == OK:
        return Decision.DONE
    if kind in RETRYABLE and may_retry(attempt, max_attempts):
        return Decision.RETRY
    return Decision.FAIL
