// rqp console, the workloads page: every workload's progress, rate and ETA, filtered by id and
// state (kept in the URL), refreshed in place so a row being clicked is never replaced under the pointer.
import { $, ago, badge, clear, duration, el, failuresBadge, numCell, patchRows, progressCell, rate, when } from "./console.js";
import { sparkline } from "./charts.js";
import { REFRESH, getJSON, poll } from "./live.js";

const tbody = document.querySelector("#workloads tbody");
const filter = $("filter"), stateFilter = $("state-filter");
let last = null;
const params = new URLSearchParams(location.search);
filter.value = params.get("q") || "";
stateFilter.value = params.get("state") || "";
function keep() {
  const p = new URLSearchParams();
  if (filter.value) p.set("q", filter.value);
  if (stateFilter.value) p.set("state", stateFilter.value);
  history.replaceState(null, "", location.pathname + (p.toString() ? "?" + p : ""));
  if (last) render(last);
}
filter.addEventListener("input", keep);
stateFilter.addEventListener("change", keep);
function matches(row) {
  const q = filter.value.trim().toLowerCase();
  if (q && !row.id.includes(q)) return false;
  const s = stateFilter.value;
  if (!s) return true;
  if (s === "live") return row.live;
  if (s === "with-failures") return row.failed > 0;
  return row.state === s;
}
// why an ended workload's counts are marked unverified: no sealed summary vouches for them here, or
// (as rqp status says) they are its sealed counts but no sealed head confirms their round
function unverifiedWhy(row) {
  return row.round_note ? `these are its sealed counts, but ${row.round_note}` : "no sealed summary vouches for these counts here";
}
// a workload whose manifest.json is not a manifest (junk in the blob store): marked, with the one
// line saying which blob and what to do, while every other row shows as ever
function unreadable(row) {
  return el("span", { class: "unreadable" }, el("span", { class: "badge unverified", title: row.unreadable, text: "unreadable" }),
    el("span", { class: "unreadable-why", text: row.unreadable }));
}
// One workload's row, keyed by its id (patchRows keeps the row and its unchanged cells).
function workloadRow(row, now) {
  return el("tr", { dataset: { key: row.id, id: row.id, state: row.state, failures: String(row.failed > 0) } },
    el("td", { class: "id" }, el("a", { href: "/workloads/" + encodeURIComponent(row.id), text: row.id, title: row.id })),
    el("td", {}, badge(row.state), failuresBadge(row), row.unreadable ? unreadable(row) : row.verified === false ? el("span", { class: "badge unverified", title: unverifiedWhy(row), text: "unverified" }) : ""),
    el("td", { class: "progress" }, progressCell(row)),
    numCell("done", row.done),
    numCell("failed", row.failed, true),
    numCell("retrying", row.retrying),
    numCell("processing", row.processing),
    el("td", { class: "rate", dataset: { k: "rate" } }, el("span", { text: row.live ? rate(row.rate) : rate(row.average_rate) + " avg" }), sparkline(row.spark || [])),
    el("td", { class: "num", dataset: { k: "eta" } }, row.state === "done" ? "done" : row.eta === null ? "–" : duration(row.eta)),
    el("td", { dataset: { k: "priority" } }, row.priority),
    el("td", { class: "num", title: when(row.started_at) }, ago(row.started_at, now)));
}
function render(data) {
  last = data;
  const rows = data.workloads.filter(matches);
  patchRows(tbody, rows.map((row) => workloadRow(row, data.now)));
  const live = data.workloads.filter((r) => r.live).length;
  $("summary").textContent = `${data.workloads.length} workloads, ${live} running or paused` + (rows.length !== data.workloads.length ? ` · ${rows.length} shown` : "");
  $("empty").hidden = data.workloads.length > 0;
  const sub = $("submitted");
  sub.hidden = !data.submitted.length;
  sub.textContent = data.submitted.length ? `Submitted, waiting for a scheduler: ${data.submitted.join(", ")}` : "";
  // refused by the scheduler (as Redis holds it, unverified): each with its reason, linked to its page
  const refused = clear($("refused"));
  refused.hidden = !(data.refused || []).length;
  for (const x of data.refused || []) {
    refused.appendChild(el("li", { dataset: { id: x.id } }, badge("refused"), " ",
      el("a", { href: "/workloads/" + encodeURIComponent(x.id), text: x.id }), ` ${when(x.at)}: ${x.reason} (as Redis holds it: unverified)`));
  }
}
poll(async () => render(await getJSON("/api/workloads")), REFRESH);
