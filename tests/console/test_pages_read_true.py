"""What the console's pages say agrees with what happened (issue #24 items 4, 5, 7, 13, 15, 24), in
a real browser (headless Chromium) against a real Redis, real workloads run to their end by the
scheduler's and processor's own code (``tests/world.py``), and a real ``rqp-console``:

* a finished workload whose records failed is painted red and marked "with N failed", in the list
  and on its page; a clean one is not;
* the Priority column and the page say the priority ``rqp priority`` set (``rqp:priorities``);
* the failure panel's counts are its tiles', and one exception type raised for two reasons makes
  two groups, each with its own example; the chips name records by the data's own id;
* an idle RQ worker minutes into its wait for a job is idle, not stale; a dead one is stale;
* the VMs page fits its time axis to 4 minutes of samples in a 1 h window, shows a quiet
  network's axis labels whole, and its heatmap's colour scale reaches 100%.

Synchronisation is on what the page shows, never on sleeps.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

try:
    from selenium.webdriver.common.by import By
except ImportError:  # the browser fixture fails with what to install (never a skip)
    By = None  # type: ignore[assignment,misc]

from rqp.control import set_priority
from rqp.ledger import WorkloadKeys, queue_names
from rqp.workload import pack

from .browser import browser_fixture, css, number, shot, text, wait_for  # noqa: F401 - browser_fixture: the browser fixture
from .helpers import PASSWORD, USER

#: a ledger's script: one exception type (ValueError) for two different reasons
LEDGER_SCRIPT = """
from datetime import date


def process(record):
    if record["amount"] < 0:
        raise ValueError(f"negative amount {record['amount']} in {record['tx']}")
    return {"tx": record["tx"], "day": date.fromisoformat(record["day"]).isoformat()}
