// rqp console: the charts, drawn here as inline SVG -- a line chart (throughput, a VM's CPU,
// memory, disk, network) with the workloads that ran marked on it, the list's sparklines, and the
// VMs' CPU heatmap. No charting library: nothing is fetched from elsewhere.
import { BYTE_UNITS, PALETTE, clear, clock, el, nf, shortName, sv, when } from "./console.js";

function niceStep(span, ticks) {
  const raw = span / Math.max(1, ticks);
  if (raw <= 0) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}
// Y ticks people read at a glance: round steps in one unit per axis (bytes in binary units),
// with as many decimals as the step needs, so no two labels read the same.
function yAxis(max, unit, fixedMax) {
  if (fixedMax) {
    const step = niceStep(fixedMax, 4);
    return { top: fixedMax, step, label: (v) => v + (unit === "%" ? "%" : "") };
  }
  let scale = 1, suffix = "";
  if (unit === "B/s") {
    const floor = 1024; // a flat or idle chart still reads 0 … 1 KiB/s, not 0, 0, 1 B/s
    max = Math.max(max, floor);
    let i = 0;
    while (max / scale >= 1024 && i < BYTE_UNITS.length - 1) { scale *= 1024; i++; }
    suffix = " " + BYTE_UNITS[i] + "/s";
  } else {
    max = Math.max(max, unit === "%" ? 10 : 1);
    suffix = unit === "%" ? "%" : "";
  }
  const step = niceStep(max / scale, 4);
  const top = Math.ceil(max / scale / step - 1e-9) * step;
  // exactly the decimals the step has: 0.25 reads "0.25", never "0.3"
  const decimals = step >= 1 ? 0 : Math.min(3, (String(Number(step.toFixed(6))).split(".")[1] || "").length);
  const label = (v) => {
    const x = v / scale;
    const text = decimals ? x.toFixed(decimals) : (unit === "rec/s" && x >= 10000 ? (x / 1000) + "k" : nf.format(x));
    return text + suffix;
  };
  return { top: top * scale, step: step * scale, label };
}
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
function timeTicks(x0, x1, max) {
  const span = x1 - x0;
  const step = TIME_STEPS.find((s) => span / s <= max) || 86400;
  const out = [];
  const offset = new Date(x0 * 1000).getTimezoneOffset() * 60; // ticks on round local times
  for (let t = Math.ceil((x0 - offset) / step) * step + offset; t <= x1; t += step) out.push(t);
  return { ticks: out, seconds: step < 60 };
}
// Workload labels above a plot, legible however close the workloads are: marks closer than a
// label's width are labelled together ("3 workloads", their names in the tooltip), labels are
// kept inside the plot, and placed in up to ``lanes`` rows so none overprints another.
const CHAR_W = 6.1;
// an axis label's character at 11 px, generously (digits and units in the system font are narrower)
const LABEL_CHAR_W = 6.6;
function markLabels(marks, X, x0, left, right, lanes) {
  const sorted = marks.map((k) => ({ k, x: X(Math.max(x0, k.start)) })).sort((a, b) => a.x - b.x);
  const clusters = [];
  for (const m of sorted) {
    const c = clusters[clusters.length - 1];
    if (c && m.x - c.x < 90) c.items.push(m.k);
    else clusters.push({ x: m.x, items: [m.k] });
  }
  const ends = new Array(lanes).fill(-Infinity);
  const placed = [];
  for (const c of clusters) {
    const text = c.items.length === 1 ? shortName(c.items[0].name, 24) : `${c.items.length} workloads`;
    const w = text.length * CHAR_W + 8;
    const x = Math.max(left, Math.min(c.x, right - w));
    const lane = ends.findIndex((end) => x >= end);
    if (lane < 0) continue;
    ends[lane] = x + w;
    placed.push({ x, lane, text, title: c.items.map((k) => `${k.name}: ${when(k.start)} → ${k.end === null ? "running" : when(k.end)}`).join("\n") });
  }
  return placed;
}
function drawMarkLabels(svg, placed, top, lanes) {
  for (const p of placed) {
    const t = sv("text", { x: p.x + 2, y: top - 4 - (lanes - 1 - p.lane) * 13, class: "mark-label" }, p.text);
    t.appendChild(sv("title", {}, p.title));
    svg.appendChild(t);
  }
}


