"""#29 atk4 B5 and B9 on the console, against a real ``rqp-console`` holding the KEK, a real Redis
and blob directory, and (for the pages) headless Chromium.

B5: a blob-store writer set one ended workload's ``manifest.json`` to ``null``, ``5`` or a
5000-deep ``[[...]]``: ``GET /api/workloads`` answered 500 (every workload hidden) and so did that
workload's page. Now the list shows every workload, that one marked "unreadable" with the one line
naming the blob and the fix, and its page says the same line.

B9: a manifest's ``created`` of ``1e999`` made the page's answer ``"at": Infinity`` -- not JSON, so
the page could not read any of it. The manifest reader refuses it (the page says why), and the
console writes no NaN/Infinity at all: an answer holding one is a 500 with one line saying where.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask

from rqp.workload import blob_name
from rqp_console.strict_json import StrictJSONProvider

from .browser import shot, start_chrome, wait_for
from .helpers import Client
from .test_browser import css, log_in, submit_login, text

SCRIPT = "def process(r):\n    return r['n'] * 2\n"
NOT_A_MANIFEST = "manifest.json of workload {} is not a manifest ("
JUNK = {
    "null": b"null",
    "five": b"5",
    "deep": b"[" * 5000 + b"]" * 5000,
}


def _no_constants(name: str) -> Any:
    raise AssertionError(f"the console answered {name}, which is not JSON")


def strict(response) -> Any:
    """The answer read as a browser's JSON.parse reads it: NaN/Infinity are errors."""
    assert response.status == 200, response.text
    return json.loads(response.text, parse_constant=_no_constants)


def until(check, what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` (an HTTP answer's content) until it is truthy: the console's answers and
    manifest reads are kept about a second, so a change shows within a few."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


@pytest.fixture
def ended(world, proc, consoles, kek, signer):
    """Two ended workloads, ``fine`` and ``junk``, and a console with the KEK that has seen both."""
    for wid in ("fine", "junk"):
        world.pack(wid, [{"n": i} for i in range(6)], SCRIPT)
        world.run_to_end(world.run(wid), proc)
    console = consoles(
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )
    client = Client(console.url)
    client.login()
    rows = {row["id"]: row for row in strict(client.get("/api/workloads"))["workloads"]}
    assert rows["fine"]["verified"] is True and rows["junk"]["verified"] is True, rows
    return console, client


def _rows(client: Client) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in strict(client.get("/api/workloads"))["workloads"]}


@pytest.mark.parametrize("junk", list(JUNK), ids=list(JUNK))
def test_one_junk_manifest_marks_that_row_and_hides_none(world, ended, junk):
    _, client = ended
    world.store.put(blob_name("junk", "manifest.json"), JUNK[junk])
    rows = until(lambda: (rows := _rows(client)) and rows["junk"].get("unreadable") and rows, "the row marked")
    assert rows["junk"]["unreadable"].startswith(NOT_A_MANIFEST.format("junk")), rows["junk"]
    assert rows["junk"]["unreadable"].endswith("restore that blob, or re-pack the workload (rqp pack --replace)")
    assert rows["junk"]["verified"] is False
    assert rows["fine"]["verified"] is True and "unreadable" not in rows["fine"], rows["fine"]
    page = strict(client.get("/api/workloads/junk"))
    assert page["unreadable"] == rows["junk"]["unreadable"] and page["verified"] is False, page
    assert page["timeline"][0] == {"what": "packed", "at": None}
    fine = strict(client.get("/api/workloads/fine"))
    assert "unreadable" not in fine and fine["verified"] is True and fine["done"] == 6, fine


@pytest.mark.parametrize("literal", [b"1e999", b"-1e999", b"NaN"])
def test_a_created_time_of_infinity_is_refused_not_sent(world, ended, literal):
    """B9: the page's answer stays JSON, with the manifest said to be unreadable."""
    _, client = ended
    name = blob_name("junk", "manifest.json")
    doc = json.loads(world.store.get(name))
    raw = json.dumps(doc).encode().replace(json.dumps(doc["created"]).encode(), literal, 1)
    assert literal in raw
    world.store.put(name, raw)
    page = until(lambda: (p := strict(client.get("/api/workloads/junk"))).get("unreadable") and p, "the page's line")
    assert page["unreadable"].startswith(NOT_A_MANIFEST.format("junk")) and literal.decode() in page["unreadable"], page
    assert page["timeline"][0] == {"what": "packed", "at": None}


def test_the_console_never_writes_nan_or_infinity():
    """Whatever else holds a non-finite number: a 500 with one JSON line naming where, not ``Infinity``."""
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)

    @app.get("/x")
    def answer() -> Any:
        return {"b": 1, "timeline": [{"what": "packed", "at": float("inf")}]}

    got = app.test_client().get("/x")
    assert got.status_code == 500
    assert json.loads(got.data) == {
        "error": "the console's answer holds Infinity at $.timeline[0].at, which is not JSON; it is not sent "
        "(report it as a console bug)"
    }
    assert list(app.json.loads(app.json.dumps({"b": 1, "a": 2}))) == ["b", "a"]  # the order the console built


def test_the_pages_say_which_workload_is_unreadable(world, ended, browser):
    console, _ = ended
    world.store.put(blob_name("junk", "manifest.json"), JUNK["deep"])
    b = browser
    log_in(b, console.url, "/workloads")
    submit_login(b)
    line = wait_for(
        b,
        lambda: (found := css(b, "tr[data-id='junk'] .unreadable-why")) and found[0].text,
        what="the junk workload's row marked unreadable",
    )
    assert line.startswith(NOT_A_MANIFEST.format("junk")), line
    assert text(b, "tr[data-id='junk'] .badge.unverified") == "unreadable"
    assert css(b, "tr[data-id='fine']") and not css(b, "tr[data-id='fine'] .unreadable"), "fine is listed as ever"
    assert text(b, "tr[data-id='fine'] td:nth-child(2)").startswith("done")
    shot(b, "junk-manifest-list")
    b.get(console.url + "/workloads/junk")
    said = wait_for(b, lambda: (found := css(b, "#unreadable")) and found[0].is_displayed() and found[0].text,
                    what="the page's unreadable line")  # fmt: skip
    assert said == f"unreadable: {line}", said
    assert not css(b, "#workload-error") or not css(b, "#workload-error")[0].is_displayed()
    shot(b, "junk-manifest-page")
