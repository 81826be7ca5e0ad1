// rqp console: the rendering helpers every page module shares -- DOM building, number and time
// formatting, progress bars, in-place row refresh. No library, nothing fetched from elsewhere, no
// inline code (the page's CSP forbids it). Data is put into the page with textContent only, never
// as HTML: workload ids, job ids and rejection reasons come from Redis, which a Redis writer controls.
const SVG = "http://www.w3.org/2000/svg";
export const WORKLOAD_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const PALETTE = ["#1f5fbf", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285"];

// ------------------------------------------------------------------ DOM helpers
export function el(tag, attrs, ...children) {
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
export function sv(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
export function $(id) { return document.getElementById(id); }
export function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
// Refresh a table's rows in place: a row (by key) and each of its cells stay the same element
// while their content is unchanged, so a link being clicked or hovered is never swapped out
// from under the pointer between two refreshes.
export function patchRows(tbody, rows) {
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
export function setTile(id, value, raw) {
  const v = $(id).querySelector(".v");
  v.textContent = value;
  if (raw !== undefined) v.dataset.value = String(raw);
  v.classList.toggle("nonzero", Number(raw) > 0);
}

// ------------------------------------------------------------------ formatting
export const nf = new Intl.NumberFormat("en-US");
export function int(n) { return n === null || n === undefined ? "–" : nf.format(Math.round(n)); }
export function rate(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 100000) return nf.format(Math.round(n / 1000)) + "k";
  if (n >= 10000) return (n / 1000).toFixed(1) + "k";
  return n >= 100 ? nf.format(Math.round(n)) : n.toFixed(1);
}
export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(sec).padStart(2, "0")} s`;
}
export function ago(t, now) {
  if (!t) return "–";
  const s = Math.max(0, (now || Date.now() / 1000) - t);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1).replace(/\.0$/, "") + " h ago";
  return Math.round(s / 86400) + " d ago";
}
export function clock(t, seconds) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  const p = (x) => String(x).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}` + (seconds === false ? "" : `:${p(d.getSeconds())}`);
}
export function when(t) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  const today = new Date();
  const day = d.toDateString() === today.toDateString() ? "" : d.toISOString().slice(0, 10) + " ";
  return day + clock(t);
}
export const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
export function bytes(n) {
  if (n === null || n === undefined) return "–";
  let i = 0;
  while (Math.abs(n) >= 1024 && i < BYTE_UNITS.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + BYTE_UNITS[i];
}
// how far the reading of the data got, while the total is unknown: "reading the data: 43.0% (12.3
// MiB of 28.6 MiB)" when the scheduler published the bytes read, else the records read so far (the
// same fraction, rounded down like rqp status, so 99.9% never shows as 100.0% before the end)
export function readingText(row) {
  if (row.read_fraction === null || row.read_fraction === undefined) return `reading the data: ${int(row.enqueued)} records so far`;
  const pct = (Math.floor(row.read_fraction * 1000) / 10).toFixed(1);
  return `reading the data: ${pct}% (${bytes(Math.min(row.read_bytes, row.data_bytes))} of ${bytes(row.data_bytes)})`;
}
export function shortName(name, n) { return name.length > n ? name.slice(0, n - 1) + "…" : name; }

// ------------------------------------------------------------------ cells and bars
export function badge(state) { return el("span", { class: "badge " + state, text: state }); }
// An ended workload with failed records: "done" alone would read as a clean run.
export const ENDED = new Set(["done", "failed", "cancelled"]);
export function endedWithFailures(row) { return ENDED.has(row.state) && row.failed > 0; }
export function failuresBadge(row) {
  return endedWithFailures(row) ? el("span", { class: "badge with-failures", title: "finished with failed records", text: `with ${int(row.failed)} failed` }) : null;
}
export function progressCell(row) {
  // while the data is still being read the total is unknown: no percentage of what is queued so
  // far (it would read 94% with a quarter done), a striped bar and how far the reading got
  const reading = row.total === null;
  const bar = el("div", { class: "bar " + (reading ? "reading" : row.state === "done" ? "done" : row.state === "paused" ? "paused" : "") + (endedWithFailures(row) ? " with-failures" : "") });
  const fill = el("div", { class: "fill" });
  const known = reading ? 0 : row.known || 0;
  fill.style.width = (known ? Math.min(100, (100 * row.done) / known) : row.state === "done" ? 100 : 0) + "%";
  const failed = el("div", { class: "fill failed" });
  if (known && row.failed) {
    failed.style.left = (100 * row.done) / known + "%";
    failed.style.width = Math.max(0.5, (100 * row.failed) / known) + "%";
  }
  bar.append(fill, failed);
  const of = reading ? readingText(row) : `of ${int(row.total)}`;
  return el("div", { class: "progress-cell" }, bar, el("span", { class: "pct", text: reading ? "–" : (100 * row.fraction).toFixed(1) + "%" }), el("span", { class: "of", text: of }));
}
export function numCell(key, n, bad) {
  return el("td", { class: "num" + (n === 0 ? " zero" : bad && n > 0 ? " bad" : ""), dataset: { k: key, value: String(n) } }, int(n));
}