"""
ALL_FAIL_SCRIPT = (
    "def process(record):\n    raise RuntimeError('the upstream service refused record ' + str(record['n']))\n"
)
CLEAN_SCRIPT = "def process(record):\n    return record['n'] * 3\n"
RED = "rgba(198, 40, 40, 1)"
GREEN = "rgba(46, 125, 50, 1)"


def ledger_records() -> tuple[list[dict], set[str], set[str]]:
    """Records of a ledger: some with a negative amount, some with an unreadable day."""
    records, negative, bad_day = [], set(), set()
    for i in range(40):
        tx = f"TX-{i:04d}"
        amount, day = 10 + i, f"2026-11-{1 + i % 28:02d}"
        if i % 7 == 3:
            amount = -i
            negative.add(tx)
        elif i % 9 == 5:
            day = f"2026/11/{1 + i % 28:02d}"
            bad_day.add(tx)
        records.append({"tx": tx, "amount": amount, "day": day})
    return records, negative, bad_day


def log_in(b, base: str, path: str) -> None:
    b.delete_all_cookies()
    b.get(base + path)
    wait_for(b, lambda: css(b, "#login-form"), what="the login page")
    b.find_element(By.ID, "user").send_keys(USER)
    b.find_element(By.ID, "password").send_keys(PASSWORD)
    b.find_element(By.ID, "login-button").click()
    wait_for(b, lambda: b.current_url == base + path, what=f"{path} after logging in")


def pack_only(world, wid: str, records: list[dict], script: str, *, id_field: str | None = None) -> str:
    """Pack ``wid`` as ``rqp pack`` does (optionally with ``--id-field``)."""
    data = world.root / f"{wid}.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in records))
    (world.root / f"{wid}.py").write_text(script)
    pack(world.store, world.keys, wid, data, world.root / f"{wid}.py", signer=world.signer.key, id_field=id_field)
    return wid


def pack_and_run(world, proc, wid: str, records: list[dict], script: str) -> None:
    world.run_to_end(world.run(pack_only(world, wid, records, script)), proc)


def run_at_every_priority(world, proc, run, steps: int = 100) -> None:
    """Step the scheduler's ``run`` to its end taking chunks from every priority's queue, as a
    worker does (``world.work`` takes only the normal one)."""
    from rq import Queue

    from rqp.jobs import JSONSerializer, RqpJob

    queues = [
        Queue(n, connection=world.r, job_class=RqpJob, serializer=JSONSerializer)
        for n in queue_names(world.settings.rq_queue)
    ]
    for _ in range(steps):
        if run.step():
            return
        for q in queues:
            for job in RqpJob.fetch_many(q.get_job_ids(), connection=world.r, serializer=JSONSerializer):
                if job is not None:
                    q.remove(job.id)
                    proc.run(job.id, *job.args)
    raise AssertionError(f"workload {run.id} did not finish in {steps} steps")


def console_for(world, consoles, kek):
    return consoles(
        world.settings.redis_url,
        RQP_BLOB_URL=world.settings.blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(world.signer.trusted),
    )


def test_a_workload_finished_with_failures_looks_it(browser, world, proc, consoles, kek):
    """Item 4: every record failed -- a red bar and "with 12 failed", never a clean run's green."""
    b = browser
    pack_and_run(world, proc, "all-failed", [{"n": i} for i in range(12)], ALL_FAIL_SCRIPT)
    pack_and_run(world, proc, "clean-run", [{"n": i} for i in range(12)], CLEAN_SCRIPT)
    assert world.r.hget(WorkloadKeys("all-failed").meta, "state") == b"done"
    console = console_for(world, consoles, kek)
    log_in(b, console.url, "/workloads")
    wait_for(b, lambda: len(css(b, "#workloads tbody tr")) == 2, what="two workloads listed")
    row = 'tr[data-id="all-failed"]'
    wait_for(b, lambda: text(b, f"{row} .badge.with-failures") == "with 12 failed", what="all-failed's failures badge")
    failed_fill = css(b, f"{row} .bar .fill.failed")[0]
    assert failed_fill.value_of_css_property("background-color") == RED  # not the green of a clean run
    assert failed_fill.rect["width"] >= 0.99 * css(b, f"{row} .bar")[0].rect["width"]
    assert "with-failures" in css(b, f"{row} .bar")[0].get_attribute("class")
    clean = 'tr[data-id="clean-run"]'
    assert not css(b, f"{clean} .badge.with-failures")
    assert "with-failures" not in css(b, f"{clean} .bar")[0].get_attribute("class")
    assert css(b, f"{clean} .bar .fill")[0].value_of_css_property("background-color") == GREEN
    shot(b, "20-workloads-with-failures")

    b.get(console.url + "/workloads/all-failed")
    wait_for(b, lambda: text(b, "#outcome") == "with 12 failed", what="all-failed's failures badge on its page")
    assert text(b, "#state") == "done"
    assert css(b, "#bar-failed")[0].value_of_css_property("background-color") == RED
    assert css(b, "#bar-failed")[0].rect["width"] >= 0.99 * css(b, ".progress-block .bar")[0].rect["width"]
    shot(b, "21-workload-all-failed")
    b.get(console.url + "/workloads/clean-run")
    wait_for(b, lambda: text(b, "#state") == "done" and number(b, "#t-done .v") == 12, what="clean-run's page")
    assert not css(b, "#outcome") or css(b, "#outcome")[0].get_attribute("hidden") is not None


def test_the_priority_shown_is_the_one_set(browser, world, proc, consoles, kek, operator):
    """Item 5: ``rqp priority W high`` before W starts lands in ``rqp:priorities``; the console
    shows it from the moment W is listed (the scheduler copies it into W's meta only later, on its
    first control step), and at its end."""
    b = browser
    pack_only(world, "urgent", [{"n": i} for i in range(8)], CLEAN_SCRIPT)
    set_priority(world.r, operator.key, "urgent", "high", "ops", store=world.store)
    run = world.run("urgent")  # started and listed; no step taken yet
    pack_and_run(world, proc, "routine", [{"n": i} for i in range(8)], CLEAN_SCRIPT)
    console = console_for(world, consoles, kek)
    log_in(b, console.url, "/workloads")
    wait_for(b, lambda: len(css(b, "#workloads tbody tr")) == 2, what="two workloads listed")
    assert text(b, 'tr[data-id="urgent"] td[data-k="priority"]') == "high"
    assert text(b, 'tr[data-id="routine"] td[data-k="priority"]') == "normal"
    b.get(console.url + "/workloads/urgent")
    wait_for(b, lambda: text(b, "#state") == "running", what="urgent's page")
    assert text(b, "#priority") == "priority high"
    run_at_every_priority(world, proc, run)
    wait_for(b, lambda: text(b, "#state") == "done", what="urgent to finish")
    assert text(b, "#priority") == "priority high"


