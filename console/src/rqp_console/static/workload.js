// rqp console, one workload's page: its state and actions, progress bar and tiles, throughput
// chart, timeline, chunks in flight (refreshed in place), retries and queues, and its failures
// grouped by reason (a record's status on a click).
import { $, clear, duration, el, endedWithFailures, int, patchRows, rate, readingText, setTile, when } from "./console.js";
import { lineChart } from "./charts.js";
import { REFRESH, confirmDialog, getJSON, poll, postJSON, toast } from "./live.js";

const W = document.body.dataset.workload;
const API = "/api/workloads/" + encodeURIComponent(W);

// ------------------------------------------------------------------ actions
const ACTION_TEXT = {
  pause: ["Pause", "Nothing new is queued; chunks already running finish and commit. Nothing is lost; resume carries on."],
  resume: ["Resume", "The chunks taken off the queue go back on it and the enqueue carries on."],
  cancel: ["Cancel", "Nothing new runs. Chunks in hand finish; what was done is kept and consolidated, and the records that never ran are counted. This cannot be undone."],
  retry: ["Retry failed", "The workload's failed records run again as a new round; records already done are not touched."],
};
let shownActions = "";
// An action, once the operator confirmed it by name; the page refreshes at once after it.
async function act(action) {
  const [label, text] = ACTION_TEXT[action];
  const ok = await confirmDialog(`${label} workload ${W}?`, text, `${label} ${W}`);
  if (!ok) return;
  try {
    const res = await postJSON(`${API}/actions/${action}`, { confirm: W });
    toast(res.requeued !== undefined ? `${W}: ${int(res.requeued)} failed records queued again` : `${W} is now ${res.state}`);
  } catch (e) {
    toast(e.message, true);
  }
  detail.now();
}
// The buttons are redrawn only when the actions allowed change (a button is never replaced under a click).
function renderActions(d) {
  const actions = $("actions");
  const key = (d.actions_enabled ? d.actions : []).join(",");
  if (key === shownActions) return;
  shownActions = key;
  clear(actions);
  if (!d.actions_enabled) {
    actions.appendChild(el("span", { class: "muted", text: "read-only console" }));
    return;
  }
  for (const a of d.actions) {
    actions.appendChild(el("button", { type: "button", id: "action-" + a, class: a === "cancel" ? "danger" : "primary", on: { click: () => act(a) } }, ACTION_TEXT[a][0]));
  }
}

