"""The console in a real browser (headless Chromium, Selenium), against real programs: ``rqp pack``,
``rqp-scheduler``, ``rqp-processor`` (reporting its own host's metrics) and ``rqp-console``, on a
real Redis and a blob directory.

An operator logs in, watches a running workload's progress advance, opens it, pauses and resumes
it, reads why records failed, looks at the fleet and the VMs; a page from another origin tries to
pause a workload through the operator's browser and is refused. Every page is saved as a
screenshot under ``artifacts/console/`` (1280x800, plus the whole page where it is long).

Synchronisation is on what the page shows (polling the DOM with a deadline), never on sleeps.
"""

from __future__ import annotations

import http.server
import re
import threading
import time

try:
    from selenium.webdriver.common.by import By
except ImportError:  # the browser fixture fails with what to install (never a skip)
    By = None  # type: ignore[assignment,misc]

from rqp.oplog import read_audit

from .browser import browser_fixture, css, number, shot, text, wait_for  # noqa: F401 - browser_fixture: the browser fixture
from .helpers import PASSWORD, USER, Client, push_forged_job, write_simulated_vms

SCRIPT = """
import time


def process(record):
    n = record["n"]
    if record.get("sleep"):
        time.sleep(record["sleep"])
    if n % 17 == 3:
        raise ValueError(f"amount {n} is negative")
    if n % 29 == 5:
        raise KeyError("customer")
    return n * 2
"""
CLEAN_SCRIPT = "def process(record):\n    return {'total': record['n'] * 3}\n"
SIMULATED_VMS = [f"proc-vm-{i:02d}" for i in range(1, 12)]


def expected_failures(count: int) -> dict[str, set[int]]:
    value = {n for n in range(count) if n % 17 == 3}
    key = {n for n in range(count) if n % 29 == 5} - value
    return {"ValueError": value, "KeyError": key}


def log_in(b, base: str, path: str) -> None:
    """Open ``path`` without a session: the console sends the browser to its login page."""
    b.get(base + path)
    wait_for(b, lambda: "/login" in b.current_url and css(b, "#login-form"), what="the login page")
    assert b.current_url.startswith(f"{base}/login?next="), b.current_url


def submit_login(b) -> None:
    b.find_element(By.ID, "user").send_keys(USER)
    b.find_element(By.ID, "password").send_keys(PASSWORD)
    b.find_element(By.ID, "login-button").click()


def confirm_action(b, action: str, wid: str) -> None:
    b.find_element(By.ID, f"action-{action}").click()
    dialog = wait_for(
        b,
        lambda: [d for d in css(b, "dialog#confirm") if d.get_attribute("open") is not None],
        what="the confirm dialog",
    )[0]
    assert wid in dialog.text
    if action == "pause":
        shot(b, "05-confirm-pause")
    b.find_element(By.ID, "confirm-yes").click()


