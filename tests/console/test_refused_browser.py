"""Issue 24 items 1 and 8 in a real browser (headless Chromium) against a real ``rqp-console``:
a workload the scheduler refused shows ``refused`` with the reason on its page and in the
workloads list (it said "not known to Redis"); a workload that failed as a whole shows its reason,
decrypted when the console holds the KEK (it said "still reading the data ... details are
encrypted")."""

from __future__ import annotations

import json

import pytest
from harness import make_signer

from rqp.signing import LocalSigningKey
from rqp.workload import pack

from .browser import shot, start_chrome, wait_for
from .test_browser import css, log_in, submit_login, text


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


@pytest.fixture
def sched(world):
    from rqp_scheduler.scheduler import Scheduler

    s = Scheduler(world.settings)
    yield s
    for run in s.runs.values():
        run.stream.close()
    s.hosts.close()
    s.writer.shutdown(wait=True)


def _pack(world, wid: str, script: str, key=None) -> None:
    data, path = world.root / f"{wid}.jsonl", world.root / f"{wid}.py"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    path.write_text(script)
    pack(world.store, world.keys, wid, data, path, signer=key or world.signer.key)


def test_refused_and_failed_as_a_whole_say_why(browser, world, sched, consoles, kek, signer):
    b = browser
    untrusted, _ = make_signer(world.root / "untrusted", "untrusted")
    _pack(world, "m1", "def process(r):\n    return r\n", LocalSigningKey(untrusted))
    _pack(world, "broken", "import no_such_module_here\n\ndef process(r):\n    return r\n")
    for wid in ("m1", "broken"):
        world.r.rpush("rqp:submissions", wid)
    sched.tick(serve=True)
    assert "not a trusted signer" in sched.failures["m1"] and "broken" in sched.failures
    console = consoles(
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )
    log_in(b, console.url, "/workloads/m1")
    submit_login(b)
    line = wait_for(b, lambda: "refused by the scheduler" in text(b, "#workload-error") and text(b, "#workload-error"),
                    what="the refusal on m1's page")  # fmt: skip
    assert "not a trusted signer" in line and "unverified" in line and "'rqp submit m1'" in line
    assert text(b, "#state") == "refused"
    assert "not known to Redis" not in b.page_source
    shot(b, "refused-workload")

    b.get(console.url + "/workloads")
    item = wait_for(b, lambda: css(b, "#refused li[data-id='m1']"), what="m1 in the refused list")[0]
    assert "not a trusted signer" in item.text and "unverified" in item.text and item.text.startswith("refused")
    row = wait_for(b, lambda: css(b, "tr[data-id='broken']"), what="broken in the list")[0]
    assert "failed as a whole" in row.text and "reading" not in row.text, row.text
    shot(b, "refused-list")

    b.get(console.url + "/workloads/broken")
    bar = wait_for(b, lambda: "ModuleNotFoundError" in text(b, "#bar-text") and text(b, "#bar-text"),
                   what="the decrypted reason of broken's failure")  # fmt: skip
    assert "no_such_module_here" in bar and "failed as a whole" in bar
    assert "still reading" not in bar and "details are encrypted" not in bar and "ETA" not in bar
    assert text(b, "#state") == "failed"
    shot(b, "failed-as-a-whole")


def test_a_cancelled_workload_with_failures_offers_retry():
    """Issue 24 item 3 on the console: a cancelled workload's failed records can be run again."""
    from rqp_console.workload_page import allowed_actions

    assert allowed_actions({"state": "cancelled", "failed": 3}) == ["retry"]
    assert allowed_actions({"state": "cancelled", "failed": 0}) == []
