// Wallboard: live voice calls and the supervisor's listen / whisper / barge buttons.
// Each button is POST /api/calls/{task_id}/monitor; the supervisor's registered phone
// rings and joins the call in that mode (asking again switches the mode).
"use strict";

(() => {
  const {api, el, flash} = Centrale;
  const body = document.querySelector("#monitor-table tbody");
  if (!body) return;

  async function monitor(taskId, mode) {
    const phone = document.getElementById("monitor-phone").value.trim();
    const payload = phone ? {mode, phone} : {mode};
    const r = await api("POST", "/api/calls/" + encodeURIComponent(taskId) + "/monitor", payload);
    flash(r.ok ? mode + ": your phone is connected" : ((r.data && r.data.error) || "failed: " + r.status));
  }

  async function refresh() {
    const r = await api("GET", "/api/tasks");
    if (!r.ok) return;
    const live = (r.data.tasks || []).filter((t) => t.channel === "voice" && t.status === "accepted");
    body.replaceChildren(...live.map((t) => el("tr", {"data-task": t.task_id},
      el("td", {}, t.agent_id || ""), el("td", {}, t.queue_id || ""),
      el("td", {}, t.accepted_at ? new Date(t.accepted_at).toLocaleTimeString() : ""),
      el("td", {}, ...["listen", "whisper", "barge"].map((mode) =>
        el("button", {type: "button", "data-mode": mode, onclick: () => monitor(t.task_id, mode)}, mode))))));
  }

  refresh();
  setInterval(refresh, 5000);
})();
