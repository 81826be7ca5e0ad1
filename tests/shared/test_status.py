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