// ------------------------------------------------------------------ the detail
// the results badge: "verified" only when a trusted results key signed the root for this workload
// AND the console's own pass over the stored results matched it (rqp_console.results_check)
function rootBadge(rr) {
  const rec = rr.records || {};
  const about = `root ${rr.root || "?"} of ${rr.size ?? "?"} records, signed by ${rr.signer || "no one"}`;
  const when = rec.at ? ` (checked ${new Date(rec.at * 1000).toISOString().slice(11, 19)} UTC)` : "";
  const problems = (rec.problems || []).join("; ") + (rec.more ? ` (and ${rec.more} more)` : "");
  if (!rr.signed) {
    return { className: "badge unverified", textContent: "results root unverified", title: about + (rr.note ? `: ${rr.note}` : "") };
  }
  if (rec.status === "match" && rr.round_checked === false) {
    // the results match a genuine root, but no sealed head in Redis says its round is the current one
    return { className: "badge unverified", textContent: "round not checked", title: `${int(rec.checked)} stored results match the round ${int(rr.round)} ${about}${when}; ${rr.round_note}` };
  }
  if (rec.status === "match") {
    return { className: "badge done", textContent: "results verified", title: `${int(rec.checked)} stored results match the ${about}${when}` };
  }
  if (rec.status === "differs") {
    return { className: "badge failed", textContent: "results differ from the signed root", title: `${problems}; the ${about}${when}` };
  }
  return { className: "badge checking", textContent: `root signed; checking ${int(rr.size)} records`, title: `${about}; the stored results are being checked against it` };
}
function renderHead(d) {
  $("workload-error").hidden = true;
  // its manifest.json is not a manifest (junk in the blob store): said in one line, the rest shown as Redis has it
  const junk = $("unreadable");
  junk.hidden = !d.unreadable;
  junk.textContent = d.unreadable ? `unreadable: ${d.unreadable}` : "";
  const st = $("state");
  st.className = "badge " + d.state;
  st.textContent = d.state;
  const unverified = $("unverified");
  unverified.hidden = d.verified !== false;
  // the sealed counts of a round no sealed head confirms: said as rqp status says it
  unverified.dataset.plain ??= unverified.title;
  unverified.title = d.round_note ? `these are its sealed counts, but ${d.round_note}` : unverified.dataset.plain;
  const outcome = $("outcome");
  outcome.hidden = !endedWithFailures(d);
  outcome.textContent = endedWithFailures(d) ? `with ${int(d.failed)} failed` : "";
  const root = $("root-badge");
  const rr = d.results_root;
  root.hidden = !rr;
  if (rr) Object.assign(root, rootBadge(rr));
  $("priority").textContent = "priority " + d.priority;
  renderActions(d);
}
function renderProgress(d) {
  const reading = d.total === null && !d.failed_whole;
  const known = reading ? 0 : d.known || 0;
  $("bar-fill").parentElement.classList.toggle("reading", reading);
  $("bar-fill").parentElement.classList.toggle("done", d.state === "done");
  $("bar-fill").parentElement.classList.toggle("paused", d.state === "paused");
  $("bar-fill").parentElement.classList.toggle("with-failures", endedWithFailures(d));
  $("bar-fill").style.width = (known ? (100 * d.done) / known : d.state === "done" ? 100 : 0) + "%";
  const bf = $("bar-failed");
  bf.style.left = (known ? (100 * d.done) / known : 0) + "%";
  bf.style.width = (known && d.failed ? Math.max(0.3, (100 * d.failed) / known) : 0) + "%";
  if (d.failed_whole) {  // failed as a whole: the reason (decrypted with the console's KEK), not "still reading"
    $("bar-text").textContent = `failed as a whole: ${d.error || "no reason recorded"}` + (d.error_note ? ` (${d.error_note})` : "") +
      ` · ${int(d.done)} records done and ${int(d.failed)} failed before it`;
    return;
  }
  $("bar-text").textContent = (reading ? `${int(d.done + d.failed)} of ${int(d.enqueued)} records read finished · ${readingText(d)}` : `${(100 * d.fraction).toFixed(1)}% · ${int(d.done + d.failed)} of ${int(d.total)} records finished`) +
    (d.reclaimed ? ` · ${int(d.reclaimed)} chunks re-run after a lost worker` : "") +
    (d.preempted ? ` · requeued after preemption: ${int(d.preempted)} (no attempt spent)` : "") + vmsText(d) + (d.error ? ` · ${d.error}` : "") + (d.processor_error ? ` · processor: ${d.processor_error}` : "");
}
// what the run cost, by VM (from the sealed summary): processor-seconds, and which VMs were Spot
function vmsText(d) {
  if (!Array.isArray(d.vms) || !d.vms.length) return "";
  return " · processor-seconds: " + d.vms.map((v) => `${v.host} ${Number(v.seconds).toFixed(1)} s` +
    (v.priority === "spot" ? " (Spot)" : v.priority === "regular" ? " (regular)" : "") +
    (v.drained_seconds ? ` + ${Number(v.drained_seconds).toFixed(1)} s lost to evictions` : "")).join(", ");
}
function renderTiles(d) {
  setTile("t-done", int(d.done), d.done);
  setTile("t-failed", int(d.failed), d.failed);
  setTile("t-retrying", int(d.retrying), d.retrying);
  setTile("t-processing", int(d.processing), d.processing);
  setTile("t-queued", int(d.queued), d.queued);
  // the run's throughput: the figure rqp status, the scheduler's log and the summary give
  setTile("t-rate", rate(d.rate), d.rate);
  setTile("t-eta", d.state === "done" ? "done" : d.eta === null ? "–" : duration(d.eta), d.eta);
  setTile("t-elapsed", duration(d.elapsed), d.elapsed);
  // the failure panel's counts are these tiles' numbers, refreshed with them: never two answers
  const fc = $("failures-count");
  fc.textContent = `${int(d.failed)} failed, ${int(d.retrying)} waiting for a retry`;
  fc.dataset.failed = String(d.failed);
  fc.dataset.retrying = String(d.retrying);
}
function renderThroughput(d) {
  const x1 = d.live ? d.now : d.finished_at || d.now;
  const watched = d.live || d.throughput.length > 1;
  lineChart($("throughput"), {
    series: [{ label: "records/s", points: watched ? d.throughput : [] }],
    unit: "rec/s", height: 190, legend: false, x1,
    x0: Math.min(d.started_at || x1 - 30, x1 - 30),
    empty: d.live ? "measuring…" : `not watched while it ran: ${rate(d.average_rate)} records/s on average`,
  });
}
function renderTimeline(d) {
  const ol = clear($("timeline"));
  const items = d.timeline.slice();
  for (const it of items) {
    const li = el("li", { class: it.what }, el("span", { class: "what", text: it.what }), el("span", { class: "when", text: it.at ? when(it.at) : "unknown" }));
    if (it.who) li.appendChild(el("span", { class: "when", text: "by " + it.who }));
    ol.appendChild(li);
  }
  if (d.live) ol.appendChild(el("li", { class: "now" }, el("span", { class: "what", text: d.state }), el("span", { class: "when", text: "now · " + duration(d.elapsed) + " in" })));
}
function renderInFlight(d) {
  patchRows(document.querySelector("#inflight tbody"), d.in_flight.map((c) => {
    const lease = c.started ? (c.seconds_left >= 0 ? `${c.seconds_left.toFixed(0)} s left` : `expired ${(-c.seconds_left).toFixed(0)} s ago`) : "queued";
    return el("tr", { dataset: { key: c.job, job: c.job } },
      el("td", { title: c.job }, c.chunk + (c.generation ? ` (run ${c.generation + 1})` : "")),
      el("td", { class: "num" }, c.records === null ? "–" : int(c.records)),
      el("td", { title: c.started_at ? "started " + when(c.started_at) : "" }, c.worker || (c.started ? "(started)" : "–")),
      el("td", { class: "num" + (c.started && c.seconds_left < 0 ? " bad" : "") }, lease));
  }));
  $("inflight-empty").hidden = d.in_flight.length > 0;
  $("inflight-count").textContent = `${int(d.in_flight_started)} running, ${int(d.in_flight_total - d.in_flight_started)} queued` + (d.in_flight_total > d.in_flight.length ? ` (first ${d.in_flight.length} shown)` : "");
}
function facts(dl, pairs) {
  clear(dl);
  for (const [k, v] of pairs) dl.append(el("dt", { text: k }), el("dd", { text: v }));
}
function renderQueues(d) {
  const r = d.retries;
  facts($("retries"), [
    ["Waiting for a retry", int(r.waiting)],
    ["Due now", int(r.due_now)],
    ["Next due", r.next_due ? (r.next_due <= d.now ? "now" : "in " + duration(r.next_due - d.now)) : "–"],
    ["By attempt", r.by_attempt.length ? r.by_attempt.map(([a, n]) => `attempt ${a}: ${int(n)}`).join(", ") + (r.sampled < r.waiting ? " (of the first " + int(r.sampled) + ")" : "") : "–"],
  ]);
  const b = d.backlog;
  facts($("backlog"), [
    [`Status queue ${b.status_queue}`, b.status_length === null ? (b.status_error || "–") : int(b.status_length) + " messages waiting"],
    ["Outbox (not yet published)", int(b.outbox)],
  ]);
}
function render(d) {
  renderHead(d);
  renderProgress(d);
  renderTiles(d);
  renderThroughput(d);
  renderTimeline(d);
  renderInFlight(d);
  renderQueues(d);
}
const detail = poll(async () => {
  try {
    render(await getJSON(API));
  } catch (e) {
    if (e.status === 404) {
      const p = $("workload-error"); p.textContent = e.message; p.hidden = false;
      if (e.data && e.data.state === "refused") { const st = $("state"); st.className = "badge refused"; st.textContent = "refused"; }
      return;
    }
    throw e;
  }
}, REFRESH);

