"""The script host and its pool, in process against real confined interpreters: outcomes per
record, failures that fail one record only, protocol abuse, parse() streaming."""

from __future__ import annotations

import json
import time

import pytest

from rqp.errors import ScriptError
from rqp.outcome import Decision, decide
from rqp.sandbox import (
    CRASHED,
    MALFORMED,
    NO_SCRIPT,
    NOT_JSON,
    OK,
    PERMANENT,
    RAISED,
    TIMED_OUT,
    SandboxConfig,
    ScriptPool,
    check_script,
    parse_records,
)

CONFIG = SandboxConfig(record_timeout=2, memory_mb=512)


def _run(source: str, records: list, config: SandboxConfig = CONFIG) -> list[tuple[int, bytes]]:
    pool = ScriptPool(config)
    try:
        return pool.run("w1", source.encode, [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records])
    finally:
        pool.close()


def test_each_record_gets_its_own_outcome():
    src = (
        "def process(r):\n"
        "    if r == 'raise':\n        raise ValueError('no ' + r)\n"
        "    if r == 'set':\n        return {1, 2}\n"
        "    return [r, 'ok']\n"
    )
    got = _run(src, ["a", "raise", b"{not json", "set", "b"])
    assert got[0] == (OK, b'["a","ok"]') and got[4] == (OK, b'["b","ok"]')
    assert got[1] == (RAISED, b"process() raised ValueError: no raise (line 3)")
    assert got[2][0] == MALFORMED and got[2][1].startswith(b"malformed record: not valid JSON")
    assert got[3][0] == NOT_JSON and b"not JSON-serializable" in got[3][1]


def test_a_crash_fails_the_record_in_hand_and_nothing_processed_before_it_is_lost():
    """Results the host had not flushed when it died are re-run in a new host, not dropped or
    blamed: only the record in hand fails."""
    src = "import os\n\ndef process(r):\n    if r == 5:\n        os._exit(9)\n    return r * 10\n"
    got = _run(src, list(range(10)))
    assert got[5] == (
        CRASHED,
        b"the script process exited with status 9 (os._exit(), or a fatal error in native code) while processing this record; it was replaced",
    )
    assert [g for i, g in enumerate(got) if i != 5] == [(OK, str(i * 10).encode()) for i in range(10) if i != 5]


def test_a_hung_record_times_out_alone():
    src = "import time\n\ndef process(r):\n    while r == 'hang':\n        time.sleep(0.01)\n    return r\n"
    got = _run(src, ["a", "hang", "b", "hang", "c"])
    assert [k for k, _ in got] == [OK, TIMED_OUT, OK, TIMED_OUT, OK]
    assert got[1][1] == b"timed out after 2 s (RQP_RECORD_TIMEOUT); the script process was replaced"


def test_a_script_that_writes_into_rqps_pipes_fails_only_the_record_in_hand():
    src = (
        "import os\n\ndef process(r):\n"
        "    if r == 'forge':\n"
        "        for fd in range(3, 64):\n"
        "            try:\n                os.write(fd, b'\\x0d\\x00\\x00\\x00\\x09\\x00\\x00\\x00\\x07\\x00\\x00\\x00\\x02\\x00')\n"
        "            except OSError:\n                pass\n"
        "    return r\n"
    )
    got = _run(src, ["a", "forge", "b"])
    assert got[0] == (OK, b'"a"') and got[2] == (OK, b'"b"')
    assert got[1][0] == CRASHED and b"broke rqp's result protocol" in got[1][1]


def test_a_script_that_does_not_load_fails_every_record_with_the_reason():
    got = _run("def process(r):\n    return r\nraise SystemExit('bye')\n", [1, 2])
    assert got == [(NO_SCRIPT, b"the script of workload w1 failed to import (line 3): SystemExit: bye")] * 2
    with pytest.raises(ScriptError, match="defines no process"):
        check_script(CONFIG, "w1", b"x = 1\n")
    with pytest.raises(ScriptError, match=r"setup\(\) in the script of workload w1 raised RuntimeError: nope"):
        check_script(CONFIG, "w1", b"def setup():\n    raise RuntimeError('nope')\n\ndef process(r):\n    return r\n")