// A line chart: opts = {series: [{label, color, points: [[t, v], ...]}], unit, yMax, x0, x1,
// marks: [{name, start, end}], height, legend, title}.
export function lineChart(container, opts) {
  const W = Math.max(260, Math.round(container.clientWidth || 600));
  const H = opts.height || 200;
  // compact charts (a VM's small multiples) draw no labels: the overview above them has them
  const lanes = opts.marks && opts.marks.length && !opts.compact ? 2 : 0;
  const all = opts.series.flatMap((s) => s.points);
  let x0 = opts.x0, x1 = opts.x1;
  if (x0 === undefined) x0 = all.length ? Math.min(...all.map((p) => p[0])) : Date.now() / 1000 - 60;
  if (x1 === undefined) x1 = all.length ? Math.max(...all.map((p) => p[0])) : Date.now() / 1000;
  if (x1 - x0 < 10) x0 = x1 - 10;
  const vmax = all.length ? Math.max(...all.map((p) => p[1])) : 0;
  const ax = yAxis(vmax, opts.unit, opts.yMax);
  // the left margin fits the widest y label ("0.75 KiB/s" is wider than "50%"), so none is clipped
  let widest = 0;
  for (let v = 0; v <= ax.top + ax.step / 1e6; v += ax.step) widest = Math.max(widest, ax.label(v).length);
  const m = { l: Math.max(opts.compact ? 40 : 56, Math.ceil(widest * LABEL_CHAR_W) + 10), r: 10, t: (opts.title ? 26 : 8) + lanes * 13, b: 20 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const X = (t) => m.l + ((t - x0) / (x1 - x0)) * pw;
  const Y = (v) => m.t + ph - (Math.min(v, ax.top) / ax.top) * ph;
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  if (opts.title) svg.appendChild(sv("text", { x: 0, y: 13, class: "title" }, opts.title));
  const grid = sv("g", { class: "grid" });
  const axis = sv("g", { class: "axis" });
  for (let v = 0; v <= ax.top + ax.step / 1e6; v += ax.step) {
    grid.appendChild(sv("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }));
    svg.appendChild(sv("text", { x: m.l - 6, y: Y(v) + 4, "text-anchor": "end", class: "y-label" }, ax.label(v)));
  }
  const tt = timeTicks(x0, x1, Math.max(2, Math.floor(pw / 70)));
  for (const t of tt.ticks) {
    axis.appendChild(sv("line", { x1: X(t), x2: X(t), y1: m.t + ph, y2: m.t + ph + 4 }));
    // a tick near either edge is labelled inward, so its label is never cut off by the chart's edge
    const anchor = X(t) > W - 24 ? "end" : X(t) < 24 ? "start" : "middle";
    svg.appendChild(sv("text", { x: X(t), y: H - 5, "text-anchor": anchor, class: "time" }, clock(t, tt.seconds)));
  }
  axis.appendChild(sv("line", { x1: m.l, x2: W - m.r, y1: m.t + ph, y2: m.t + ph }));
  svg.appendChild(grid);
  // workloads: a band while each ran, a line at its start and (dashed) at its end
  const marks = (opts.marks || []).filter((k) => (k.end === null || k.end >= x0) && k.start <= x1);
  for (const k of marks) {
    const a = Math.max(x0, k.start), b = k.end === null ? x1 : Math.min(x1, k.end);
    const band = sv("rect", { x: X(a), y: m.t, width: Math.max(1, X(b) - X(a)), height: ph, class: "band" });
    band.appendChild(sv("title", {}, `${k.name}: ${when(k.start)} → ${k.end === null ? "running" : when(k.end)}`));
    svg.appendChild(band);
    if (k.start >= x0) svg.appendChild(sv("line", { x1: X(k.start), x2: X(k.start), y1: m.t, y2: m.t + ph, class: "mark-start" }));
    if (k.end !== null && k.end <= x1) svg.appendChild(sv("line", { x1: X(k.end), x2: X(k.end), y1: m.t, y2: m.t + ph, class: "mark-end" }));
  }
  if (lanes) drawMarkLabels(svg, markLabels(marks, X, x0, m.l, W - m.r, lanes), m.t, lanes);
  // the series, broken where the data has a gap (a logger outage, a console restart)
  opts.series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const pts = s.points;
    if (!pts.length) return;
    const steps = [];
    for (let j = 1; j < pts.length; j++) steps.push(pts[j][0] - pts[j - 1][0]);
    steps.sort((a, b) => a - b);
    const gap = steps.length ? Math.max(3 * steps[Math.floor(steps.length / 2)], 5) : Infinity;
    let seg = [];
    const flush = () => {
      if (seg.length === 1) svg.appendChild(sv("circle", { cx: seg[0][0], cy: seg[0][1], r: 1.8, fill: color }));
      else if (seg.length > 1) svg.appendChild(sv("polyline", { points: seg.map((p) => p.join(",")).join(" "), class: "series", stroke: color }));
      seg = [];
    };
    pts.forEach((p, j) => {
      if (j && p[0] - pts[j - 1][0] > gap) flush();
      seg.push([X(p[0]).toFixed(1), Y(p[1]).toFixed(1)]);
    });
    flush();
  });
  svg.appendChild(axis);
  if (!all.length) svg.appendChild(sv("text", { x: m.l + pw / 2, y: m.t + ph / 2, "text-anchor": "middle", class: "empty" }, opts.empty || "no data yet"));
  clear(container).appendChild(svg);
  if (opts.legend !== false) {
    const legend = el("div", { class: "legend" });
    opts.series.forEach((s, i) => {
      if (opts.series.length < 2 && !marks.length) return;
      const sw = el("span", { class: "sw" });
      sw.style.background = s.color || PALETTE[i % PALETTE.length];
      legend.appendChild(el("span", {}, sw, s.label));
    });
    if (marks.length) {
      // one entry per kind, however many workloads are marked
      legend.appendChild(el("span", {}, el("span", { class: "sw band" }), "workload running"));
      if (!opts.compact) {
        legend.appendChild(el("span", {}, el("span", { class: "sw start" }), "start"));
        legend.appendChild(el("span", {}, el("span", { class: "sw end" }), "end"));
      }
    }
    if (legend.childNodes.length) container.appendChild(legend);
  }
}

export function sparkline(points) {
  const W = 90, H = 22;
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H });
  if (points.length < 2) return svg;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const vmax = Math.max(1, ...points.map((p) => p[1]));
  const pts = points.map((p) => [((p[0] - t0) / Math.max(1, t1 - t0)) * (W - 2) + 1, H - 2 - (p[1] / vmax) * (H - 4)]);
  svg.appendChild(sv("polyline", { points: pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" "), class: "series", stroke: PALETTE[0] }));
  return svg;
}

