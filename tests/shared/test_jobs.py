"""``rqp.jobs.runs_of``: a chunk's (id, attempt) pairs as runs, whether or not they are the
usual consecutive ids of one attempt (which take a shortcut)."""

from __future__ import annotations

from rqp.jobs import runs_of


def test_consecutive_ids_of_one_attempt_are_one_run() -> None:
    assert runs_of([(i, 1) for i in range(100, 356)]) == ((100, 256, 1),)
    assert runs_of([(7, 3)]) == ((7, 1, 3),)
    assert runs_of([]) == ()


def test_gaps_attempts_and_order_split_runs_as_the_step_by_step_walk_does() -> None:
    # a gap where a malformed record failed at enqueue
    assert runs_of([(0, 1), (1, 1), (3, 1), (4, 1)]) == ((0, 2, 1), (3, 2, 1))
    # same span and count as consecutive ids, but not them: no shortcut
    assert runs_of([(0, 1), (2, 1), (2, 1)]) == ((0, 1, 1), (2, 1, 1), (2, 1, 1))
    # a retry chunk: attempts differ
    assert runs_of([(5, 2), (6, 2), (7, 3)]) == ((5, 2, 2), (7, 1, 3))
    # unsorted input is sorted first
    assert runs_of([(2, 1), (0, 1), (1, 1)]) == ((0, 3, 1),)
