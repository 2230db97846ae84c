// Wallboard: live voice calls and the supervisor's listen / whisper / barge buttons.
// Each button is POST /api/calls/{task_id}/monitor; the supervisor's registered phone
// rings and joins the call in that mode (asking again switches the mode).
"use strict";

(() => {
  const {api, el, flash, t} = Centrale;
  const body = document.querySelector("#monitor-table tbody");
  if (!body) return;

  async function monitor(taskId, mode) {
    const phone = document.getElementById("monitor-phone").value.trim();
    const payload = phone ? {mode, phone} : {mode};
    const r = await api("POST", "/api/calls/" + encodeURIComponent(taskId) + "/monitor", payload);
    flash(r.ok ? t("{mode}: your phone is connected", {mode: t(mode)})
               : ((r.data && r.data.error) || t("failed: {status}", {status: r.status})));
  }

  async function refresh() {
    const r = await api("GET", "/api/tasks");
    if (!r.ok) return;
    const live = (r.data.tasks || []).filter((task) => task.channel === "voice" && task.status === "accepted");
    body.replaceChildren(...live.map((task) => el("tr", {"data-task": task.task_id},
      el("td", {}, task.agent_id || ""), el("td", {}, task.queue_id || ""),
      el("td", {}, task.accepted_at ? Centrale.fmtTimeOfDay(new Date(task.accepted_at)) : ""),
      el("td", {}, ...["listen", "whisper", "barge"].map((mode) =>
        el("button", {type: "button", "data-mode": mode, onclick: () => monitor(task.task_id, mode)}, t(mode)))))));
  }

  refresh();
  setInterval(refresh, 5000);
})();