def test_failures_are_grouped_by_reason_and_named_by_key(browser, world, proc, consoles, kek):
    """Items 7 and 13: one exception type for two reasons is two groups, each with its own
    example; the panel counts what the tiles count; chips name records by ``--id-field``."""
    b = browser
    records, negative, bad_day = ledger_records()
    pack_only(world, "ledger-q4", records, LEDGER_SCRIPT, id_field="tx")
    world.run_to_end(world.run("ledger-q4"), proc)
    console = console_for(world, consoles, kek)
    log_in(b, console.url, "/workloads/ledger-q4")
    failed = len(negative) + len(bad_day)
    groups = wait_for(
        b,
        lambda: len(css(b, "#failures .group.failed")) > 1 and css(b, "#failures .group.failed"),
        what="the failure groups",
    )
    # the panel's counts are the tiles'
    assert number(b, "#t-failed .v") == failed
    assert text(b, "#failures-count") == f"{failed} failed, 0 waiting for a retry"
    by_pattern = {g.get_attribute("data-pattern"): g for g in groups}
    assert [g.get_attribute("data-category") for g in groups] == ["ValueError", "ValueError"], by_pattern
    neg = next(g for p, g in by_pattern.items() if p.startswith("negative amount"))
    day = next(g for p, g in by_pattern.items() if p.startswith("Invalid isoformat"))
    assert neg.find_element(By.CSS_SELECTOR, ".count").text == str(len(negative))
    assert day.find_element(By.CSS_SELECTOR, ".count").text == str(len(bad_day))
    assert "negative amount" in neg.find_element(By.CSS_SELECTOR, ".example").get_attribute("title")
    assert "Invalid isoformat" in day.find_element(By.CSS_SELECTOR, ".example").get_attribute("title")
    # item 13: the chips name each record by the data's own id
    assert {c.text for c in neg.find_elements(By.CSS_SELECTOR, ".chip")} == negative
    assert {c.text for c in day.find_elements(By.CSS_SELECTOR, ".chip")} == bad_day
    first = sorted(negative)[0]
    next(c for c in neg.find_elements(By.CSS_SELECTOR, ".chip") if c.text == first).click()
    wait_for(b, lambda: text(b, "#record-title").endswith(": failed"), what="the record opened")
    assert first in text(b, "#record") and "negative amount" in text(b, "#record-error")
    shot(b, "22-workload-failure-groups", full_page=True)


def test_the_failure_panel_and_the_tiles_never_disagree(browser, consoles, redis_url, r):
    """A running workload whose failed count moves: the panel's line changes with the tile."""
    k = WorkloadKeys("moving")
    now = time.time()
    r.hset(k.meta, mapping={"state": "running", "started_at": now - 60, "enqueued": 500, "total": 500})
    r.hset(k.n, mapping={"done": 100, "failed": 3})
    r.zadd("rqp:workloads", {"moving": now - 60})
    console = consoles(redis_url)
    log_in(browser, console.url, "/workloads/moving")
    b = browser
    wait_for(b, lambda: number(b, "#t-failed .v") == 3, what="the failed tile")
    assert text(b, "#failures-count").startswith("3 failed")
    r.hset(k.n, "failed", 9)
    wait_for(b, lambda: number(b, "#t-failed .v") == 9, what="the failed tile to move")
    assert text(b, "#failures-count").startswith("9 failed"), text(b, "#failures-count")