// ------------------------------------------------------------------ failures
async function openRecord(rid) {
  const box = $("record");
  box.hidden = false;
  clear(box).appendChild(el("h3", { text: `Record ${rid}: loading…` }));
  try {
    const r = await getJSON(`${API}/records/${rid}`);
    clear(box).appendChild(el("h3", { id: "record-title", text: `Record ${rid}: ${r.state}` }));
    const dl = el("dl", { class: "facts" });
    const rows = [["Attempts", r.attempts === null || r.attempts === undefined ? "–" : String(r.attempts)]];
    if (r.key !== null && r.key !== undefined) rows.unshift(["Key", r.key]);
    if (r.worker) rows.push(["Worker", r.worker]);
    if (r.finished_at) rows.push(["Finished", when(r.finished_at)]);
    if (r.retry_due) rows.push(["Retry due", when(r.retry_due)]);
    if (r.job) rows.push(["Job", r.job]);
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    box.appendChild(dl);
    if (r.decrypted) box.appendChild(el("div", { class: "err", id: "record-error", text: r.error || "no error recorded" }));
    else box.appendChild(el("p", { class: "muted", id: "record-error", text: r.note }));
    box.scrollIntoView({ block: "nearest" });
  } catch (e) {
    clear(box).appendChild(el("p", { class: "error", text: e.message }));
  }
}
// A record's chip: the data's own id when it was packed with --id-field (and the console holds
// the KEK that opens it), else rqp's record number.
function chip(id, keys) {
  const key = keys[String(id)];
  return el("button", { type: "button", class: "chip", title: key === undefined ? `record ${id}` : `record ${id}: ${key}`, dataset: { record: String(id) }, on: { click: () => openRecord(id) } }, key === undefined ? "#" + id : key);
}
function group(g, kind, keys) {
  const chips = el("div", { class: "chips" });
  for (const id of g.ids) chips.appendChild(chip(id, keys));
  if (g.count > g.ids.length) chips.appendChild(el("span", { class: "muted", text: `+${int(g.count - g.ids.length)} more` }));
  return el("div", { class: "group " + kind, dataset: { category: g.category, pattern: g.pattern || "" } },
    el("span", { class: "count", text: int(g.count) }), el("div", { class: "cat", title: g.category + (g.pattern ? ": " + g.pattern : ""), text: g.category + (g.pattern ? ": " + g.pattern : "") }),
    g.example ? el("div", { class: "example", title: g.example, text: g.example }) : null, chips);
}
poll(async () => {
  const f = await getJSON(`${API}/failures`);
  const box = clear($("failures"));
  // the counts are the tiles' own (renderTiles); this says only what the groups were drawn from
  const grouped = f.groups.reduce((n, g) => n + g.count, 0) + f.retry_groups.reduce((n, g) => n + g.count, 0);
  $("failures-note").textContent = f.partial ? ` · grouped from the first ${int(f.looked_at)}` : grouped ? ` · ${int(grouped)} grouped` : "";
  const keys = f.keys || {};
  for (const g of f.groups) box.appendChild(group(g, "failed", keys));
  for (const g of f.retry_groups) box.appendChild(group(g, "retrying", keys));
  if (!f.groups.length && !f.retry_groups.length) box.appendChild(el("p", { class: "empty", text: "No failed record." }));
  else if (!f.decrypting && f.groups.length) box.appendChild(el("p", { class: "muted", text: "Reasons are sealed under the workload's key: only ids and counts are shown. Give the console the KEK (RQP_KEK_FILE) to group failures by error." }));
}, REFRESH * 3);
