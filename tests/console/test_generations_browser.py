"""#29 findings A2 and A7 on the console, in a real browser (headless Chromium) against a real
``rqp-console`` holding the KEK.

A2: with no sealed head in Redis to confirm the round of the sealed summary, ``rqp status`` says
"unverified: these are its sealed counts, but round not checked" (exit 4), but the console showed
those counts as verified (``"verified": true``, no "unverified" badge in the list). The console now
asks the same rule (``rqp.backends.unchecked_round``, through ``Opener.unconfirmed``).

A7: the console kept an opened workload (its manifest and data key) and its summary by id alone,
so after ``rqp pack --replace`` the new generation showed unverified with no root, and a later
generation showed the superseded one's root and counts. Both are now kept under the manifest's
content digest: a new generation is opened afresh and shown its own root and counts.
"""

from __future__ import annotations

import json

import pytest

from rqp.backends import unchecked_round
from rqp.ledger import Ledger, Meta
from rqp.results_root import Attestation
from rqp.summary import read_summary
from rqp.workload import blob_name, pack

from .browser import shot, start_chrome, wait_for
from .helpers import Client
from .test_browser import css, log_in, submit_login, text

#: record 5 always fails, every other one succeeds
FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


def _console(world, consoles, kek, signer):
    return consoles(
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )


def _api(client: Client, wid: str) -> dict:
    answer = client.get(f"/api/workloads/{wid}")
    assert answer.status == 200, answer.text
    return dict(answer.json())


def _listed(client: Client, wid: str) -> dict:
    rows = [row for row in client.get("/api/workloads").json()["workloads"] if row["id"] == wid]
    assert len(rows) == 1, rows
    return dict(rows[0])


def _root(world, wid: str) -> str:
    """The signed root of the workload's current generation, as 'rqp verify' reads it."""
    summary = read_summary(world.store, world.backends().workload(wid))
    assert summary.root is not None
    return Attestation.from_dict(summary.root, wid).root.hex()


def _repack(world, wid: str, records: list[dict]) -> None:
    """``rqp pack --replace`` of the ended ``wid`` with new data (same script)."""
    data = world.root / f"{wid}-{len(records)}.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in records))
    source = world.root / f"{wid}-{len(records)}.py"
    source.write_text(FIVE)
    pack(world.store, world.keys, wid, data, source, signer=world.signer.key, replace=True)


def _run_generation(world, wid: str, name: str) -> None:
    """Run the (new) generation to its end on a processor of its own (one that ran the previous
    generation keeps that script host warm under the workload's id)."""
    fresh = world.processor(name)
    try:
        world.run_to_end(world.run(wid), fresh)
    finally:
        fresh.pool.close()


def test_sealed_counts_no_sealed_head_confirms_are_shown_unverified_as_rqp_status_says(
    browser, world, proc, consoles, kek, signer, operator
):
    world.settings = world.settings.replace(results_key_file=operator.path)
    wid = world.pack("a2-console", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    console = _console(world, consoles, kek, signer)
    client = Client(console.url)
    client.login()
    # with the sealed head there, the sealed counts are verified
    first = _api(client, wid)
    assert (first["verified"], first["done"], first["failed"]) == (True, 11, 1), first
    assert _listed(client, wid)["verified"] is True

    world.r.hdel(Ledger(world.r, wid).k.meta, Meta.HEAD)  # a Redis writer, or the status TTL
    why = unchecked_round(world.r, world.store, world.backends().workload(wid), 1)
    assert why.startswith("round not checked"), why  # what rqp status / Workload.status() say
    detail = wait_for(
        browser, lambda: (d := _api(client, wid))["verified"] is False and d, what="the detail's counts unverified"
    )
    assert (detail["done"], detail["failed"]) == (11, 1)  # the sealed counts, as rqp status shows them
    assert detail["round_note"] == why, detail["round_note"]
    row = _listed(client, wid)
    assert (row["verified"], row["round_note"]) == (False, why), row

    b = browser
    log_in(b, console.url, "/workloads")
    submit_login(b)
    badge = wait_for(
        b,
        lambda: (found := css(b, f'tr[data-key="{wid}"] .badge.unverified')) and found[0],
        what="the list's unverified badge",
    )
    assert badge.text == "unverified"
    assert badge.get_attribute("title") == f"these are its sealed counts, but {why}", badge.get_attribute("title")
    shot(b, "a2-unconfirmed-round-list")
    b.get(f"{console.url}/workloads/{wid}")
    counts = wait_for(b, lambda: (found := css(b, "#unverified")) and found[0].is_displayed() and found[0])
    assert counts.get_attribute("title") == f"these are its sealed counts, but {why}"
    assert wait_for(b, lambda: text(b, "#root-badge") == "round not checked", what="the results badge")
    shot(b, "a2-unconfirmed-round-workload")


def test_a_new_generation_shows_its_own_root_and_counts_never_the_superseded_ones(
    browser, world, proc, consoles, kek, signer, operator
):
    world.settings = world.settings.replace(results_key_file=operator.path)
    wid = world.pack("a7-console", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    roots = [_root(world, wid)]
    console = _console(world, consoles, kek, signer)
    b = browser
    log_in(b, console.url, f"/workloads/{wid}")
    submit_login(b)

    def shows(root: str, done: int) -> bool:
        badge = css(b, "#root-badge")
        return (
            bool(badge)
            and badge[0].text == "results verified"
            and f"root {root} of " in (badge[0].get_attribute("title") or "")
            and text(b, "#t-done .v") == str(done)
            and not css(b, "#unverified")[0].is_displayed()
        )

    wait_for(b, lambda: shows(roots[0], 11), what="generation 1's root and counts, verified")
    client = Client(console.url)
    client.login()

    # generation 2: 20 records (19 done), generation 3: 8 records (7 done), each while the page is open
    for generation, size in ((2, 20), (3, 8)):
        _repack(world, wid, [{"n": i} for i in range(size)])
        _run_generation(world, wid, f"test:{generation}")
        roots.append(_root(world, wid))
        assert roots[-1] not in roots[:-1]
        wait_for(b, lambda n=size - 1: shows(roots[-1], n), what=f"generation {generation}'s root and counts, verified")
        shot(b, f"a7-generation-{generation}")
        detail = _api(client, wid)
        assert detail["results_root"]["root"] == roots[-1], (generation, detail["results_root"])
        assert (detail["verified"], detail["results_root"]["verified"]) == (True, True)
        assert (detail["total"], detail["done"], detail["failed"]) == (size, size - 1, 1)
        # the list (its answer kept a second: TTL_LIST) comes to the same generation's counts
        row = wait_for(
            b,
            lambda n=size, c=client: (row := _listed(c, wid))["total"] == n and row,
            what=f"the list's row of generation {generation}",
        )
        assert (row["verified"], row["done"], row["failed"]) == (True, size - 1, 1), row
        # the timeline's "packed" is this generation's packing (a manifest changes with --replace)
        created = json.loads(world.store.get(blob_name(wid, "manifest.json")))["created"]
        wait_for(
            b,
            lambda at=created, c=client: _api(c, wid)["timeline"][0] == {"what": "packed", "at": at},
            what=f"generation {generation}'s packing time",
        )