def test_an_operator_watches_pauses_resumes_and_reads_failures(browser, cluster, consoles, kek, operator):
    b = browser
    # ------------------------------------------------------------------ a fleet at work
    cluster.pack(
        "nightly-etl",
        cluster.write_data("etl.jsonl", [{"n": i} for i in range(3000)]),
        cluster.write_script("clean.py", CLEAN_SCRIPT),
    )
    script = cluster.write_script("score.py", SCRIPT)
    cluster.pack("scoring-q3", cluster.write_data("q3.jsonl", [{"n": i} for i in range(900)]), script)
    # live-batch must still be running whenever the operator looks for progress; its records never
    # fail (n a multiple of 17 * 29), so no retry backoff leaves it running with nothing to show, and
    # the checks that wait on the other workloads (scoring-q3's retries take ~10 s of backoff
    # whatever the speed) happen while it is paused: ~30 s of sleeping on 2 workers, of which the
    # steps before the pause and after the resume use a few seconds each
    live_records = 6000
    live = [{"n": 17 * 29 * i, "sleep": 0.01} for i in range(live_records)]
    cluster.pack("live-batch", cluster.write_data("live.jsonl", live), script)
    blob_url = cluster.env["RQP_BLOB_URL"]
    assert write_simulated_vms(blob_url, SIMULATED_VMS, time.time()) > 0
    forged = push_forged_job(cluster.r, "rqp-forged-by-an-intruder")
    cluster.start_processor(2, "--report-host", "2")  # also records this host's CPU, memory, disk, network
    scheduler = cluster.start_scheduler("nightly-etl", "scoring-q3", "live-batch")
    console = consoles(
        cluster.redis_url,
        RQP_BLOB_URL=blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(cluster.trusted_signers),
        RQP_CONSOLE_ACTIONS_REDIS_URL=cluster.redis_url,
    )
    base = console.url

    # ------------------------------------------------------------------ log in
    log_in(b, base, "/workloads")
    shot(b, "01-login")
    submit_login(b)
    wait_for(
        b,
        lambda: b.current_url == f"{base}/workloads" and css(b, 'tr[data-id="live-batch"]'),
        what="the workloads list",
    )
    assert text(b, "#user") == USER

    # ------------------------------------------------------------------ progress advances, live
    live_done = 'tr[data-id="live-batch"] td[data-k="done"]'
    first = wait_for(b, lambda: number(b, live_done), timeout=60, what="live-batch's first records done")
    advanced = wait_for(
        b, lambda: (n := number(b, live_done)) is not None and n > first and n, what="live-batch's done count to rise"
    )
    assert advanced > first
    wait_for(
        b, lambda: len(css(b, 'tr[data-id="live-batch"] td.rate polyline')) == 1, what="live-batch's rate sparkline"
    )
    shot(b, "02-workloads")

    # ------------------------------------------------------------------ the running workload's page
    # rows are refreshed in place: the link found before a refresh is the one still on the page
    link = css(b, 'tr[data-id="live-batch"] td.id a')[0]
    before = number(b, live_done)
    wait_for(b, lambda: number(b, live_done) != before, what="a refresh that changed live-batch's row")
    link.click()
    wait_for(
        b,
        lambda: b.current_url.endswith("/workloads/live-batch") and text(b, "#state") == "running",
        what="live-batch's page",
    )
    seen = wait_for(b, lambda: number(b, "#t-done .v"), what="live-batch's done tile")
    wait_for(b, lambda: (n := number(b, "#t-done .v")) is not None and n > seen, what="the done tile to rise")
    wait_for(
        b,
        lambda: len(css(b, "#throughput polyline")) == 1 and css(b, "#inflight tbody tr"),
        what="throughput chart and chunks in flight",
    )
    wait_for(
        b,
        lambda: any(
            cell.text.startswith("rqp-") or ":" in cell.text for cell in css(b, "#inflight tbody td:nth-child(3)")
        ),
        what="a worker named for a chunk in flight",
    )
    shot(b, "03-workload-running")

    # ------------------------------------------------------------------ pause, then resume
    confirm_action(b, "pause", "live-batch")
    wait_for(b, lambda: text(b, "#state") == "paused", what="the state to read paused")
    wait_for(
        b,
        lambda: text(b, "#inflight-count").startswith("0 running") and number(b, "#t-processing .v") == 0,
        timeout=30,
        what="the chunks in hand to finish",
    )
    held = number(b, "#t-done .v")
    assert held is not None and held < live_records
    assert any("pause" in li.text and f"{USER} (console)" in li.text for li in css(b, "#timeline li"))
    shot(b, "04-workload-paused")

    # ------------------------------------------------------------------ the list, live-batch held
    b.get(base + "/workloads")
    wait_for(b, lambda: text(b, 'tr[data-id="live-batch"] .badge') == "paused", what="live-batch paused in the list")
    wait_for(b, lambda: text(b, 'tr[data-id="nightly-etl"] .badge') == "done", timeout=60, what="nightly-etl done")
    wait_for(b, lambda: text(b, 'tr[data-id="scoring-q3"] .badge') == "done", timeout=60, what="scoring-q3 done")
    wait_for(b, lambda: number(b, live_done) == held, what="the list to show the done count held")  # none queued
    assert text(b, 'tr[data-id="live-batch"] td[data-k="eta"]') == "–"  # no ETA while paused
    shot(b, "04-workloads-one-paused")
    # the filter narrows the list without a reload
    b.find_element(By.ID, "filter").send_keys("scoring")
    wait_for(
        b,
        lambda: [r.get_attribute("data-id") for r in css(b, "#workloads tbody tr")] == ["scoring-q3"],
        what="the filtered list",
    )
    b.find_element(By.ID, "filter").clear()
    b.find_element(By.ID, "filter").send_keys(" ")  # clear() fires no input event
    wait_for(b, lambda: len(css(b, "#workloads tbody tr")) == 3, what="the whole list again")

    # ------------------------------------------------------------------ resume
    b.get(base + "/workloads/live-batch")
    wait_for(b, lambda: text(b, "#state") == "paused", what="live-batch's page, paused")
    confirm_action(b, "resume", "live-batch")
    wait_for(b, lambda: text(b, "#state") == "running", what="the state to read running again")
    wait_for(
        b, lambda: (n := number(b, "#t-done .v")) is not None and n > held, timeout=30, what="progress after resume"
    )
    audit = read_audit(cluster.r, operator.trust)
    assert [(a.what, a.who, a.workload, a.verified) for a in reversed(audit)] == [
        ("pause", f"{USER} (console)", "live-batch", True),
        ("resume", f"{USER} (console)", "live-batch", True),
    ]

    # ------------------------------------------------------------------ the fleet
    b.get(base + "/fleet")
    host = wait_for(b, lambda: css(b, "section.host .protections:not(.off)"), what="a processor and its protections")[0]
    assert "separate process" in host.text and "2 workers" in host.text, host.text
    rejected = wait_for(
        b,
        lambda: [row for row in css(b, "#rejected tbody tr") if forged in row.text],
        timeout=30,
        what="the forged job among the rejected",
    )
    assert "os.system" in rejected[0].text and "rejected before any user code ran" in rejected[0].text
    wait_for(b, lambda: len(css(b, "section.host tr[data-worker]")) == 2, what="two workers")
    # what each worker is doing: a busy one names its workload and chunk
    doing = wait_for(
        b,
        lambda: [a for a in css(b, 'section.host tr[data-worker] a[href="/workloads/live-batch"]')],
        timeout=30,
        what="a worker busy with a live-batch chunk",
    )
    assert re.fullmatch(r"live-batch · [cr]\d{8}", doing[0].find_element(By.XPATH, "..").text)  # a data or retry chunk
    shot(b, "06-fleet")

    # ------------------------------------------------------------------ why records failed
    b.get(base + "/workloads/scoring-q3")
    want = expected_failures(900)
    groups = wait_for(
        b,
        lambda: {g.get_attribute("data-category"): g for g in css(b, "#failures .group.failed")} or None,
        what="failure groups",
    )
    assert set(groups) == {"ValueError", "KeyError"}, list(groups)
    for kind, ids in want.items():
        assert groups[kind].find_element(By.CSS_SELECTOR, ".count").text == f"{len(ids):,}"
    first_bad = sorted(want["ValueError"])[0]
    groups["ValueError"].find_element(By.CSS_SELECTOR, f'button[data-record="{first_bad}"]').click()
    wait_for(b, lambda: text(b, "#record-title") == f"Record {first_bad}: failed", what="the failed record")
    reason = text(b, "#record-error")
    assert reason.startswith(f"process() raised ValueError: amount {first_bad} is negative"), reason
    assert number(b, "#t-failed .v") == len(want["ValueError"]) + len(want["KeyError"])
    shot(b, "07-failure")

    # ------------------------------------------------------------------ the VMs
    b.get(base + "/vms")
    wait_for(b, lambda: len(css(b, "section.vm")) == len(SIMULATED_VMS) + 1, timeout=30, what="every VM's charts")
    vms = [s.get_attribute("data-vm") for s in css(b, "section.vm")]
    assert set(SIMULATED_VMS) < set(vms), vms
    assert len(css(b, "#heatmap svg rect[fill]")) >= 60 * len(vms)
    # the three workloads ran within a minute of each other: labelled, but never on top of each other
    labels = css(b, "#heatmap svg text.mark-label")
    assert labels
    names = "\n".join(t.find_element(By.TAG_NAME, "title").get_attribute("textContent") for t in labels)
    assert all(w in names for w in ("nightly-etl", "scoring-q3", "live-batch")), names
    boxes = [(t.rect["x"], t.rect["y"], t.rect["width"]) for t in labels]
    for i, (x, y, w) in enumerate(boxes):
        assert all(y != y2 or x + w <= x2 or x2 + w2 <= x for x2, y2, w2 in boxes[i + 1 :]), boxes
    first_vm = css(b, "section.vm")[0]
    assert [c.get_attribute("data-chart") for c in first_vm.find_elements(By.CSS_SELECTOR, ".mini")] == [
        "cpu",
        "mem",
        "disk",
        "net",
    ]
    legend = first_vm.find_element(By.CSS_SELECTOR, '.mini[data-chart="cpu"] .legend').text
    assert legend.count("workload running") == 1 and "live-batch" not in legend  # one entry per kind, not per workload
    axis = [t.text for t in first_vm.find_elements(By.CSS_SELECTOR, '.mini[data-chart="net"] svg > text.y-label')]
    assert len(set(axis)) == len(axis) and all(a.endswith("/s") for a in axis), axis  # no "0 B/s, 0 B/s, 1 B/s"
    shot(b, "08-vms")
    shot(b, "08-vms-full", full_page=True)
    b.find_element(By.CSS_SELECTOR, '#windows button[data-window="15m"]').click()
    wait_for(
        b,
        lambda: "?window=15m" in b.current_url and css(b, '#heatmap[data-window="15m"] svg'),
        what="the 15-minute window",
    )
    shot(b, "08-vms-15m")

    # ------------------------------------------------------------------ the workload, finished
    b.get(base + "/workloads/live-batch")
    wait_for(b, lambda: text(b, "#state") == "done", timeout=90, what="live-batch to finish")
    assert [li.get_attribute("class") for li in css(b, "#timeline li")] == [
        "packed",
        "started",
        "pause",
        "resume",
        "done",
    ]
    shot(b, "09-workload-done")
    b.get(base + "/audit")
    wait_for(b, lambda: len(css(b, "#audit tbody tr")) == 2, what="the audit log")
    shot(b, "10-audit")
    scheduler.communicate(timeout=30)
    assert scheduler.returncode == 1  # records failed: the scheduler says so

    # ------------------------------------------------------------------ without the KEK: ids and counts only
    sealed = consoles(cluster.redis_url, RQP_BLOB_URL=blob_url)
    c = Client(sealed.url)
    c.login()
    f = c.get("/api/workloads/scoring-q3/failures").json()
    all_failed = want["ValueError"] | want["KeyError"]
    assert f["decrypting"] is False and f["failed"] == len(all_failed)
    assert [g["category"] for g in f["groups"]] == ["failed for good (reason sealed)"]
    assert f["groups"][0]["count"] == len(all_failed) and set(f["groups"][0]["ids"]) <= all_failed
    record = c.get(f"/api/workloads/scoring-q3/records/{first_bad}")
    assert record.json()["state"] == "failed" and record.json()["error"] is None
    assert b"ValueError" not in record.body and b"negative" not in record.body
    log_in(b, sealed.url, "/workloads/scoring-q3")
    submit_login(b)
    wait_for(b, lambda: "reason sealed" in text(b, "#failures"), what="the sealed failures")
    shot(b, "11-failures-without-kek")


