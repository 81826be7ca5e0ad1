// rqp console: how a page talks to the console -- its JSON endpoints (a 401 goes back to the
// login), the poll that refreshes it and the "live" badge, the toast and the confirm dialog of
// the actions. Every page module imports it; the shell (templates/base.html) carries the
// refresh period and the CSRF token it reads.
import { $, clock } from "./console.js";

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const CSRF = csrfMeta ? csrfMeta.content : "";
// how often a page refreshes, in ms (RQP_CONSOLE_REFRESH)
export const REFRESH = Number(document.body.dataset.refresh) || 1500;

export async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  if (r.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("logged out");
  }
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) { const e = new Error(data.error || `HTTP ${r.status}`); e.status = r.status; e.data = data; throw e; }
  return data;
}
export async function postJSON(url, payload) {
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
export function poll(fn, every) {
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
export function toast(message, bad) {
  const t = $("toast");
  t.textContent = message;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 9000 : 5000);
}
// The confirm step of every action: a modal dialog naming the workload and what will happen.
export function confirmDialog(title, text, yesLabel) {
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
