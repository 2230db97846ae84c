// The demo's customer simulator (docs/demo.md). Customer text is only ever written with
// textContent (Centrale.el): what the agent types is shown, never interpreted.
"use strict";

(() => {
  const {api, el, flash, t} = Centrale;
  const $ = (id) => document.getElementById(id);
  const TICKS = {posting: "…", posted: "✓", refused: "✗", accepted: "🕓", sent: "✓",
                 delivered: "✓✓", read: "✓✓"};
  let callId = null;
  let polling = null;

  function who() {
    return {name: $("customer-name").value.trim(), mobile: $("customer-mobile").value.trim()};
  }

  function waId() { return who().mobile.replace(/^\+/, "").replace(/\s/g, ""); }

  function choosePersona() {
    const option = $("persona").selectedOptions[0];
    $("customer-name").value = option && option.value ? option.dataset.name : "";
    $("customer-mobile").value = option ? option.value : "";
    callId = null;
    renderThread([]);
    refresh();
  }

  function renderThread(messages) {
    const list = $("wa-thread");
    list.replaceChildren(...messages.map((m) => el("li",
      {class: "wa-msg " + m.direction + " " + m.status, "data-status": m.status,
       "data-id": m.id},
      el("span", {class: "wa-text"}, m.text),
      el("span", {class: "wa-meta"},
         new Date(m.at * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}),
         " ", el("span", {class: "ticks", title: m.status}, TICKS[m.status] || m.status)),
      m.detail ? el("span", {class: "wa-detail"}, m.detail) : null)));
    list.scrollTop = list.scrollHeight;
  }

  function renderCall(call) {
    $("call-state").textContent = t(call ? call.state : "idle");
    $("call-reason").textContent = call && call.reason ? "(" + call.reason + ")" : "";
    $("call-digits").textContent = call ? call.digits : "";
    $("call-log").replaceChildren(...(call ? call.events : []).map((e) =>
      el("li", {}, new Date(e.at * 1000).toLocaleTimeString(), " ", e.text)));
    const audio = $("call-audio");
    if (call && call.seconds_heard > 0) {
      audio.href = "/demo/api/calls/" + encodeURIComponent(call.id) + "/audio.wav";
      audio.hidden = false;
    } else {
      audio.hidden = true;
    }
  }

  function renderDesk(phones) {
    for (const p of phones) {
      const box = document.querySelector('.demo-desk-phone[data-agent="' + CSS.escape(p.agent) + '"]');
      if (!box) continue;
      box.querySelector(".desk-state").textContent = t(p.state);
      box.querySelector(".desk-caller").textContent = p.caller ? "— " + p.caller : "";
    }
  }

  async function desk(event, action) {
    const box = event.currentTarget.closest(".demo-desk-phone");
    const r = await api("POST", "/demo/api/desk/" + encodeURIComponent(box.dataset.agent) + "/" + action);
    if (!r.ok) flash((r.data && r.data.error) || t("{action} failed", {action: t(action)}), true);
    else renderDesk([r.data]);
  }

  async function refresh() {
    const id = waId();
    const valid = /^[1-9][0-9]{6,14}$/.test(id);
    const r = await api("GET", "/demo/api/state" + (valid ? "?wa_id=" + encodeURIComponent(id) : ""));
    if (!r.ok || !r.data) return;
    renderDesk(r.data.desk_phones);
    if (!valid) { renderThread([]); renderCall(null); return; }
    renderThread(r.data.messages);
    const call = r.data.calls.find((c) => c.id === callId) || r.data.calls[r.data.calls.length - 1];
    renderCall(call || null);
    // The customer has the thread on screen: what was delivered is now read.
    if (document.visibilityState === "visible" &&
        r.data.messages.some((m) => m.direction === "out" && m.status === "delivered")) {
      await api("POST", "/demo/api/whatsapp/read", {wa_id: id});
    }
  }

  async function send(event) {
    event.preventDefault();
    const text = $("wa-text").value;
    if (!text.trim()) return;
    const r = await api("POST", "/demo/api/whatsapp", {wa_id: waId(), name: who().name, text});
    if (r.ok) { $("wa-text").value = ""; flash(t("Sent to Centrale's WhatsApp webhook.")); }
    else flash((r.data && (r.data.error || r.data.detail)) || t("not sent"), true);
    refresh();
  }

  async function dial(event) {
    const r = await api("POST", "/demo/api/calls",
                        {number: who().mobile, name: who().name, dial: event.currentTarget.dataset.dial});
    if (r.ok) { callId = r.data.id; flash(t("Calling {number}…", {number: r.data.dial})); renderCall(r.data); }
    else flash((r.data && r.data.error) || t("could not call"), true);
  }

  async function key(event) {
    if (!callId) { flash(t("Call first."), true); return; }
    const r = await api("POST", "/demo/api/calls/" + encodeURIComponent(callId) + "/dtmf",
                        {digit: event.currentTarget.dataset.key});
    if (!r.ok) flash((r.data && r.data.error) || t("digit not sent"), true);
    else renderCall(r.data);
  }

  async function hangup() {
    if (!callId) return;
    const r = await api("POST", "/demo/api/calls/" + encodeURIComponent(callId) + "/hangup");
    if (r.ok) renderCall(r.data);
  }

  $("persona").addEventListener("change", choosePersona);
  $("customer-mobile").addEventListener("change", () => { callId = null; refresh(); });
  $("wa-form").addEventListener("submit", send);
  for (const b of document.querySelectorAll(".call-dial")) b.addEventListener("click", dial);
  for (const b of document.querySelectorAll("#dialpad .key")) b.addEventListener("click", key);
  $("call-hangup").addEventListener("click", hangup);
  for (const b of document.querySelectorAll(".desk-answer")) b.addEventListener("click", (e) => desk(e, "answer"));
  for (const b of document.querySelectorAll(".desk-hangup")) b.addEventListener("click", (e) => desk(e, "hangup"));
  choosePersona();
  polling = setInterval(refresh, 1000);
  window.addEventListener("beforeunload", () => clearInterval(polling));
})();
