"""F0 on the console's workload page, in a real browser (headless Chromium) against a real
``rqp-console`` holding the KEK: round 1's summary, results, leaves and inputs put back after a
``rqp retry --failed`` round showed round 1's counts and "results root verified". Now the root
badge says unverified with the reason (the round found and the round expected), and the counts
are marked unverified."""

from __future__ import annotations

import pytest

from rqp import control
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB
from rqp.summary import RESULTS_BLOB, SUMMARY_BLOB
from rqp.workload import blob_name

from .browser import shot, start_chrome, wait_for
from .test_browser import css, log_in, submit_login, text

#: record 5 always fails, every other one succeeds
FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
ROUND_BLOBS = (SUMMARY_BLOB, RESULTS_BLOB, LEAVES_BLOB, INPUTS_BLOB)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


def test_round_1_blobs_put_back_show_unverified_with_the_rounds(browser, world, proc, consoles, kek, signer, operator):
    world.settings = world.settings.replace(results_key_file=operator.path)
    wid = world.pack("rb-console", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    round1 = {n: world.store.get(blob_name(wid, n)) for n in ROUND_BLOBS}
    opened = world.backends().workload(wid)
    assert control.retry_failed(world.r, world.store, opened, operator.key, "ops@test") == 1
    world.run_to_end(world.run(wid), proc)
    for name, data in round1.items():  # the blob-store writer's rollback
        world.store.put(blob_name(wid, name), data)

    console = consoles(
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )
    b = browser
    log_in(b, console.url, f"/workloads/{wid}")
    submit_login(b)
    badge = wait_for(
        b,
        lambda: (found := css(b, "#root-badge")) and found[0].is_displayed() and found[0],
        what="the results-root badge",
    )
    assert badge.text == "results root unverified", badge.text
    title = badge.get_attribute("title")
    assert f"workload {wid}: summary.enc is round 1 but the workload's sealed head says round 2" in title, title
    assert css(b, "#unverified")[0].is_displayed()  # the counts are Redis's, not round 1's sealed ones
    assert text(b, "#state") == "done"
    shot(b, "stale-round-workload")