def test_parse_streams_in_both_directions_without_holding_everything():
    """More data than any pipe holds goes in while records come out."""
    src = b"def process(r):\n    return r\n\ndef parse(stream):\n    for line in stream:\n        yield {'n': int(line)}\n"
    chunks = (b"".join(b"%d\n" % i for i in range(k * 10_000, (k + 1) * 10_000)) for k in range(30))
    n = 0
    for payload, error in parse_records(CONFIG, "w1", src, chunks):
        assert error is None and json.loads(payload) == {"n": n}
        n += 1
    assert n == 300_000


def test_the_same_code_runs_in_process_when_the_sandbox_is_off():
    src = "import os\n\ndef process(r):\n    return os.getpid()\n"
    import os

    got = _run(src, [1], SandboxConfig(enabled=False))
    assert got == [(OK, str(os.getpid()).encode())]
    got = _run(src, [1])
    assert got[0][0] == OK and got[0][1] != str(os.getpid()).encode()


@pytest.mark.parametrize("enabled", [True, False], ids=["sandboxed", "in-process"])
def test_a_permanent_error_is_not_retried(enabled):
    """`raise rqp.PermanentError` -- or a type named in RQP_PERMANENT_ERRORS -- fails the record at
    once; any other exception stays retryable."""
    src = (
        "import rqp\n\n"
        "class BadInput(ValueError):\n    pass\n\n"
        "def process(r):\n"
        "    if r == 'perm':\n        raise rqp.PermanentError('no such customer')\n"
        "    if r == 'key':\n        raise KeyError('k')\n"
        "    if r == 'bad':\n        raise BadInput('sub-class of a named type')\n"
        "    raise RuntimeError('flaky')\n"
    )
    config = SandboxConfig(
        enabled=enabled, record_timeout=2, memory_mb=512, permanent_errors=("KeyError", "ValueError")
    )
    got = _run(src, ["perm", "key", "bad", "other"], config)
    assert got[0] == (PERMANENT, b"process() raised PermanentError: no such customer (line 8) (permanent: not retried)")
    assert got[1][0] == PERMANENT and got[2][0] == PERMANENT
    assert got[3] == (RAISED, b"process() raised RuntimeError: flaky (line 13)")
    assert decide(PERMANENT, 1, 3) is Decision.FAIL and decide(RAISED, 1, 3) is Decision.RETRY
    plain = _run(src, ["key"], SandboxConfig(enabled=enabled, record_timeout=2, memory_mb=512))
    assert plain[0][0] == RAISED  # not named: retried as usual


def test_a_slow_script_sends_its_results_in_a_few_frames_not_one_per_few_records():
    """Each RESULTS frame wakes the role; a script of 2 ms per record used to flush every 20 ms
    (one frame per ~10 records), a cost per second of script time. 100 records of 2 ms of CPU
    now arrive in a frame per ~0.25 s of wall time (the machine may be loaded: judged against
    the time the batch took), all of them, in order."""
    src = "import time\n\ndef process(r):\n    end = time.thread_time() + 0.002\n    while time.thread_time() < end:\n        pass\n    return r\n"
    frames: list[int] = []
    outcomes: dict[int, tuple[int, bytes]] = {}

    def sink(indices: list[int], kinds: bytes, values: list[bytes]) -> None:
        frames.append(len(indices))
        outcomes.update((i, (k, v)) for i, k, v in zip(indices, kinds, values, strict=True))

    pool = ScriptPool(CONFIG)
    try:
        pool.run("w1", src.encode, [b"0"])  # the host started and the script loaded: not timed
        t0 = time.monotonic()
        pool.stream("w1", src.encode, [json.dumps(i).encode() for i in range(100)], sink)
        elapsed = time.monotonic() - t0
    finally:
        pool.close()
    assert outcomes == {i: (OK, str(i).encode()) for i in range(100)}
    assert len(frames) <= 1 + elapsed / 0.1, (frames, elapsed)  # at 0.02 s: ~elapsed / 0.02
