// rqp console, the VMs page: every VM's CPU on one heatmap, then each VM's CPU, memory, disk and
// network over the chosen window (kept in the URL), with the workloads that ran marked on them.
import { $, PALETTE, ago, bytes, clear, duration, el, int } from "./console.js";
import { heatmap, lineChart } from "./charts.js";
import { REFRESH, getJSON, poll } from "./live.js";

let window_ = new URLSearchParams(location.search).get("window") || "1h";
const buttons = document.querySelectorAll("#windows button");
function mark() { buttons.forEach((b) => b.classList.toggle("on", b.dataset.window === window_)); }
mark();
let p = null;
buttons.forEach((b) => b.addEventListener("click", () => {
  window_ = b.dataset.window;
  history.replaceState(null, "", location.pathname + "?window=" + window_);
  mark();
  if (p) p.now();
}));
const charts = [
  ["cpu", "CPU", "%"],
  ["mem", "Memory", "%"],
  ["disk", "Disk", "B/s"],
  ["net", "Network", "B/s"],
];
function vmCard(vm, d) {
  const card = el("section", { class: "panel vm", dataset: { vm: vm.vm } });
  const l = vm.latest;
  card.appendChild(el("h2", {}, vm.vm, el("span", { class: "facts", text:
    `CPU now ${l.cpu === null ? "–" : l.cpu.toFixed(0) + "%"}, avg ${vm.cpu_avg === null ? "–" : vm.cpu_avg.toFixed(0) + "%"} · memory ${l.mem === null ? "–" : l.mem.toFixed(0) + "%"}${l.mem_used_bytes !== null ? " (" + bytes(l.mem_used_bytes) + ")" : ""} · net ${bytes(vm.net_bytes)} · disk ${bytes(vm.disk_bytes)} · last sample ${ago(l.at, d.until)} · ${vm.sources.join(", ")}` })));
  if (vm.warnings.length) card.appendChild(el("p", { class: "note", text: "Collector warnings: " + vm.warnings.join("; ") }));
  const row = el("div", { class: "charts" });
  card.appendChild(row);
  return [card, row];
}
p = poll(async () => {
  let d;
  try {
    d = await getJSON("/api/vms?window=" + window_);
  } catch (e) {
    const err = $("vms-error");
    err.textContent = e.message;
    err.hidden = false;
    throw e;
  }
  $("vms-error").hidden = true;
  // the charts span the samples there are: a logger started 4 minutes ago fills them, not a sliver of 1 h
  const fitted = d.since > d.window_since + 1 ? ` · samples cover the last ${duration(d.until - d.since)} of ${d.window}` : "";
  $("vms-summary").textContent = `${d.vms.length} VM(s), ${int(d.samples)} samples, ${d.marks.length} workload(s) in the window${fitted} · ${d.location}`;
  heatmap($("heatmap"), d.heatmap, d.since, d.until, d.marks);
  $("heatmap").dataset.window = d.window;
  if (!d.vms.length) {
    clear($("heatmap")).appendChild(el("p", { class: "empty", text: `No samples in the last ${d.window} in ${d.location}: is rqp-metrics-logger running with the same RQP_BLOB_URL?` }));
  }
  const box = clear($("vms"));
  for (const vm of d.vms) {
    const [card, row] = vmCard(vm, d);
    box.appendChild(card);
    for (const [key, title, unit] of charts) {
      const c = vm.charts[key];
      const holder = el("div", { class: "mini", dataset: { chart: key } });
      row.appendChild(holder);
      if (!c) continue;
      lineChart(holder, {
        series: c.series.map((s, i) => ({ label: s.label, points: s.points, color: PALETTE[i % PALETTE.length] })),
        unit, yMax: c.y_max, x0: d.since, x1: d.until, marks: d.marks, height: 132, compact: true, title,
        empty: "no samples",
      });
    }
  }
}, Math.max(REFRESH, 10000));
