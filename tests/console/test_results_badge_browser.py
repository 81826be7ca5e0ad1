"""The workload page's results badge verifies the results, not only the signed statement (issue
#29 item 3), in a real browser (headless Chromium) against a real Redis, workloads run to their
end by the scheduler's and processor's own code (``tests/world.py``) and a real ``rqp-console``:

* a workload whose root a trusted key signed and whose stored results match it: "results verified";
* the same signature over results whose stored input digests were altered afterwards: "results
  differ from the signed root", the record named in the badge's title -- a statement-only badge
  called it verified;
* a workload past ``INLINE_RECORDS`` is checked in the background: "checking", then the answer.

Synchronisation is on what the page (or the check) shows, never on sleeps.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from rqp.workload import blob_name

from .browser import shot, start_chrome, wait_for
from .test_pages_read_true import CLEAN_SCRIPT, console_for, css, log_in, pack_and_run, text


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


def _signed_runs(world, operator) -> None:
    """The scheduler signs each results root with its operator key (the console trusts it)."""
    world.settings = dataclasses.replace(world.settings, operator_key_file=operator.path)


def test_the_badge_says_verified_only_when_the_stored_results_match_the_signed_root(
    browser, world, proc, consoles, kek, operator
):
    b = browser
    _signed_runs(world, operator)
    pack_and_run(world, proc, "badge-genuine", [{"n": i} for i in range(12)], CLEAN_SCRIPT)
    pack_and_run(world, proc, "badge-altered", [{"n": i} for i in range(12)], CLEAN_SCRIPT)
    # the signature still holds; record 4's stored input digest (a leaf input) no longer does
    name = blob_name("badge-altered", "inputs.bin")
    altered = bytearray(world.store.get(name))
    altered[4 * 32] ^= 1
    world.store.put(name, bytes(altered))
    console = console_for(world, consoles, kek)

    log_in(b, console.url, "/workloads/badge-genuine")
    wait_for(b, lambda: text(b, "#root-badge") == "results verified", what="the genuine workload's badge")
    badge = css(b, "#root-badge")[0]
    assert "badge done" in badge.get_attribute("class")
    title = badge.get_attribute("title")
    assert "12 stored results match the root" in title and "signed by sha256:" in title, title
    shot(b, "results-badge-verified")

    b.get(console.url + "/workloads/badge-altered")
    wait_for(
        b, lambda: text(b, "#root-badge") == "results differ from the signed root", what="the altered workload's badge"
    )
    badge = css(b, "#root-badge")[0]
    assert "badge failed" in badge.get_attribute("class")
    assert "record 4 differs from what was signed" in badge.get_attribute("title")
    shot(b, "results-badge-differs")


def test_a_large_workload_is_checked_once_in_the_background_and_the_answer_kept(world, proc, operator, monkeypatch):
    """Past ``INLINE_RECORDS`` the page does not wait for a full pass: "checking" first, then
    the answer, which is kept (the next look does not read the results again)."""
    import rqp_console.results_check as rc
    from rqp.signing import TrustStore
    from rqp.summary import read_summary
    from rqp.workload import Workload
    from rqp_console.results_check import ResultsChecks

    _signed_runs(world, operator)
    pack_and_run(world, proc, "badge-large", [{"n": i} for i in range(30)], CLEAN_SCRIPT)
    monkeypatch.setattr(rc, "INLINE_RECORDS", 10)
    w = Workload.open(world.store, world.keys, "badge-large", world.trust())
    root = read_summary(world.store, w).root
    assert root is not None
    checks = ResultsChecks(world.store)
    trust = TrustStore.from_file(operator.trusted)
    first = checks.state(w, trust, root["statement"]["root"], 30)
    assert first["status"] in ("checking", "match")  # the thread may already have answered
    answer = first
    deadline = time.monotonic() + 30
    while answer["status"] == "checking" and time.monotonic() < deadline:
        with checks._one:  # the background pass holds the one slot until it has answered
            pass
        answer = checks.state(w, trust, root["statement"]["root"], 30)
    assert answer["status"] == "match" and answer["checked"] == 30, answer
    assert checks.state(w, trust, root["statement"]["root"], 30) is answer  # kept, not read again
