// rqp console, the fleet page: each host's processors (with their sandbox protections) and
// workers, and the jobs the processors rejected before any user code ran.
import { $, WORKLOAD_ID, ago, badge, clear, duration, el, int, when } from "./console.js";
import { REFRESH, getJSON, poll } from "./live.js";

// The processor's protections line, in a few words (the full line is the tooltip):
// "sandbox: separate process · landlock ABI 7 · seccomp · rlimits · no_new_privs".
function protections(line) {
  if (!line) return "sandbox: not reported";
  if (/^OFF/.test(line)) return line;
  const [on, missing] = line.replace(/^sandbox:\s*/, "").split(/;\s*MISSING:\s*/);
  const heads = [];
  let depth = 0, cur = "";
  for (const ch of on) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) { heads.push(cur); cur = ""; continue; }
    cur += ch;
  }
  heads.push(cur);
  const short = heads.map((h) => h.split("(")[0].trim()).filter(Boolean).join(" · ");
  return "sandbox: " + short + (missing ? " · MISSING: " + missing : "");
}
function hostCard(h, now) {
  const card = el("section", { class: "panel host", dataset: { host: h.host } });
  card.appendChild(el("h2", {}, h.host, el("span", { class: "counts", text: `${h.processors.length} processor(s) · ${h.busy} busy, ${h.idle} idle worker(s)` })));
  for (const p of h.processors) {
    const off = /^OFF|MISSING/i.test(p.protections);
    card.appendChild(el("p", { class: "protections" + (off ? " off" : ""), title: p.protections },
      el("span", { class: "badge self-reported", text: p.evidence || "self-reported", title: "written to Redis by the processor itself, unsigned: not verified" }), " ",
      `pid ${p.pid} · ${p.workers} workers · seen ${ago(p.seen_at, now)} · ${protections(p.protections)}`));
  }
  if (!h.processors.length) card.appendChild(el("p", { class: "protections off", text: "No rqp-processor registered for this host (an older processor, or one whose Redis user may not write rqp:fleet): protections unknown." }));
  const tbody = el("tbody");
  for (const w of h.workers) {
    const job = w.job;
    const doing = job ? (job.workload ? el("span", {}, el("a", { href: "/workloads/" + encodeURIComponent(job.workload), text: job.workload }), " · " + job.chunk) : job.id) : "–";
    tbody.appendChild(el("tr", { dataset: { worker: w.name } },
      el("td", { title: w.name }, w.pid === null ? w.name : "pid " + w.pid),
      el("td", { title: w.stale ? `no heartbeat for ${duration(now - (w.heartbeat || 0))}: RQ promised one within ${duration(w.stale_after)} while ${w.state}` : `stale only after ${duration(w.stale_after)} without a heartbeat (what RQ promises a${w.state === "busy" ? " busy" : "n idle"} worker)` }, badge(w.stale ? "stale" : w.state)),
      el("td", {}, doing),
      el("td", { class: "num" }, ago(w.heartbeat, now)),
      el("td", { class: "num" }, int(w.succeeded)),
      el("td", { class: "num" }, int(w.failed))));
  }
  card.appendChild(el("table", { class: "grid small" },
    el("thead", {}, el("tr", {}, el("th", { text: "Worker" }), el("th", { text: "State" }), el("th", { text: "Doing (workload · chunk)" }), el("th", { class: "num", text: "Heartbeat" }), el("th", { class: "num", text: "Chunks ok" }), el("th", { class: "num", text: "Jobs failed" }))),
    tbody));
  return card;
}
poll(async () => {
  const d = await getJSON("/api/fleet");
  const hosts = clear($("hosts"));
  for (const h of d.hosts) hosts.appendChild(hostCard(h, d.now));
  $("hosts-empty").hidden = d.hosts.length > 0;
  $("fleet-evidence").textContent = d.evidence_note;
  $("fleet-summary").textContent = `${d.hosts.length} host(s), ${d.processors} processor(s), ${d.workers} worker(s), ${d.busy} busy · ${int(d.rq_queued)} chunk(s) waiting on RQ queue ${d.rq_queue}`;
  const tbody = clear(document.querySelector("#rejected tbody"));
  for (const x of d.rejected) {
    tbody.appendChild(el("tr", {},
      el("td", { class: "num" }, when(x.at)),
      el("td", { text: x.job }),
      // what a forged job names as its workload is the intruder's text: a link only when it is a workload id
      el("td", {}, x.workload && WORKLOAD_ID.test(x.workload) ? el("a", { href: "/workloads/" + x.workload, text: x.workload }) : el("code", { text: x.workload || "–" })),
      el("td", { text: x.worker || "–" }),
      el("td", { class: "reason", text: x.reason })));
  }
  $("rejected-empty").hidden = d.rejected.length > 0;
}, REFRESH);
