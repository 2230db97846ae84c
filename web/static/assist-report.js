// The suggestion use rate per queue on the reports page (agent assist, docs/assist.md).
// Self-contained (no common.js): the reports page may or may not load it.
"use strict";

(async () => {
  const box = document.getElementById("assist-use-rate");
  if (!box) return;
  const query = new URLSearchParams({from: box.dataset.from, to: box.dataset.to});
  let data;
  try {
    const resp = await fetch("/api/assist/use-rate?" + query.toString(),
                             {credentials: "same-origin", headers: {"Accept": "application/json"}});
    if (!resp.ok) return;  // 501: assist is off on this node
    data = await resp.json();
  } catch (err) {
    return;
  }
  const body = box.querySelector("tbody");
  const cell = (text, cls) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  };
  for (const row of data.rows) {
    const tr = document.createElement("tr");
    tr.dataset.queue = row.queue_id || "";
    const rate = row.use_rate === null ? "–" : Math.round(row.use_rate * 100) + "%";
    tr.append(cell(row.queue_id || "(no queue)"), cell(String(row.suggestions)),
              cell(String(row.used)), cell(String(row.edited)), cell(String(row.ignored)),
              cell(rate, "use-rate"));
    body.appendChild(tr);
  }
  if (!data.rows.length) {
    const tr = document.createElement("tr");
    const td = cell("No suggestions acted on in this period.", "muted");
    td.colSpan = 6;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  box.hidden = false;
})();
