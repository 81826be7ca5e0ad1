// rqp console: each page polls its JSON endpoint and redraws itself; charts are inline SVG drawn
// here. No library, nothing fetched from elsewhere, no inline code (the page's CSP forbids it).
// Data is put into the page with textContent only, never as HTML: workload ids, job ids and
// rejection reasons come from Redis, which a Redis writer controls.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const body = document.body;
  const PAGE = body.dataset.page;
  const REFRESH = Number(body.dataset.refresh) || 1500;
  const CAN_ACT = body.dataset.actions === "on";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const CSRF = csrfMeta ? csrfMeta.content : "";
  const WORKLOAD_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
  const PALETTE = ["#1f5fbf", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285"];

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  function sv(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function $(id) { return document.getElementById(id); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  // Refresh a table's rows in place: a row (by key) and each of its cells stay the same element
  // while their content is unchanged, so a link being clicked or hovered is never swapped out
  // from under the pointer between two refreshes.
  function patchRows(tbody, rows) {
    const old = new Map();
    for (const tr of Array.from(tbody.children)) old.set(tr.dataset.key, tr);
    let at = 0;
    for (const tr of rows) {
      const key = tr.dataset.key;
      let keep = old.get(key);
      if (keep) {
        old.delete(key);
        for (const [k, v] of Object.entries(tr.dataset)) keep.dataset[k] = v;
        const cells = Array.from(tr.children), mine = Array.from(keep.children);
        if (cells.length !== mine.length) { keep.replaceWith(tr); keep = tr; }
        else cells.forEach((c, i) => { if (!c.isEqualNode(mine[i])) mine[i].replaceWith(c); });
      } else keep = tr;
      if (tbody.children[at] !== keep) tbody.insertBefore(keep, tbody.children[at] || null);
      at++;
    }
    for (const tr of old.values()) tr.remove();
  }
  function setTile(id, value, raw) {
    const v = $(id).querySelector(".v");
    v.textContent = value;
    if (raw !== undefined) v.dataset.value = String(raw);
    v.classList.toggle("nonzero", Number(raw) > 0);
  }

  // ------------------------------------------------------------------ formatting
  const nf = new Intl.NumberFormat("en-US");
  function int(n) { return n === null || n === undefined ? "–" : nf.format(Math.round(n)); }
  function rate(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 100000) return nf.format(Math.round(n / 1000)) + "k";
    if (n >= 10000) return (n / 1000).toFixed(1) + "k";
    return n >= 100 ? nf.format(Math.round(n)) : n.toFixed(1);
  }
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(sec).padStart(2, "0")} s`;
  }
  function ago(t, now) {
    if (!t) return "–";
    const s = Math.max(0, (now || Date.now() / 1000) - t);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return (s / 3600).toFixed(1).replace(/\.0$/, "") + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function clock(t, seconds) {
    if (!t) return "–";
    const d = new Date(t * 1000);
    const p = (x) => String(x).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}` + (seconds === false ? "" : `:${p(d.getSeconds())}`);
  }
  function when(t) {
    if (!t) return "–";
    const d = new Date(t * 1000);
    const today = new Date();
    const day = d.toDateString() === today.toDateString() ? "" : d.toISOString().slice(0, 10) + " ";
    return day + clock(t);
  }
  const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    let i = 0;
    while (Math.abs(n) >= 1024 && i < BYTE_UNITS.length - 1) { n /= 1024; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + BYTE_UNITS[i];
  }

  // ------------------------------------------------------------------ talking to the console
  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
    if (r.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("logged out");
    }
    const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) { const e = new Error(data.error || `HTTP ${r.status}`); e.status = r.status; throw e; }
    return data;
  }
  async function postJSON(url, payload) {
    const r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(payload),
    });
    const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  }
  function setLive(ok, why) {
    const live = $("live");
    if (!live) return;
    live.className = "live " + (ok ? "ok" : "stale");
    live.textContent = ok ? "live · " + clock(Date.now() / 1000) : "not updating: " + why;
  }
  // Run ``fn`` now and again ``every`` ms after each run ends (slower while the tab is hidden).
  function poll(fn, every) {
    let timer = null;
    async function tick() {
      clearTimeout(timer);
      try { await fn(); setLive(true); } catch (e) { if (e.message !== "logged out") setLive(false, e.message); }
      timer = setTimeout(tick, document.hidden ? every * 5 : every);
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
    tick();
    return { now: tick };
  }
  let toastTimer = null;
  function toast(message, bad) {
    const t = $("toast");
    t.textContent = message;
    t.className = "toast" + (bad ? " bad" : "");
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 9000 : 5000);
  }
  // The confirm step of every action: a modal dialog naming the workload and what will happen.
  function confirmDialog(title, text, yesLabel) {
    return new Promise((resolve) => {
      const d = $("confirm");
      $("confirm-title").textContent = title;
      $("confirm-text").textContent = text;
      $("confirm-yes").textContent = yesLabel;
      d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
      d.showModal();
      $("confirm-no").focus();
    });
  }

  // ------------------------------------------------------------------ charts
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
  function shortName(name, n) { return name.length > n ? name.slice(0, n - 1) + "…" : name; }

  // A line chart: opts = {series: [{label, color, points: [[t, v], ...]}], unit, yMax, x0, x1,
  // marks: [{name, start, end}], height, legend, title}.
  function lineChart(container, opts) {
    const W = Math.max(260, Math.round(container.clientWidth || 600));
    const H = opts.height || 200;
    // compact charts (a VM's small multiples) draw no labels: the overview above them has them
    const lanes = opts.marks && opts.marks.length && !opts.compact ? 2 : 0;
    const m = { l: opts.compact ? 58 : 70, r: 10, t: (opts.title ? 26 : 8) + lanes * 13, b: 20 };
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    const all = opts.series.flatMap((s) => s.points);
    let x0 = opts.x0, x1 = opts.x1;
    if (x0 === undefined) x0 = all.length ? Math.min(...all.map((p) => p[0])) : Date.now() / 1000 - 60;
    if (x1 === undefined) x1 = all.length ? Math.max(...all.map((p) => p[0])) : Date.now() / 1000;
    if (x1 - x0 < 10) x0 = x1 - 10;
    const vmax = all.length ? Math.max(...all.map((p) => p[1])) : 0;
    const ax = yAxis(vmax, opts.unit, opts.yMax);
    const X = (t) => m.l + ((t - x0) / (x1 - x0)) * pw;
    const Y = (v) => m.t + ph - (Math.min(v, ax.top) / ax.top) * ph;
    const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
    if (opts.title) svg.appendChild(sv("text", { x: 0, y: 13, class: "title" }, opts.title));
    const grid = sv("g", { class: "grid" });
    const axis = sv("g", { class: "axis" });
    for (let v = 0; v <= ax.top + ax.step / 1e6; v += ax.step) {
      grid.appendChild(sv("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }));
      svg.appendChild(sv("text", { x: m.l - 6, y: Y(v) + 4, "text-anchor": "end" }, ax.label(v)));
    }
    const tt = timeTicks(x0, x1, Math.max(2, Math.floor(pw / 70)));
    for (const t of tt.ticks) {
      axis.appendChild(sv("line", { x1: X(t), x2: X(t), y1: m.t + ph, y2: m.t + ph + 4 }));
      // a tick near either edge is labelled inward, so its label is never cut off by the chart's edge
      const anchor = X(t) > W - 24 ? "end" : X(t) < 24 ? "start" : "middle";
      svg.appendChild(sv("text", { x: X(t), y: H - 5, "text-anchor": anchor }, clock(t, tt.seconds)));
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

  function sparkline(points) {
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
  function heatmap(container, data, x0, x1, marks) {
    const rows = data.rows;
    const W = Math.max(600, Math.round(container.clientWidth || 1000));
    const lanes = marks.length ? 2 : 0;
    const m = { l: 150, r: 70, t: 6 + lanes * 13, b: 22 };
    const rowH = rows.length > 16 ? 14 : 18;
    const H = m.t + rows.length * rowH + m.b;
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
      if (k.start >= x0) svg.appendChild(sv("line", { x1: X(k.start), x2: X(k.start), y1: m.t, y2: H - m.b, class: "mark-start" }));
      if (k.end !== null && k.end <= x1) svg.appendChild(sv("line", { x1: X(k.end), x2: X(k.end), y1: m.t, y2: H - m.b, class: "mark-end" }));
    }
    if (lanes) drawMarkLabels(svg, markLabels(marks, X, x0, m.l, W - m.r, lanes), m.t, lanes);
    const tt = timeTicks(x0, x1, Math.floor(pw / 90));
    for (const t of tt.ticks) svg.appendChild(sv("text", { x: X(t), y: H - 6, "text-anchor": "middle" }, clock(t, tt.seconds)));
    // the colour scale
    [0, 25, 50, 75, 100].forEach((v, i) => {
      const y = m.t + i * 14;
      svg.appendChild(sv("rect", { x: W - m.r + 12, y, width: 14, height: 12, fill: heatColor(v), stroke: "#c9d1dc" }));
      svg.appendChild(sv("text", { x: W - m.r + 30, y: y + 10 }, v + "%"));
    });
    clear(container).appendChild(svg);
  }

  // ------------------------------------------------------------------ shared bits
  function badge(state) { return el("span", { class: "badge " + state, text: state }); }
  function progressCell(row) {
    // while the data is still being read the total is unknown: no percentage of what is queued so
    // far (it would read 94% with a quarter done), a striped bar and how far the reading got
    const reading = row.total === null;
    const bar = el("div", { class: "bar " + (reading ? "reading" : row.state === "done" ? "done" : row.state === "paused" ? "paused" : "") });
    const fill = el("div", { class: "fill" });
    const known = reading ? 0 : row.known || 0;
    fill.style.width = (known ? Math.min(100, (100 * row.done) / known) : row.state === "done" ? 100 : 0) + "%";
    const failed = el("div", { class: "fill failed" });
    if (known && row.failed) {
      failed.style.left = (100 * row.done) / known + "%";
      failed.style.width = Math.max(0.5, (100 * row.failed) / known) + "%";
    }
    bar.append(fill, failed);
    const of = reading ? `reading: ${int(row.enqueued)} so far` : `of ${int(row.total)}`;
    return el("div", { class: "progress-cell" }, bar, el("span", { class: "pct", text: reading ? "–" : (100 * row.fraction).toFixed(1) + "%" }), el("span", { class: "of", text: of }));
  }
  function numCell(key, n, bad) {
    return el("td", { class: "num" + (n === 0 ? " zero" : bad && n > 0 ? " bad" : ""), dataset: { k: key, value: String(n) } }, int(n));
  }

  // ------------------------------------------------------------------ Workloads
  function workloadsPage() {
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
    function render(data) {
      last = data;
      const rows = data.workloads.filter(matches);
      patchRows(tbody, rows.map((row) =>
        el("tr", { dataset: { key: row.id, id: row.id, state: row.state } },
          el("td", { class: "id" }, el("a", { href: "/workloads/" + encodeURIComponent(row.id), text: row.id, title: row.id })),
          el("td", {}, badge(row.state)),
          el("td", { class: "progress" }, progressCell(row)),
          numCell("done", row.done),
          numCell("failed", row.failed, true),
          numCell("retrying", row.retrying),
          numCell("processing", row.processing),
          el("td", { class: "rate", dataset: { k: "rate" } }, el("span", { text: row.live ? rate(row.rate) : rate(row.average_rate) + " avg" }), sparkline(row.spark || [])),
          el("td", { class: "num", dataset: { k: "eta" } }, row.state === "done" ? "done" : row.eta === null ? "–" : duration(row.eta)),
          el("td", { dataset: { k: "priority" } }, row.priority),
          el("td", { class: "num", title: when(row.started_at) }, ago(row.started_at, data.now)))));
      const live = data.workloads.filter((r) => r.live).length;
      $("summary").textContent = `${data.workloads.length} workloads, ${live} running or paused` + (rows.length !== data.workloads.length ? ` · ${rows.length} shown` : "");
      $("empty").hidden = data.workloads.length > 0;
      const sub = $("submitted");
      sub.hidden = !data.submitted.length;
      sub.textContent = data.submitted.length ? `Submitted, waiting for a scheduler: ${data.submitted.join(", ")}` : "";
    }
    poll(async () => render(await getJSON("/api/workloads")), REFRESH);
  }

  // ------------------------------------------------------------------ one workload
  const ACTION_TEXT = {
    pause: ["Pause", "Nothing new is queued; chunks already running finish and commit. Nothing is lost; resume carries on."],
    resume: ["Resume", "The chunks taken off the queue go back on it and the enqueue carries on."],
    cancel: ["Cancel", "Nothing new runs. Chunks in hand finish; what was done is kept and consolidated, and the records that never ran are counted. This cannot be undone."],
    retry: ["Retry failed", "The workload's failed records run again as a new round; records already done are not touched."],
  };
  function workloadPage() {
    const W = body.dataset.workload;
    const actions = $("actions");
    let shownActions = "";
    async function act(action) {
      const [label, text] = ACTION_TEXT[action];
      const ok = await confirmDialog(`${label} workload ${W}?`, text, `${label} ${W}`);
      if (!ok) return;
      try {
        const res = await postJSON(`/api/workloads/${encodeURIComponent(W)}/actions/${action}`, { confirm: W });
        toast(res.requeued !== undefined ? `${W}: ${int(res.requeued)} failed records queued again` : `${W} is now ${res.state}`);
      } catch (e) {
        toast(e.message, true);
      }
      detail.now();
    }
    function renderActions(d) {
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
    function render(d) {
      $("workload-error").hidden = true;
      const st = $("state");
      st.className = "badge " + d.state;
      st.textContent = d.state;
      $("priority").textContent = "priority " + d.priority;
      renderActions(d);
      const reading = d.total === null;
      const known = reading ? 0 : d.known || 0;
      $("bar-fill").parentElement.classList.toggle("reading", reading);
      $("bar-fill").parentElement.classList.toggle("done", d.state === "done");
      $("bar-fill").parentElement.classList.toggle("paused", d.state === "paused");
      $("bar-fill").style.width = (known ? (100 * d.done) / known : d.state === "done" ? 100 : 0) + "%";
      const bf = $("bar-failed");
      bf.style.left = (known ? (100 * d.done) / known : 0) + "%";
      bf.style.width = (known && d.failed ? Math.max(0.3, (100 * d.failed) / known) : 0) + "%";
      $("bar-text").textContent = (reading ? `${int(d.done + d.failed)} records finished · still reading the data: ${int(d.enqueued)} records so far` : `${(100 * d.fraction).toFixed(1)}% · ${int(d.done + d.failed)} of ${int(d.total)} records finished`) +
        (d.reclaimed ? ` · ${int(d.reclaimed)} chunks re-run after a lost worker` : "") + (d.error ? ` · ${d.error}` : "") + (d.processor_error ? ` · processor: ${d.processor_error}` : "");
      setTile("t-done", int(d.done), d.done);
      setTile("t-failed", int(d.failed), d.failed);
      setTile("t-retrying", int(d.retrying), d.retrying);
      setTile("t-processing", int(d.processing), d.processing);
      setTile("t-queued", int(d.queued), d.queued);
      setTile("t-rate", d.live ? rate(d.rate) : rate(d.average_rate), d.live ? d.rate : d.average_rate);
      setTile("t-eta", d.state === "done" ? "done" : d.eta === null ? "–" : duration(d.eta), d.eta);
      setTile("t-elapsed", duration(d.elapsed), d.elapsed);
      const x1 = d.live ? d.now : d.finished_at || d.now;
      const watched = d.live || d.throughput.length > 1;
      lineChart($("throughput"), {
        series: [{ label: "records/s", points: watched ? d.throughput : [] }],
        unit: "rec/s", height: 190, legend: false, x1,
        x0: Math.min(d.started_at || x1 - 30, x1 - 30),
        empty: d.live ? "measuring…" : `not watched while it ran: ${rate(d.average_rate)} records/s on average`,
      });
      renderTimeline(d);
      renderInFlight(d);
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
    const detail = poll(async () => {
      try {
        render(await getJSON("/api/workloads/" + encodeURIComponent(W)));
      } catch (e) {
        if (e.status === 404) { const p = $("workload-error"); p.textContent = e.message; p.hidden = false; return; }
        throw e;
      }
    }, REFRESH);

    async function openRecord(rid) {
      const box = $("record");
      box.hidden = false;
      clear(box).appendChild(el("h3", { text: `Record ${rid}: loading…` }));
      try {
        const r = await getJSON(`/api/workloads/${encodeURIComponent(W)}/records/${rid}`);
        clear(box).appendChild(el("h3", { id: "record-title", text: `Record ${rid}: ${r.state}` }));
        const dl = el("dl", { class: "facts" });
        const rows = [["Attempts", r.attempts === null || r.attempts === undefined ? "–" : String(r.attempts)]];
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
    function group(g, kind) {
      const chips = el("div", { class: "chips" });
      for (const id of g.ids) chips.appendChild(el("button", { type: "button", class: "chip", dataset: { record: String(id) }, on: { click: () => openRecord(id) } }, "#" + id));
      if (g.count > g.ids.length) chips.appendChild(el("span", { class: "muted", text: `+${int(g.count - g.ids.length)} more` }));
      return el("div", { class: "group " + kind, dataset: { category: g.category } },
        el("span", { class: "count", text: int(g.count) }), el("div", { class: "cat", text: g.category }),
        g.example ? el("div", { class: "example", title: g.example, text: g.example }) : null, chips);
    }
    poll(async () => {
      const f = await getJSON(`/api/workloads/${encodeURIComponent(W)}/failures`);
      const box = clear($("failures"));
      $("failures-count").textContent = `${int(f.failed)} failed, ${int(f.retrying)} waiting for a retry` + (f.partial ? ` · grouped from the first ${int(f.looked_at)}` : "");
      for (const g of f.groups) box.appendChild(group(g, "failed"));
      for (const g of f.retry_groups) box.appendChild(group(g, "retrying"));
      if (!f.groups.length && !f.retry_groups.length) box.appendChild(el("p", { class: "empty", text: "No failed record." }));
      else if (!f.decrypting && f.groups.length) box.appendChild(el("p", { class: "muted", text: "Reasons are sealed under the workload's key: only ids and counts are shown. Give the console the KEK (RQP_KEK_FILE) to group failures by error." }));
    }, REFRESH * 3);
  }

  // ------------------------------------------------------------------ Fleet
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
  function fleetPage() {
    function hostCard(h, now) {
      const card = el("section", { class: "panel host", dataset: { host: h.host } });
      card.appendChild(el("h2", {}, h.host, el("span", { class: "counts", text: `${h.processors.length} processor(s) · ${h.busy} busy, ${h.idle} idle worker(s)` })));
      for (const p of h.processors) {
        const off = /^OFF|MISSING/i.test(p.protections);
        card.appendChild(el("p", { class: "protections" + (off ? " off" : ""), title: p.protections },
          `pid ${p.pid} · ${p.workers} workers · seen ${ago(p.seen_at, now)} · ${protections(p.protections)}`));
      }
      if (!h.processors.length) card.appendChild(el("p", { class: "protections off", text: "No rqp-processor registered for this host (an older processor, or one whose Redis user may not write rqp:fleet): protections unknown." }));
      const tbody = el("tbody");
      for (const w of h.workers) {
        const job = w.job;
        const doing = job ? (job.workload ? el("span", {}, el("a", { href: "/workloads/" + encodeURIComponent(job.workload), text: job.workload }), " · " + job.chunk) : job.id) : "–";
        tbody.appendChild(el("tr", { dataset: { worker: w.name } },
          el("td", { title: w.name }, w.pid === null ? w.name : "pid " + w.pid),
          el("td", {}, badge(w.stale ? "stale" : w.state)),
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
  }

  // ------------------------------------------------------------------ VMs
  function vmsPage() {
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
      $("vms-summary").textContent = `${d.vms.length} VM(s), ${int(d.samples)} samples, ${d.marks.length} workload(s) in the window · ${d.location}`;
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
  }

  // ------------------------------------------------------------------ Audit
  function auditPage() {
    poll(async () => {
      const d = await getJSON("/api/audit");
      const tbody = clear(document.querySelector("#audit tbody"));
      for (const a of d.entries) {
        tbody.appendChild(el("tr", {},
          el("td", { class: "num", text: when(a.at) }),
          el("td", { text: a.who }),
          el("td", { text: a.what }),
          el("td", {}, el("a", { href: "/workloads/" + encodeURIComponent(a.workload), text: a.workload }))));
      }
      $("audit-empty").hidden = d.entries.length > 0;
    }, REFRESH * 2);
  }

  const pages = { workloads: workloadsPage, workload: workloadPage, fleet: fleetPage, vms: vmsPage, audit: auditPage };
  if (pages[PAGE]) pages[PAGE]();
})();
