// The supervisor wallboard: queue and agent figures, updated live from `stats` and
// `agent_state` frames, and two day charts drawn as inline SVG (no chart library).
// The clocks tick here between frames: the ACD publishes figures when something changes,
// so "oldest waiting" and "time in state" are the last figure plus the time since it
// arrived (a contact that waits with nothing else happening still gets older on screen).
"use strict";

(() => {
  const {api, el, flash, fmtSeconds, fmtPercent, fmtClock, fmtTimeOfDay, connect, t} = Centrale;
  const clocks = new Map();  // element -> {base seconds, at ms, running}
  const history = {};  // queue -> [[iso, waiting, sl], ...]
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#b35806", "#0e7c86"];

  function cell(row, cls, text) {
    const c = row.querySelector("." + cls);
    if (c) c.textContent = text;
  }

  function renderFigures(fig) {
    for (const q of fig.queues || []) {
      const row = document.querySelector('#queue-table tr[data-queue="' + CSS.escape(String(q.id)) + '"]');
      if (!row) continue;
      cell(row, "waiting", q.waiting ?? "–");
      clock(row.querySelector(".oldest_wait"), q.oldest_wait, Number(q.waiting || 0) > 0);
      row.classList.toggle("late", Number(q.waiting || 0) > 0 && Number(q.oldest_wait || 0) > Number(row.dataset.sl || 20));
      cell(row, "service_level", fmtPercent(q.service_level));
      cell(row, "asa", fmtSeconds(q.asa));
      cell(row, "aht", fmtSeconds(q.aht));
      cell(row, "abandoned", q.abandoned ?? "–");
      const states = Object.entries(q.agents_by_state || {}).filter(([, v]) => v).map(([k, v]) => t(k) + ": " + v).join(", ");
      cell(row, "agents_by_state", states || "–");
      const pts = history[q.id] || (history[q.id] = []);
      pts.push([new Date().toISOString(), Number(q.waiting || 0), q.service_level]);
      if (pts.length > 8640) pts.shift();
    }
    for (const c of fig.channels || []) {
      const row = document.querySelector('#channel-table tr[data-channel="' + CSS.escape(String(c.id)) + '"]');
      if (!row) continue;
      cell(row, "waiting", c.waiting ?? "–");
      clock(row.querySelector(".oldest_wait"), c.oldest_wait, Number(c.waiting || 0) > 0);
      cell(row, "load", c.capacity ? (c.load || 0) + " / " + c.capacity : "–");
      cell(row, "service_level", fmtPercent(c.service_level));
      cell(row, "aht", fmtSeconds(c.aht));
      cell(row, "abandoned", c.abandoned ?? "–");
    }
    for (const a of fig.agents || []) showAgent(a);
    document.getElementById("stats-at").textContent = t("updated {time}", {time: fmtTimeOfDay(new Date())});
    drawCharts();
  }

  function showAgent(a) {
    const row = document.querySelector('#agent-table tr[data-agent="' + CSS.escape(String(a.id || a.agent_id)) + '"]');
    if (!row) return;
    if (a.state) {
      const changed = row.dataset.state !== a.state || (row.dataset.reason || "") !== (a.reason || "");
      cell(row, "state", t(a.state));
      row.dataset.state = a.state;
      row.dataset.reason = a.reason || "";
      // A state_changed frame starts the clock at 0; a figures row carries the time so far.
      if (a.state_seconds !== undefined && a.state_seconds !== null) clock(row.querySelector(".time_in_state"), a.state_seconds, true);
      else if (changed) clock(row.querySelector(".time_in_state"), 0, true);
    }
    if (a.reason !== undefined) cell(row, "reason", a.reason ? reasonName(a.reason) : "");
    if (a.load) cell(row, "load", Object.entries(a.load).filter(([, v]) => v).map(([k, v]) => t(k) + " " + v).join(", "));
    if (a.handled !== undefined && a.handled !== null) cell(row, "handled", a.handled);
    if (a.aht !== undefined) cell(row, "aht", fmtSeconds(a.aht));
  }

  function reasonName(reason) {
    const opt = document.querySelector('select.set-state option[value="not_ready:' + CSS.escape(reason) + '"]');
    return opt ? opt.textContent.replace(/^[^:]*:\s*/, "") : t(reason);
  }

  function clock(node, seconds, running) {
    if (!node) return;
    if (seconds === null || seconds === undefined) { clocks.delete(node); node.textContent = "–"; return; }
    clocks.set(node, {base: Number(seconds), at: Date.now(), running});
    node.textContent = fmtClock(seconds);
  }

  setInterval(() => {
    const now = Date.now();
    for (const [node, c] of clocks) {
      node.textContent = fmtClock(c.base + (c.running ? (now - c.at) / 1000 : 0));
      const row = node.closest("tr[data-queue]");
      if (row && c.running) row.classList.toggle("late", c.base + (now - c.at) / 1000 > Number(row.dataset.sl || 20));
    }
  }, 1000);

  function drawChart(svgId, valueOf, maxOf) {
    const svg = document.getElementById(svgId);
    const NS = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const W = 600, H = 160, L = 30, B = 20;
    const day0 = Centrale.zoneMidnight();  // the site's day, not the browser's
    const x = (iso) => L + (W - L) * Math.min(1, Math.max(0, (new Date(iso) - day0) / 86400000));
    const max = maxOf();
    const y = (v) => (H - B) - (H - B - 5) * (v / max);
    const axis = document.createElementNS(NS, "path");
    axis.setAttribute("d", `M${L},5 V${H - B} H${W}`);
    axis.setAttribute("class", "axis");
    svg.appendChild(axis);
    for (const h of [0, 6, 12, 18, 24]) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", L + (W - L) * h / 24); t.setAttribute("y", H - 5);
      t.textContent = String(h).padStart(2, "0") + ":00";
      svg.appendChild(t);
    }
    const top = document.createElementNS(NS, "text");
    top.setAttribute("x", 0); top.setAttribute("y", 12);
    top.textContent = svgId === "chart-sl" ? "100%" : String(max);
    svg.appendChild(top);
    Object.keys(history).forEach((qid, i) => {
      const pts = history[qid].filter((p) => valueOf(p) !== null && valueOf(p) !== undefined);
      if (!pts.length) return;
      const line = document.createElementNS(NS, "polyline");
      line.setAttribute("points", pts.map((p) => x(p[0]).toFixed(1) + "," + y(valueOf(p)).toFixed(1)).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[i % COLORS.length]);
      line.setAttribute("data-queue", qid);
      svg.appendChild(line);
    });
  }

  function drawCharts() {
    drawChart("chart-waiting", (p) => p[1], () => Math.max(5, ...Object.values(history).flat().map((p) => p[1] || 0)));
    drawChart("chart-sl", (p) => p[2], () => 1);
    const legend = document.getElementById("chart-legend");
    legend.replaceChildren(...Object.keys(history).map((qid, i) =>
      el("span", {class: "legend-item", "data-color": i % COLORS.length}, "■ " + qid + " ")));
  }

  document.getElementById("agent-table").addEventListener("change", async (ev) => {
    const select = ev.target.closest("select.set-state");
    if (!select || !select.value) return;
    const agent = select.closest("tr").dataset.agent;
    const [state, reason] = select.value.split(":");
    const r = await api("POST", "/api/agents/" + encodeURIComponent(agent) + "/state", {state, reason: reason || null});
    flash(r.ok ? t("{agent} is now {state}", {agent, state: t(state)}) : (r.data && r.data.error) || t("Not changed"), !r.ok);
    select.value = "";
  });

  async function load() {
    const r = await api("GET", "/api/stats");
    if (r.ok) {
      Object.assign(history, r.data.history || {});
      renderFigures(r.data.figures);
    }
    const a = await api("GET", "/api/agents");
    if (a.ok) for (const agent of a.data.agents) showAgent(agent);
  }

  load();
  // Per-agent figures (handled, AHT, load) change with every task; the bus carries
  // queue figures, so the agents' rows are read again every few seconds.
  setInterval(async () => {
    const r = await api("GET", "/api/stats");
    if (r.ok) for (const agent of r.data.figures.agents || []) showAgent(agent);
  }, 5000);
  connect((frame) => {
    if (frame.type === "stats") renderFigures(frame.payload);
    else if (frame.type === "agent_state") showAgent(frame.payload);
  });
})();
