from rqp.status import StatusRecord


def test_fast_formatter_is_byte_identical_to_to_json():
    for queued, started, finished, worker in [(None, 1.5, 2.25, "h:1"), (1795565271.0219517, 1795565271.1, None, None)]:
        slow = StatusRecord("w1", 7, "done", 2, None, queued, started, finished, worker, "rqp-w1-c00000001-0").to_json()
        fast = StatusRecord.formatter("w1", "done", queued, started, worker, "rqp-w1-c00000001-0")(7, 2, finished)
        assert fast == slow
        assert StatusRecord.from_json(fast).finished_at == finished


def test_error_text_is_escaped():
    raw = StatusRecord("w1", 1, "failed", 1, 'bad "quote"\nnewline', None, None, None, None, None).to_json()
    assert StatusRecord.from_json(raw).error == 'bad "quote"\nnewline'


def test_an_ended_workloads_counts_are_the_sealed_summarys():
    """Issue #22 item 3: forged counters (done +10, failed -1,000,000) never reach the report of
    an ended workload; without the summary the report says it is unverified."""
    from rqp.status import Progress, verified_progress
    from rqp.summary import Failure, ResultsInfo, Summary

    forged = Progress("w", "done", 500, 500, 500, 0, 0, 0, 1.0, 2.0, 1.0)
    summary = Summary(
        "w",
        500,
        490,
        10,
        1.0,
        2.0,
        1.0,
        500.0,
        5,
        0,
        ResultsInfo("r", 1, "x", 490),
        [Failure(i, "e", 1) for i in range(10)],
    )
    p = verified_progress(forged, lambda: summary)
    assert (p.done, p.failed, p.verified, p.state) == (490, 10, True, "done")
    assert verified_progress(forged, lambda: None).verified is False
    running = Progress("w", "running", None, 10, 5, 0, 0, 0, 1.0, None, 1.0)
    assert verified_progress(running, lambda: summary) is running
    cancelled = Summary("w", 1100, 350, 0, 1.0, 2.0, 1.0, 1.0, 5, 0, ResultsInfo("r", 1, "x", 350), cancelled=750)
    p = verified_progress(forged, lambda: cancelled)
    assert (p.state, p.done, p.never_ran) == ("cancelled", 350, 750)