function heatColor(v) {
  if (v === null || v === undefined) return "#f1f3f6";
  const stops = [[0, [241, 244, 248]], [20, [255, 240, 180]], [45, [253, 178, 76]], [70, [240, 89, 43]], [100, [177, 0, 38]]];
  for (let i = 1; i < stops.length; i++) {
    if (v <= stops[i][0]) {
      const [a, ca] = stops[i - 1], [b, cb] = stops[i];
      const f = (v - a) / (b - a);
      return `rgb(${ca.map((c, j) => Math.round(c + (cb[j] - c) * f)).join(",")})`;
    }
  }
  return "rgb(177,0,38)";
}
// Every VM on one chart: a row per VM, a column per time slice, colour = CPU %.
export function heatmap(container, data, x0, x1, marks) {
  const rows = data.rows;
  const W = Math.max(600, Math.round(container.clientWidth || 1000));
  const lanes = marks.length ? 2 : 0;
  const m = { l: 150, r: 70, t: 6 + lanes * 13, b: 22 };
  const rowH = rows.length > 16 ? 14 : 18;
  // the colour scale (0 to 100%) fits however few VMs there are: one VM's row is shorter than it
  const SCALE = [0, 25, 50, 75, 100], SCALE_STEP = 14;
  const rowsEnd = m.t + rows.length * rowH;
  const H = Math.max(rowsEnd + m.b, m.t + SCALE.length * SCALE_STEP + 4);
  const pw = W - m.l - m.r;
  const cw = pw / data.columns;
  const X = (t) => m.l + ((t - x0) / (x1 - x0)) * pw;
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  rows.forEach((row, i) => {
    const y = m.t + i * rowH;
    const name = sv("text", { x: m.l - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, shortName(row.vm, 22));
    svg.appendChild(name);
    row.cells.forEach((v, j) => {
      const cell = sv("rect", { x: m.l + j * cw, y: y + 1, width: Math.ceil(cw), height: rowH - 2, fill: heatColor(v) });
      cell.appendChild(sv("title", {}, `${row.vm} ${clock(x0 + j * data.width, false)}: ${v === null ? "no sample" : v.toFixed(0) + "% CPU"}`));
      svg.appendChild(cell);
    });
  });
  for (const k of marks) {
    if (k.start >= x0) svg.appendChild(sv("line", { x1: X(k.start), x2: X(k.start), y1: m.t, y2: rowsEnd, class: "mark-start" }));
    if (k.end !== null && k.end <= x1) svg.appendChild(sv("line", { x1: X(k.end), x2: X(k.end), y1: m.t, y2: rowsEnd, class: "mark-end" }));
  }
  if (lanes) drawMarkLabels(svg, markLabels(marks, X, x0, m.l, W - m.r, lanes), m.t, lanes);
  const tt = timeTicks(x0, x1, Math.floor(pw / 90));
  for (const t of tt.ticks) svg.appendChild(sv("text", { x: X(t), y: rowsEnd + m.b - 6, "text-anchor": "middle", class: "time" }, clock(t, tt.seconds)));
  // the colour scale
  SCALE.forEach((v, i) => {
    const y = m.t + i * SCALE_STEP;
    svg.appendChild(sv("rect", { x: W - m.r + 12, y, width: 14, height: 12, fill: heatColor(v), stroke: "#c9d1dc" }));
    svg.appendChild(sv("text", { x: W - m.r + 30, y: y + 10, class: "scale" }, v + "%"));
  });
  clear(container).appendChild(svg);
}
