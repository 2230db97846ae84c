// Call control buttons for voice tasks on the agent desktop. Kept apart from
// desktop.js: it watches the tab panes and adds a control group to each voice pane
// (data-channel="voice"), keyed by the task id; every button is one POST to
// /api/calls/{task_id}/... and the answer (the call's state) redraws the group.
"use strict";

(() => {
  const {api, flash, fmtSeconds, t} = Centrale;
  const template = document.getElementById("call-controls-template");
  const panes = document.getElementById("tab-panes");
  if (!template || !panes) return;
  const timers = new Map();  // task id -> interval for the hold clock

  function show(group, call) {
    const held = !!call.held;
    group.querySelector(".call-state").textContent = t(call.state);
    group.querySelector('[data-op="hold"]').hidden = held;
    group.querySelector('[data-op="resume"]').hidden = !held;
    group.querySelector('[data-op="mute"]').hidden = !!call.muted;
    group.querySelector('[data-op="unmute"]').hidden = !call.muted;
    group.querySelector(".call-consult").hidden = call.state !== "consulting";
    const clock = group.querySelector(".call-hold-time");
    clock.hidden = !call.hold_seconds && !held;
    group.dataset.holdBase = String(call.hold_seconds || 0);
    group.dataset.holdSince = held ? String(Date.now()) : "";
    clock.textContent = t("on hold {time}", {time: fmtSeconds(call.hold_seconds || 0)});
    group.querySelector(".call-parties").textContent = (call.parties || [])
      .map((p) => p.who || p.party).join(", ");
  }

  function tickHold(group) {
    if (!group.dataset.holdSince) return;
    const extra = (Date.now() - Number(group.dataset.holdSince)) / 1000;
    group.querySelector(".call-hold-time").textContent =
      t("on hold {time}", {time: fmtSeconds(Number(group.dataset.holdBase || 0) + extra)});
  }

  // The call's recording (issue #20): state and the pause button for card numbers.
  // mode off: nothing shown; on_demand: a Record button until it runs.
  function showRecording(group, view) {
    const box = group.querySelector(".call-recording");
    const rec = view.recording;
    box.hidden = view.mode === "off" && !rec;
    const status = rec ? rec.status : null;
    box.querySelector(".recording-state").textContent =
      status === "recording" ? "● " + t("recording") : status === "paused" ? "❚❚ " + t("recording paused")
        : status === "failed" ? "⚠ " + t("recording failed") + (rec.error ? ": " + rec.error : "")
          : view.declined ? t("the caller declined recording") : t("not recorded");
    box.querySelector('[data-op="recording/start"]').hidden = !!rec || view.declined || view.mode === "off";
    box.querySelector('[data-op="recording/pause"]').hidden = status !== "recording";
    box.querySelector('[data-op="recording/resume"]').hidden = status !== "paused";
  }

  async function run(group, taskId, op) {
    if (op.startsWith("recording/")) {
      const r = await api("POST", "/api/calls/" + encodeURIComponent(taskId) + "/" + op, {});
      if (!r.ok) { flash((r.data && r.data.error) || ("failed: " + r.status)); return; }
      showRecording(group, r.data);
      return;
    }
    let body;
    if (op === "dtmf") body = {digits: group.querySelector(".dtmf-digits").value.trim()};
    if (op === "transfer" || op === "consult" || op === "conference-add") {
      body = {kind: group.querySelector(".transfer-kind").value,
              target: group.querySelector(".transfer-target").value.trim()};
      const reason = group.querySelector(".transfer-reason").value.trim();
      if (op === "transfer" && reason) body.reason = reason;
    }
    if (op === "consult/complete") body = {};
    if (op === "conference") body = {};
    const path = op === "conference-add" ? "conference" : op;
    const r = await api("POST", "/api/calls/" + encodeURIComponent(taskId) + "/" + path, body);
    if (!r.ok) { flash((r.data && r.data.error) || t("failed: {status}", {status: r.status})); return; }
    show(group, r.data.call);
  }

  function attach(pane) {
    if (pane.dataset.channel !== "voice" || pane.querySelector(".call-controls")) return;
    const taskId = pane.id.replace(/^task-/, "");
    const group = template.content.firstElementChild.cloneNode(true);
    group.dataset.task = taskId;
    group.addEventListener("click", (ev) => {
      const op = ev.target.closest("button") && ev.target.closest("button").dataset.op;
      if (op) run(group, taskId, op);
    });
    // Into the in-call panel's slot (desktop.js), else atop the pane.
    const slot = pane.querySelector("#call-controls");
    if (slot) slot.appendChild(group); else pane.insertBefore(group, pane.firstChild);
    // The call can change without this page (the desk phone's hold key, a REFER, a
    // transfer answered, a supervisor): its state is read again every few seconds.
    const refresh = () => api("GET", "/api/calls/" + encodeURIComponent(taskId)).then((r) => {
      if (r.ok) {
        show(group, r.data.call);
        api("GET", "/api/calls/" + encodeURIComponent(taskId) + "/recording").then((rr) => {
          if (rr.ok) showRecording(group, rr.data);
        });
      }
      // Only an ended call stops the refresh: "not connected yet" (409) or a node that
      // does not hold it yet (404) can change within a second.
      else if (r.data && r.data.code === "call_ended") group.querySelector(".call-state").textContent = "ended";
    });
    let ticks = 0;
    timers.set(taskId, setInterval(() => {
      tickHold(group);
      if (++ticks % 3 === 0 && !document.hidden && group.querySelector(".call-state").textContent !== "ended") refresh();
    }, 1000));
    refresh();
  }

  new MutationObserver((records) => {
    for (const rec of records) {
      for (const node of rec.addedNodes) if (node.nodeType === 1) attach(node);
      for (const node of rec.removedNodes) {
        if (node.nodeType === 1 && node.id && timers.has(node.id.replace(/^task-/, ""))) {
          clearInterval(timers.get(node.id.replace(/^task-/, "")));
          timers.delete(node.id.replace(/^task-/, ""));
        }
      }
    }
  }).observe(panes, {childList: true});
  for (const pane of panes.children) attach(pane);
})();
