// rqp console, the audit page: operators' signed requests on workloads, newest first, each with
// a badge saying whether its signature verified (and by whom) and a row where the chain was cut.
import { $, clear, el, when } from "./console.js";

function mark(a) {
  if (a.verified) return el("span", { class: "badge verified", text: "verified by " + a.note.replace(/^signed by /, "") });
  return el("span", { class: "badge unverified", title: a.note, text: "unverified: " + a.note });
}
import { REFRESH, getJSON, poll } from "./live.js";

poll(async () => {
  const d = await getJSON("/api/audit");
  const tbody = clear(document.querySelector("#audit tbody"));
  for (const a of d.entries) {
    tbody.appendChild(el("tr", {},
      el("td", { class: "num", text: when(a.at) }),
      el("td", { text: a.who }),
      el("td", { text: a.what }),
      el("td", {}, el("a", { href: "/workloads/" + encodeURIComponent(a.workload), text: a.workload })),
      el("td", {}, mark(a))));
    if (a.cut) tbody.appendChild(el("tr", { class: "cut" }, el("td", { colspan: "5", text: "chain cut: " + a.cut })));
  }
  $("audit-empty").hidden = d.entries.length > 0;
}, REFRESH * 2);
