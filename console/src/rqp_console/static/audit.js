// rqp console, the audit page: operators' actions on workloads, newest first.
import { $, clear, el, when } from "./console.js";
import { REFRESH, getJSON, poll } from "./live.js";

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
