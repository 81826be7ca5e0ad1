"""N4 on the console's workload page, in a real browser (headless Chromium) against a real
``rqp-console`` holding the KEK: with the workload's sealed head deleted from Redis (a Redis
writer, or its keys expired after the status TTL) and round 1's blobs put back after a
``rqp retry --failed`` round, the badge said "results verified" (round 1) where ``rqp verify``
said "round not checked". Only the sealed head proves which round is current, so the badge now
says "round not checked", naming the round and why; with the head there it says verified."""

from __future__ import annotations

import pytest

from rqp import control
from rqp.ledger import Ledger, Meta
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB
from rqp.summary import RESULTS_BLOB, SUMMARY_BLOB
from rqp.workload import blob_name

from .browser import shot, start_chrome, wait_for
from .test_browser import css, log_in, submit_login, text

#: record 5 fails in round 1 only (the retried round's data says so), every other one succeeds
FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
ROUND_BLOBS = (SUMMARY_BLOB, RESULTS_BLOB, LEAVES_BLOB, INPUTS_BLOB)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


def _badge(b):
    return wait_for(
        b,
        lambda: (found := css(b, "#root-badge")) and found[0].is_displayed() and found[0].text != "" and found[0],
        what="the results-root badge",
    )


def test_an_older_round_with_the_head_gone_shows_round_not_checked(
    browser, world, proc, consoles, kek, signer, operator
):
    world.settings = world.settings.replace(results_key_file=operator.path)
    wid = world.pack("rnc-console", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    round1 = {n: world.store.get(blob_name(wid, n)) for n in ROUND_BLOBS}
    opened = world.backends().workload(wid)
    assert control.retry_failed(world.r, world.store, opened, operator.key, "ops@test") == 1
    world.run_to_end(world.run(wid), proc)
    console = consoles(
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )
    b = browser
    log_in(b, console.url, f"/workloads/{wid}")
    submit_login(b)
    wait_for(b, lambda: text(b, "#root-badge") == "results verified", what="round 2's badge, the head confirming it")

    for name, data in round1.items():  # the blob-store writer's rollback (round 2's round.enc stays)
        world.store.put(blob_name(wid, name), data)
    world.r.hdel(Ledger(world.r, wid).k.meta, Meta.HEAD)  # the Redis writer (or the status TTL)
    fresh = consoles(  # a console that has not seen round 2's summary
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )
    log_in(b, fresh.url, f"/workloads/{wid}")
    submit_login(b)
    wait_for(b, lambda: text(b, "#root-badge") == "round not checked", what="the badge of round 1 without a head")
    badge = _badge(b)
    assert "badge unverified" in badge.get_attribute("class")
    title = badge.get_attribute("title")
    assert "11 stored results match the round 1 root" in title, title
    assert "round not checked: the sealed round marker says round 2 was begun" in title, title
    shot(b, "round-not-checked-workload")