def test_an_idle_worker_is_idle_until_it_misses_rqs_heartbeat(browser, consoles, redis_url, r):
    """RQ's idle worker heartbeats, then waits ``worker_ttl - 15`` s (405) for a job: 5 minutes
    into that wait it is idle; one 10 minutes past its heartbeat is stale."""
    from rq import Queue, SimpleWorker
    from rq.defaults import DEFAULT_WORKER_TTL

    q = Queue("rqp", connection=r)
    workers = {}
    for name, age in (("rqp-vm-a-11", 300.0), ("rqp-vm-a-12", 600.0)):
        w = SimpleWorker([q], connection=r, name=name)
        w.register_birth()  # RQ's own registration: the hash, the set of workers, state and heartbeat
        w.set_state("idle")
        stamp = datetime.fromtimestamp(time.time() - age, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        r.hset(w.key, "last_heartbeat", stamp)
        workers[name] = age
    assert workers["rqp-vm-a-11"] < DEFAULT_WORKER_TTL - 15 < workers["rqp-vm-a-12"]  # RQ's idle wait between them
    console = consoles(redis_url)
    b = browser
    log_in(b, console.url, "/fleet")
    wait_for(b, lambda: len(css(b, "tr[data-worker]")) == 2, what="two workers")
    assert text(b, 'tr[data-worker="rqp-vm-a-11"] .badge') == "idle"
    assert text(b, 'tr[data-worker="rqp-vm-a-12"] .badge') == "stale"
    why = css(b, 'tr[data-worker="rqp-vm-a-12"] td:nth-child(2)')[0].get_attribute("title")
    assert why.startswith("no heartbeat for 10 min") and "7 min 00 s" in why, why  # RQ's 420 s
    shot(b, "23-fleet-idle-workers")


def write_quiet_vm(blob_url: str, vm: str, now: float, minutes: int = 4, step: float = 30.0) -> None:
    """``minutes`` of samples of one quiet VM (its network a few hundred bytes a second)."""
    from rqp.connect import open_blob_store
    from rqp_metrics.sample import CPU_PERCENT, MEM_PERCENT, NET_IN_BYTES, NET_OUT_BYTES, Sample
    from rqp_metrics.store import SampleStore

    store = SampleStore(open_blob_store(blob_url))
    samples = []
    t = now - minutes * 60
    i = 0
    while t <= now:
        ts = datetime.fromtimestamp(t, UTC)
        samples += [
            Sample(ts, vm, "host", CPU_PERCENT, 20.0 + 60 * (i % 2), "Percent", step),
            Sample(ts, vm, "host", MEM_PERCENT, 40.0, "Percent", None),
            Sample(ts, vm, "host", NET_IN_BYTES, (400 + 50 * (i % 3)) * step, "Bytes", step),
            Sample(ts, vm, "host", NET_OUT_BYTES, (150 + 20 * (i % 2)) * step, "Bytes", step),
        ]
        t += step
        i += 1
    for (day, name), group in store.group(samples).items():
        store.write_group(day, name, group)


def test_the_vms_page_fits_its_axes_to_the_data(browser, consoles, redis_url, tmp_path):
    blob_url = f"file://{tmp_path / 'blobs'}"
    write_quiet_vm(blob_url, "proc-vm-01", time.time())
    console = consoles(redis_url, RQP_BLOB_URL=blob_url)
    b = browser
    log_in(b, console.url, "/vms")
    wait_for(b, lambda: css(b, 'section.vm .mini[data-chart="net"] polyline'), what="the VM's charts")
    assert "?window" not in b.current_url or "1h" in b.current_url  # the default 1 h window
    # the time axis: 4 minutes of samples span the chart, not a sliver at its right edge
    net = css(b, 'section.vm .mini[data-chart="net"] svg')[0]
    plot = next(
        ln
        for ln in net.find_elements(By.CSS_SELECTOR, ".axis line")
        if ln.get_attribute("y1") == ln.get_attribute("y2")
    )
    left, right = float(plot.get_attribute("x1")), float(plot.get_attribute("x2"))
    xs = [
        float(p.split(",")[0])
        for line in net.find_elements(By.CSS_SELECTOR, "polyline")
        for p in line.get_attribute("points").split()
    ]
    assert min(xs) - left < 0.1 * (right - left), (min(xs), left, right)
    assert right - max(xs) < 0.05 * (right - left), (max(xs), right)
    # the network axis: every label whole inside the chart, and no two alike
    labels = net.find_elements(By.CSS_SELECTOR, "text.y-label")
    texts = [t.text for t in labels]
    assert len(set(texts)) == len(texts) >= 3 and all(t.endswith("/s") for t in texts), texts
    svg_left = net.rect["x"]
    for t in labels:
        assert t.rect["x"] >= svg_left - 0.5, (t.text, t.rect, svg_left)
        assert b.execute_script("return arguments[0].getBBox().x", t) >= -0.5, t.text
    # the heatmap's colour scale: 0% to 100%, all of it inside the picture
    heat = css(b, "#heatmap svg")[0]
    scale = [t for t in heat.find_elements(By.TAG_NAME, "text") if t.get_attribute("textContent").endswith("%")]
    assert [t.get_attribute("textContent") for t in scale] == ["0%", "25%", "50%", "75%", "100%"]
    height = float(heat.get_attribute("height"))
    for t in scale:
        box = b.execute_script("const r = arguments[0].getBBox(); return [r.y, r.height]", t)
        assert box[0] + box[1] <= height, (t.get_attribute("textContent"), box, height)
    shot(b, "24-vms-four-minutes", full_page=True)