class _EvilSite:
    """Another origin on this machine, serving a page with a form that posts to the console."""

    def __init__(self, target: str) -> None:
        page = f"""<!doctype html><title>win a prize</title>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{{"confirm":"w1","x":"' value='"}}'>
<button id="go">Claim your prize</button></form>""".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_cross_site_form_cannot_act_through_the_operators_browser(browser, consoles, redis_url, r):
    b = browser
    r.hset("rqp:w:w1:meta", mapping={"state": "running", "started_at": time.time(), "enqueued": 10, "total": 100})
    r.zadd("rqp:workloads", {"w1": time.time()})
    console = consoles(redis_url, RQP_CONSOLE_ACTIONS_REDIS_URL=redis_url)
    log_in(b, console.url, "/workloads")
    submit_login(b)
    wait_for(b, lambda: css(b, 'tr[data-id="w1"]'), what="the workloads list")
    evil = _EvilSite(f"{console.url}/api/workloads/w1/actions/pause")
    try:
        # same site (127.0.0.1), another origin (port): the SameSite=Strict cookie goes along,
        # so it is the Origin check and the CSRF token that must refuse it; then another site
        for host in ("127.0.0.1", "localhost"):
            b.get(f"http://{host}:{evil.port}/")
            b.find_element(By.ID, "go").click()
            refused = wait_for(
                b, lambda: "cross-site request refused" in b.page_source and b.page_source, what="the console's refusal"
            )
            assert "Origin" in refused
            assert r.hget("rqp:w:w1:meta", "state") == b"running"
        shot(b, "12-cross-site-refused")
    finally:
        evil.close()
    assert r.llen("rqp:audit") == 0
