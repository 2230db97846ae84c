// The agent desktop: state buttons, screen-pops with accept/reject, one tab per
// accepted task (digital conversations side by side, up to capacity), the in-call panel,
// replies, wrap-up, merge suggestions, click-to-call and callbacks. All over one
// websocket + JSON POSTs.
//
// A task's life on this page is driven by the server's events only: screenpop (offer)
// -> task.accepted (the call connected, by the browser's Accept or the desk phone
// answering; the conversation active) -> task.completed (wrap-up, with its end time)
// -> task.wrap_up_ended (gone). Buttons only ask the server; what the page shows changes
// when the event comes back. On (re)connect the page asks /api/tasks?mine=1, which is
// the ACD's own view of the agent, so a reload or a second tab shows the same truth.
"use strict";

(() => {
  const {api, el, flash, safeUrl, fmtSeconds, fmtClock, fmtTime, connect, t} = Centrale;
  const agentId = document.body.dataset.agent;
  const offers = new Map();   // offer_id -> {pop, node}
  const tabs = new Map();     // task_id -> {task, node, button, caseId, status, since, wrapEnds}
  const opening = new Set();  // task ids whose case is being fetched
  const finished = new Set(); // task ids wrapped up here: never reopened by a stale list
  const offersBox = document.getElementById("offers");
  const tabsBar = document.getElementById("tabs");
  const panes = document.getElementById("tab-panes");

  // ---------------------------------------------------------------- rendering

  function entryNode(e) {
    const meta = e.meta || {};
    const facts = [];
    if (e.kind === "ivr" || e.kind === "ivr_step" || e.kind === "ivr_end") {
      const path = meta.path || meta.nodes;
      if (Array.isArray(path)) facts.push(t("path") + ": " + path.map((p) => typeof p === "object" ? (p.node || p.id || JSON.stringify(p)) : p).join(" → "));
      const digits = meta.digits || meta.dtmf;
      if (digits) facts.push(t("digits") + ": " + (Array.isArray(digits) ? digits.join(" ") : digits));
    }
    if (e.kind === "call" || e.channel === "voice") {
      const d = meta.duration_seconds ?? meta.duration ?? meta.talk_seconds;
      if (d !== undefined) facts.push(t("duration") + ": " + fmtSeconds(d));
    }
    const code = meta.wrap_up_code || (e.kind === "wrap_up" ? meta.code : null);
    if (code) facts.push(t("wrap-up") + ": " + wrapCodeName(code));
    const delivery = meta.message_id ? noteDelivery(meta.message_id, fromMeta(meta.delivery, meta.delivery_error)) : fromMeta(meta.delivery, meta.delivery_error);
    if (!delivery && (meta.status || meta.delivery_status)) facts.push(t("status") + ": " + (meta.status || meta.delivery_status));
    if (meta.agent_id) facts.push(t("agent") + ": " + meta.agent_id);
    if (meta.notes && !(e.body || "").includes(meta.notes)) facts.push(t("notes") + ": " + meta.notes);
    const when = fmtTime(e.occurred_at);
    const tick = delivery ? el("span", {class: "delivery " + delivery.delivery, "data-delivery": delivery.delivery,
                                        title: delivery.delivery}, t("delivery") + ": " + t(delivery.delivery) + " " + (TICKS[delivery.delivery] || "")
                                        + (delivery.failed && delivery.error ? " — " + t("reason") + ": " + delivery.error : "")) : null;
    const node = el("li", {class: "entry " + e.kind + " " + e.direction, "data-entry": e.id, "data-message": meta.message_id || null},
      el("span", {class: "when"}, when), " ",
      el("span", {class: "what"}, entryLabel(e)),
      e.body ? el("div", {class: "body"}, entryBody(e)) : null,
      facts.length || tick ? el("div", {class: "facts"}, tick, tick && facts.length ? " · " : null, facts.join(" · ")) : null);
    if (meta.recording_id && (e.kind === "recording" || e.kind === "voicemail") && meta.status !== "failed") {
      node.appendChild(recordingPlayer(meta.recording_id));
    }
    node.centraleEntry = e;
    return node;
  }

  // A recorded call or a voicemail plays in place; the server decides who may hear it
  // (403 for an agent who never handled the case) and audits every play and download.
  function recordingPlayer(id) {
    const base = "/api/recordings/" + encodeURIComponent(id);
    return el("div", {class: "recording-player"},
      el("audio", {controls: true, preload: "none", src: base + "/play", "aria-label": t("Recording player")}),
      " ", el("a", {href: base + "/download"}, t("Download recording")));
  }

  function wrapCodeName(code) {
    const opt = document.querySelector('#wrap-up-template');
    const found = opt && opt.content.querySelector('option[value="' + CSS.escape(code) + '"]');
    return found ? found.textContent : code;
  }

  // A wrap-up entry reads with the code's name (the stored body names its id).
  function entryBody(e) {
    const meta = e.meta || {};
    if (e.kind !== "wrap_up") return e.body;
    return t("Wrap-up") + ": " + (meta.code ? wrapCodeName(meta.code) : t("no code")) + (meta.notes ? " — " + meta.notes : "");
  }

  // "WhatsApp message from the customer", "Call", "IVR step", "Note": what an entry is,
  // in words, instead of its raw kind and direction.
  function entryLabel(e) {
    const who = e.direction === "inbound" ? t("from the customer") : e.direction === "outbound" ? t("to the customer") : "";
    const kind = {message: t("message"), call: t("call"), ivr_step: t("IVR step"), ivr_end: t("IVR"), ivr: t("IVR"),
                  note: t("note"), wrap_up: t("wrap-up"), case: t("case"), recording: t("recording"),
                  voicemail: t("voicemail")}[e.kind] || e.kind;
    const channel = e.channel === "internal" || e.channel === "voice" ? "" : channelName(e.channel) + " ";
    return (channel + kind + (who ? " " + who : "")).trim();
  }

  // ---------------------------------------------------------------- delivery ticks
  // message id -> {delivery, failed}: the best state seen, from the entries' own meta
  // and from `delivery` frames (which may come before the entry's `timeline` frame).
  // A state only moves forward (sent < delivered < read); failed stays failed.
  const deliveries = new Map();
  const RANK = {pending: 0, accepted: 0, sent: 1, delivered: 2, read: 3, failed: 4};
  const TICKS = {pending: "…", accepted: "…", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗"};

  function fromMeta(value, error) {
    return value ? {delivery: String(value), failed: value === "failed", error: error || null} : null;
  }

  function noteDelivery(messageId, state) {
    const known = deliveries.get(messageId);
    let best = known || state;
    if (known && state && (RANK[state.delivery] ?? -1) > (RANK[known.delivery] ?? -1)) best = state;
    if (best) deliveries.set(messageId, best);
    return best || null;
  }

  function applyDelivery(frame) {
    if (!frame.message_id) return;
    noteDelivery(frame.message_id, {delivery: frame.failed ? "failed" : frame.delivery, failed: !!frame.failed,
                                    error: frame.error_code || null});
    for (const li of document.querySelectorAll('li.entry[data-message="' + CSS.escape(frame.message_id) + '"]')) {
      if (li.centraleEntry) li.replaceWith(entryNode(li.centraleEntry));
    }
  }

  function timelineNode(entries, caseId) {
    const list = el("ol", {class: "timeline", "data-case": caseId});
    for (const e of entries || []) list.appendChild(entryNode(e));
    return list;
  }

  function customerNode(pop) {
    const c = pop.customer || {};
    const box = el("div", {class: "customer"},
      el("h3", {class: "customer-name"}, c.display_name || t("Unknown customer")));
    const ids = el("ul", {class: "identities"});
    for (const i of c.identities || []) ids.appendChild(el("li", {}, i.kind + ": " + i.raw + (i.verified ? "" : " (unverified)")));
    box.appendChild(ids);
    if ((c.tags || []).length) {
      const tags = el("p", {class: "tags"});
      for (const t of c.tags) tags.appendChild(el("span", {class: "tag"}, t));
      box.appendChild(tags);
    }
    const cti = safeUrl(pop.cti_url);
    if (cti) box.appendChild(el("a", {class: "cti", href: cti, target: "_blank", rel: "noopener noreferrer"}, t("Open in CRM")));
    if (pop.case) box.appendChild(el("p", {class: "case-ref"}, t("Case") + " ",
      el("a", {href: "/cases/" + encodeURIComponent(pop.case.id), class: "case-link", target: "_blank"}, pop.case.id),
      " (", el("span", {class: "case-status"}, t(pop.case.status)), ")"));
    for (const s of pop.suggestions || []) {
      box.appendChild(el("div", {class: "suggestion"}, s.reason + " ",
        el("button", {type: "button", class: "merge", onclick: () => merge(s, c.id)}, t("Merge"))));
    }
    return box;
  }

  async function merge(s, customerId) {
    const r = await api("POST", "/api/customers/merge", {source_customer_id: s.candidate_customer_id,
      target_customer_id: customerId, reason: s.reason});
    flash(r.ok ? t("Customers merged.") : (r.data && r.data.error) || t("Merge failed"), !r.ok);
  }

  // ---------------------------------------------------------------- offers

  function showOffer(pop) {
    if (!pop.offer_id || offers.has(pop.offer_id)) return;
    if (tabs.has(pop.task_id) || finished.has(pop.task_id)) return;  // answered already
    document.getElementById("idle-hint").hidden = true;
    const countdown = el("span", {class: "countdown", "aria-live": "off"});
    const card = el("article", {class: "screenpop", id: "offer-" + pop.offer_id, "data-case": pop.case_id || "",
                                "data-channel": pop.channel || "", "data-task": pop.task_id || "",
                                "aria-label": t("Offer")},
      el("header", {}, el("strong", {}, t("Offer: {channel}", {channel: channelName(pop.channel)})),
         " " + t("from queue {queue}", {queue: pop.queue_id || "–"}) + " ", countdown),
      pop.transfer && pop.transfer.by ? el("p", {class: "transfer-note"}, pop.transfer.reason
        ? t("Transferred by {by}: {reason}", {by: pop.transfer.by, reason: pop.transfer.reason})
        : t("Transferred by {by}", {by: pop.transfer.by})) : null,
      pop.error ? el("p", {class: "flash error"}, pop.error) : customerNode(pop),
      pop.error ? null : timelineNode(pop.timeline, pop.case_id),
      el("div", {class: "actions"},
        el("button", {type: "button", class: "accept", title: "Alt+A", onclick: () => accept(pop)}, t("Accept")),
        el("button", {type: "button", class: "reject", title: "Alt+R", onclick: () => reject(pop)}, t("Reject"))));
    offersBox.prepend(card);
    scrollToLatest(card);
    offers.set(pop.offer_id, {pop, node: card});
    if (pop.expires_at) {
      const end = new Date(pop.expires_at).getTime();
      const tick = () => {
        if (!offers.has(pop.offer_id)) return;
        countdown.textContent = t("{seconds} s", {seconds: Math.max(0, Math.round((end - Date.now()) / 1000))});
        setTimeout(tick, 500);
      };
      tick();
    }
    alertOffer(pop);
    renderTaskList();
  }

  function dropOffer(offerId) {
    const o = offers.get(offerId);
    if (o) { o.node.remove(); offers.delete(offerId); }
    alertTitle();
    renderTaskList();
  }

  function dropOffersOfTask(taskId) {
    for (const [id, o] of offers) if (o.pop.task_id === taskId) dropOffer(id);
  }

  // Accept / Reject only ask: the card goes and the tab opens when the server's event
  // comes back (task.accepted), the same event a desk phone's answer produces.
  async function accept(pop) {
    const r = await api("POST", "/api/offers/" + encodeURIComponent(pop.offer_id) + "/accept");
    if (!r.ok) { flash((r.data && r.data.error) || t("Could not accept"), true); dropOffer(pop.offer_id); sync(); }
  }

  async function reject(pop) {
    const r = await api("POST", "/api/offers/" + encodeURIComponent(pop.offer_id) + "/reject");
    if (!r.ok) flash((r.data && r.data.error) || t("Could not reject"), true);
    dropOffer(pop.offer_id);
  }

  // ---------------------------------------------------------------- offer alert

  let audio = null;
  function ring() {
    // A short two-tone chime made here: no sound file, and nothing plays before the
    // agent has touched the page (browsers' autoplay rule), which going available does.
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const now = audio.currentTime;
      for (const [i, f] of [[0, 880], [1, 660]]) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = f;
        gain.gain.setValueAtTime(0.15, now + i * 0.25);
        gain.gain.exponentialRampToValueAtTime(0.001, now + i * 0.25 + 0.22);
        osc.connect(gain).connect(audio.destination);
        osc.start(now + i * 0.25); osc.stop(now + i * 0.25 + 0.24);
      }
    } catch (err) { /* no audio device: the title and the notification remain */ }
  }

  const baseTitle = document.title;
  function alertTitle() {
    document.title = offers.size ? "(" + offers.size + ") " + t("Offer") + " · " + baseTitle : baseTitle;
  }

  function alertOffer(pop) {
    alertTitle();
    ring();
    if (window.Notification && Notification.permission === "granted" && document.hidden) {
      const who = (pop.customer && pop.customer.display_name) || pop.caller || "";
      const n = new Notification(t("Offer: {channel}", {channel: channelName(pop.channel)}), {body: who, tag: pop.offer_id});
      n.onclick = () => { window.focus(); n.close(); };
    }
  }

  // ---------------------------------------------------------------- tabs (accepted tasks)

  function channelName(channel) {
    return {voice: t("call"), whatsapp: "WhatsApp", webchat: t("web chat"), email: t("e-mail"), sms: "SMS"}[channel] || channel || t("task");
  }

  function statusName(status, channel) {
    if (status === "offered") return t("offered");
    if (status === "accepted") return channel === "voice" ? t("connected") : t("active");
    if (status === "wrap_up") return t("wrap-up");
    return status;
  }

  // Open (or update) the tab of a task the server says is in the agent's hands.
  // `live` = {status, since, wrapEnds, code}.
  async function openTab(task, live, bundle) {
    const known = tabs.get(task.task_id);
    if (known) { applyLive(known, live); return; }
    if (finished.has(task.task_id)) return;
    if (opening.has(task.task_id)) { pendingLive.set(task.task_id, live); return; }
    dropOffersOfTask(task.task_id);
    if (!bundle) {
      opening.add(task.task_id);
      const r = await api("GET", "/api/cases/" + encodeURIComponent(task.case_id));
      opening.delete(task.task_id);
      if (!r.ok) { flash((r.data && r.data.error) || t("Cannot open the case"), true); return; }
      if (tabs.has(task.task_id) || finished.has(task.task_id)) return;
      bundle = r.data;
    }
    if (pendingLive.has(task.task_id)) { live = pendingLive.get(task.task_id); pendingLive.delete(task.task_id); }
    const pane = el("section", {class: "pane", id: "task-" + task.task_id, "data-case": task.case_id,
                                "data-channel": task.channel, "data-task": task.task_id,
                                role: "tabpanel", "aria-label": channelName(task.channel)});
    const label = (bundle.customer && bundle.customer.display_name) || channelName(task.channel);
    const tabButton = el("button", {type: "button", class: "tab", role: "tab", onclick: () => selectTab(task.task_id)},
      channelName(task.channel) + ": " + label);
    tabsBar.appendChild(tabButton);
    const entry = {task, node: pane, button: tabButton, caseId: task.case_id, status: null,
                   since: null, wrapEnds: null, bundle};
    bundles.set(task.task_id, bundle);
    if (task.channel === "voice") pane.appendChild(callPanel(entry));
    pane.appendChild(customerNode(bundle));
    pane.appendChild(timelineNode(bundle.timeline, task.case_id));
    pane.appendChild(caseTools(task, bundle));
    // Call or call back the customer from any task: a WhatsApp or SMS contact with a
    // number is often better served by phone.
    if (task.channel === "voice" || phoneOf(bundle)) pane.appendChild(voiceTools(task, bundle));
    for (const conv of bundle.conversations || []) pane.appendChild(replyBox(task, conv));
    if (task.channel !== "voice" && !(bundle.conversations || []).length) {
      pane.appendChild(el("p", {class: "muted"}, t("No open conversation for this case.")));
    }
    pane.appendChild(wrapUp(entry));
    panes.appendChild(pane);
    tabs.set(task.task_id, entry);
    applyLive(entry, live);
    selectTab(task.task_id);
    scrollToLatest(pane);
    document.getElementById("idle-hint").hidden = true;
  }
  const pendingLive = new Map();  // task id -> the newest live state while its case loads

  function applyLive(entry, live) {
    if (!live) return;
    entry.status = live.status;
    if (live.since) entry.since = new Date(live.since).getTime();
    if (!entry.since) entry.since = Date.now();
    if (live.status === "wrap_up") {
      entry.wrapEnds = live.wrapEnds ? new Date(live.wrapEnds).getTime() : entry.wrapEnds;
      if (live.code) entry.node.querySelector(".wrap-code").value = live.code;
      if (!entry.wrapStarted) entry.wrapStarted = Date.now();
    }
    entry.node.dataset.status = entry.status;
    entry.button.dataset.status = entry.status;
    const wrap = entry.node.querySelector(".wrapup");
    const inWrap = entry.status === "wrap_up";
    wrap.classList.toggle("in-wrap-up", inWrap);
    wrap.querySelector(".wrap-complete").hidden = inWrap || entry.task.channel === "voice";
    wrap.querySelector(".wrap-end").hidden = !inWrap;
    wrap.querySelector(".wrap-extend").hidden = !inWrap;
    wrap.querySelector(".wrap-timer").hidden = !inWrap;
    wrap.hidden = entry.task.channel === "voice" && !inWrap;
    // A conversation that is over takes no more replies.
    for (const box of entry.node.querySelectorAll(".conversation")) {
      if (inWrap && box.dataset.task === entry.task.task_id) endReplyBox(box);
    }
    const call = entry.node.querySelector(".call-panel");
    if (call) call.dataset.status = entry.status;
    renderTaskList();
    tickTimers();
  }

  function selectTab(taskId) {
    for (const [id, tab] of tabs) {
      tab.node.hidden = id !== taskId;
      tab.button.classList.toggle("active", id === taskId);
      tab.button.setAttribute("aria-selected", id === taskId ? "true" : "false");
    }
  }

  function closeTab(taskId) {
    finished.add(taskId);
    dropOffersOfTask(taskId);
    const tab = tabs.get(taskId);
    if (!tab) { renderTaskList(); return; }
    tab.node.remove(); tab.button.remove(); tabs.delete(taskId);
    const next = tabs.keys().next();
    if (!next.done) selectTab(next.value);
    renderTaskList();
  }

  function ivrSummary(timeline) {
    // This call's IVR path and digits: the IVR steps since the last call started.
    const steps = [];
    for (const e of timeline || []) {
      if (e.kind === "call" && (e.meta || {}).event === "started") steps.length = 0;
      if (e.kind === "ivr_step" || e.kind === "ivr") {
        const m = e.meta || {};
        if (m.node) steps.push(m.node + (m.digits ? " [" + m.digits + "]" : ""));
      }
    }
    return steps.join(" → ");
  }

  function callPanel(entry) {
    const bundle = entry.bundle;
    const who = (bundle.customer && bundle.customer.display_name) || bundle.caller || phoneOf(bundle) || t("Unknown caller");
    const ivr = ivrSummary(bundle.timeline);
    return el("div", {class: "call-panel", role: "region", "aria-label": t("Call")},
      el("p", {class: "call-who"}, el("strong", {}, who), " · ", t("case {id}", {id: entry.caseId})),
      el("p", {class: "call-timers"},
        el("span", {}, t("Talk time") + " "), el("span", {class: "talk-timer", role: "timer"}, "0:00"),
        " ", el("span", {class: "hold-timer", hidden: true, role: "timer"})),
      ivr ? el("p", {class: "call-ivr"}, t("IVR") + ": " + ivr) : null,
      // The call controls (hold, mute, transfer, conference, recording pause) are
      // rendered into this slot by their own script (call-controls.js).
      el("div", {id: "call-controls", class: "call-controls-slot", "data-task": entry.task.task_id,
                 "data-case": entry.caseId}));
  }

  // One timer for every clock on the page: talk time, wrap-up left, time in state.
  function tickTimers() {
    const now = Date.now();
    for (const tab of tabs.values()) {
      const talk = tab.node.querySelector(".talk-timer");
      if (talk && tab.status === "accepted" && tab.since) talk.textContent = fmtClock((now - tab.since) / 1000);
      const timer = tab.node.querySelector(".wrap-timer");
      if (timer && tab.status === "wrap_up" && tab.wrapEnds) {
        const left = (tab.wrapEnds - now) / 1000;
        timer.textContent = left >= 0 ? t("Wrap-up: {time} left", {time: fmtClock(left)})
                                      : t("Wrap-up: {time} over time", {time: fmtClock(-left)});
        timer.classList.toggle("overdue", left < 0);
      }
    }
  }
  setInterval(tickTimers, 1000);

  function windowText(w) {
    if (!w || w.applies === false) return "";
    if (w.open === false) return w.reason || t("24-hour window closed: only templates can be sent");
    const until = w.expires_at || w.closes_at || w.until;
    return until ? t("24-hour window open until {time}", {time: fmtTime(until)}) : t("window open");
  }

  function endReplyBox(box) {
    for (const n of box.querySelectorAll(".reply-text, .reply-send, .window, .canned")) n.remove();
    if (!box.querySelector(".ended")) box.appendChild(el("p", {class: "ended muted"}, t("This conversation has ended.")));
  }

  function replyBox(task, conv) {
    const box = el("div", {class: "conversation", "data-conversation": conv.id, "data-task": conv.task_id || ""},
      el("h4", {}, channelName(conv.channel) + (conv.state ? " (" + t(conv.state) + ")" : "")));
    if (conv.state === "ended") { endReplyBox(box); return box; }
    const id = "reply-" + conv.id;
    const input = el("textarea", {class: "reply-text", id, maxlength: "4096", rows: "2",
                                  placeholder: t("Reply… (Ctrl+Enter sends)")});
    // Outgoing messages not (yet) on the timeline: "sending…" while the request runs,
    // and a failed send, which stays here with its reason.
    const outbox = el("ol", {class: "outbox", "aria-live": "polite"});
    for (const m of conv.messages || []) {
      if (m.direction === "outbound" && ["failed", "refused"].includes(m.send_state)) {
        outbox.appendChild(outboxItem(m.body, "failed", m.error));
      }
    }
    const send = async () => {
      const text = input.value.trim();
      if (!text) return;
      const item = outboxItem(text, "sending");
      outbox.appendChild(item);
      input.value = "";
      const r = await api("POST", "/api/conversations/" + encodeURIComponent(conv.id) + "/messages",
                          {case_id: task.case_id, text});
      if (r.ok) { item.remove(); flash(t("Sent.")); return; }
      const reason = (r.data && r.data.error) || t("Not sent");
      item.replaceWith(outboxItem(text, "failed", reason));
      flash(reason, true);
    };
    const canned = cannedPicker(bundleOf(task), (text) => { input.value = text; input.focus(); });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); send(); }
    });
    box.append(outbox, el("p", {class: "window"}, windowText(conv.window)), canned,
      el("label", {for: id, class: "visually-hidden"}, t("Reply")), input,
      el("button", {type: "button", class: "reply-send", onclick: send}, t("Send")));
    return box;
  }

  function outboxItem(text, state, reason) {
    return el("li", {class: "outgoing " + state, "data-delivery": state},
      el("span", {class: "delivery " + state}, t(state === "sending" ? "sending…" : state) + " " + (TICKS[state] || "")),
      " ", el("span", {class: "body"}, text),
      reason ? el("div", {class: "failed-reason"}, t("reason") + ": " + reason) : null);
  }

  const bundles = new Map();  // task id -> its case bundle (for canned-reply variables)
  function bundleOf(task) { return bundles.get(task.task_id) || {}; }

  // A canned reply from the config, with {customer_name} and {agent_name} filled in.
  function cannedPicker(bundle, use) {
    const node = document.getElementById("canned-template").content.firstElementChild.cloneNode(true);
    const select = node.querySelector(".canned-reply");
    if (select.options.length <= 1) return null;
    const id = "canned-" + Math.random().toString(36).slice(2);
    select.id = id;
    node.querySelector(".canned-label").setAttribute("for", id);
    select.addEventListener("change", () => {
      if (!select.value) return;
      const vars = {customer_name: (bundle.customer && bundle.customer.display_name) || "",
                    agent_name: document.getElementById("me").dataset.name || ""};
      use(select.value.replace(/\{(customer_name|agent_name)\}/g, (m, k) => vars[k]));
      select.value = "";
    });
    return node;
  }

  // Notes, close / reopen, transfer to a queue, the customer's other cases.
  function caseTools(task, bundle) {
    const node = document.getElementById("case-tools-template").content.firstElementChild.cloneNode(true);
    const uid = task.task_id;
    for (const [label, field] of [[".note-label", ".note-text"], [".transfer-label", ".transfer-queue"],
                                  [".transfer-agent-label", ".transfer-agent"], [".transfer-reason-label", ".transfer-reason"]]) {
      node.querySelector(field).id = field.slice(1) + "-" + uid;
      node.querySelector(label).setAttribute("for", field.slice(1) + "-" + uid);
    }
    const casePath = "/api/cases/" + encodeURIComponent(task.case_id);
    const closeBtn = node.querySelector(".case-close");
    const reopenBtn = node.querySelector(".case-reopen");
    const showStatus = (status) => {
      closeBtn.hidden = status === "closed"; reopenBtn.hidden = status !== "closed";
      for (const ref of document.querySelectorAll('.pane[data-case="' + CSS.escape(task.case_id) + '"] .case-status')) ref.textContent = t(status);
    };
    showStatus(bundle.case && bundle.case.status);
    closeBtn.addEventListener("click", async () => {
      const r = await api("POST", casePath + "/close");
      if (r.ok) { showStatus(r.data.status); flash(t("Case closed.")); } else flash((r.data && r.data.error) || t("Not changed"), true);
    });
    reopenBtn.addEventListener("click", async () => {
      const r = await api("POST", casePath + "/reopen");
      if (r.ok) { showStatus(r.data.status); flash(t("Case reopened.")); } else flash((r.data && r.data.error) || t("Not changed"), true);
    });
    node.querySelector(".note-add").addEventListener("click", async () => {
      const text = node.querySelector(".note-text").value.trim();
      if (!text) return;
      const r = await api("POST", casePath + "/notes", {text});
      if (r.ok) { node.querySelector(".note-text").value = ""; appendEntry(task.case_id, r.data); flash(t("Note saved.")); }
      else flash((r.data && r.data.error) || t("Not saved"), true);
    });
    const transfer = node.querySelector(".transfer");
    if (task.channel === "voice") transfer.remove();  // calls: the call controls' transfer
    else node.querySelector(".transfer-go").addEventListener("click", async () => {
      // A named agent when one is chosen (offered to them only; not taken: back to
      // this agent, then the queue), else the queue.
      const queue = node.querySelector(".transfer-queue").value;
      const agentSel = node.querySelector(".transfer-agent");
      const reason = node.querySelector(".transfer-reason").value.trim();
      const payload = agentSel.value ? {agent_id: agentSel.value} : {queue_id: queue};
      if (reason) payload.reason = reason;
      const r = await api("POST", "/api/tasks/" + encodeURIComponent(task.task_id) + "/transfer", payload);
      const to = agentSel.value ? agentSel.selectedOptions[0].textContent : queue;
      flash(r.ok ? t("Transferred to {queue}.", {queue: to}) : (r.data && r.data.error) || t("Not transferred"), !r.ok);
    });
    const others = node.querySelector(".other-cases ul");
    node.querySelector(".other-cases").addEventListener("toggle", async () => {
      if (others.childElementCount || !(bundle.customer && bundle.customer.id)) return;
      const r = await api("GET", "/api/customers/" + encodeURIComponent(bundle.customer.id));
      if (!r.ok) return;
      for (const c of r.data.cases || []) {
        if (c.id === task.case_id) continue;
        others.appendChild(el("li", {}, el("a", {href: "/cases/" + encodeURIComponent(c.id), target: "_blank"}, c.id),
          " (" + t(c.status) + ", " + fmtTime(c.last_activity_at) + ")"));
      }
      if (!others.childElementCount) others.appendChild(el("li", {class: "muted"}, t("No other cases")));
    });
    return node;
  }

  function phoneOf(bundle) {
    const ids = (bundle.customer && bundle.customer.identities) || [];
    const phone = ids.find((i) => i.kind === "phone") || ids.find((i) => i.kind === "whatsapp" && /^\d+$/.test(i.value));
    return phone ? (phone.kind === "whatsapp" ? "+" + phone.value : phone.value) : "";
  }

  function voiceTools(task, bundle) {
    const number = phoneOf(bundle);
    const input = el("input", {class: "call-number", value: number, maxlength: "32", "aria-label": t("Phone number")});
    return el("div", {class: "voice-tools"}, input,
      el("button", {type: "button", class: "click-to-call", onclick: async () => {
        const r = await api("POST", "/api/calls", {number: input.value.trim(), case_id: task.case_id});
        flash(r.ok ? t("Calling {number}", {number: input.value}) : (r.data && r.data.error) || t("Call failed"), !r.ok);
      }}, t("Call")),
      el("button", {type: "button", class: "callback", onclick: async () => {
        const r = await api("POST", "/api/callbacks", {number: input.value.trim(), case_id: task.case_id, queue_id: task.queue_id || null});
        flash(r.ok ? t("Callback scheduled.") : (r.data && r.data.error) || t("Callback failed"), !r.ok);
      }}, t("Schedule callback")));
  }

  // Wrap-up: the code (by its name) and notes can be chosen while the conversation
  // runs; "End conversation" starts wrap-up (a call starts it by hanging up), "Done"
  // ends it with the code and notes. Which buttons show follows the task's status.
  function wrapUp(entry) {
    const task = entry.task;
    const node = document.getElementById("wrap-up-template").content.firstElementChild.cloneNode(true);
    const code = node.querySelector(".wrap-code");
    const notes = node.querySelector(".wrap-notes");
    code.id = "wrap-code-" + task.task_id;
    notes.id = "wrap-notes-" + task.task_id;
    node.querySelector(".wrap-code-label").setAttribute("for", code.id);
    node.querySelector(".wrap-notes-label").setAttribute("for", notes.id);
    const path = "/api/tasks/" + encodeURIComponent(task.task_id);
    node.querySelector(".wrap-extend").addEventListener("click", async () => {
      const r = await api("POST", path + "/wrap-up/extend", {seconds: 30});
      flash(r.ok ? t("Wrap-up extended by 30 s.") : (r.data && r.data.error) || t("Not extended"), !r.ok);
    });
    node.querySelector(".wrap-complete").addEventListener("click", async () => {
      const r = await api("POST", path + "/complete", {wrap_up_code: code.value || null, notes: notes.value.trim() || null});
      if (!r.ok) { flash((r.data && r.data.error) || t("Could not complete"), true); return; }
      flash(t("Wrap-up started."));
    });
    node.querySelector(".wrap-end").addEventListener("click", async () => {
      const r = await api("POST", path + "/wrap-up/end", {wrap_up_code: code.value || null, notes: notes.value.trim() || null});
      if (!r.ok) { flash((r.data && r.data.error) || t("Could not end wrap-up"), true); return; }
    });
    return node;
  }

  // ---------------------------------------------------------------- my tasks

  function renderTaskList() {
    const list = document.getElementById("task-list");
    const items = [];
    for (const o of offers.values()) items.push({task_id: o.pop.task_id, case_id: o.pop.case_id, channel: o.pop.channel, queue_id: o.pop.queue_id, status: "offered"});
    for (const tab of tabs.values()) items.push({...tab.task, status: tab.status || "accepted"});
    list.replaceChildren(...items.map((item) => el("li", {class: "task " + item.status, "data-task": item.task_id, "data-status": item.status},
      el("a", {href: "/cases/" + encodeURIComponent(item.case_id), target: "_blank"},
        channelName(item.channel) + " · " + statusName(item.status, item.channel)),
      " ", item.queue_id || "")));
    if (!items.length) list.appendChild(el("li", {class: "muted"}, t("No tasks")));
  }

  // The server's view of this agent's tasks (the ACD's own, see /api/tasks): opens the
  // tabs of tasks in hand with their timers, and closes what the server no longer has.
  async function sync() {
    const openedBefore = new Set(tabs.keys());
    const r = await api("GET", "/api/tasks?mine=1");
    if (!r.ok) return;
    const seen = new Set();
    for (const task of r.data.tasks) {
      seen.add(task.task_id);
      if (task.status === "accepted" || task.status === "wrap_up") {
        finished.delete(task.task_id);
        openTab(task, {status: task.status, since: task.accepted_at, wrapEnds: task.wrap_up_ends_at,
                       code: task.wrap_up_code});
      }
    }
    for (const id of openedBefore) if (!seen.has(id)) closeTab(id);
    renderTaskList();
  }

  function showState(state, reason) {
    document.getElementById("agent-state").textContent = state ? t(state) : t("logged_out");
    document.getElementById("agent-reason").textContent = reason ? "(" + reasonName(reason) + ")" : "";
    document.body.dataset.state = state || "";
    document.body.dataset.reason = reason || "";
  }

  function reasonName(reason) {
    const opt = document.querySelector('#reason-code option[value="' + CSS.escape(reason) + '"]');
    return opt ? opt.textContent : t(reason);
  }

  async function setState(state, reason) {
    const r = await api("POST", "/api/agents/" + encodeURIComponent(agentId) + "/state", {state, reason: reason || null});
    if (!r.ok) { flash((r.data && r.data.error) || t("State not changed"), true); return; }
    showState(r.data.state, r.data.reason);
  }

  document.getElementById("go-available").addEventListener("click", () => {
    // Ask for notifications while the agent is clicking (browsers require a gesture).
    if (window.Notification && Notification.permission === "default") Notification.requestPermission();
    setState("available");
  });
  document.getElementById("go-not-ready").addEventListener("click",
    () => setState("not_ready", document.getElementById("reason-code").value));

  // Keyboard: Alt+A accept, Alt+R reject (the newest offer), Alt+N next tab;
  // Ctrl+Enter sends in a reply box.
  document.addEventListener("keydown", (ev) => {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const key = ev.key.toLowerCase();
    const newest = [...offers.values()].pop();
    if (key === "a" && newest) { ev.preventDefault(); accept(newest.pop); }
    else if (key === "r" && newest) { ev.preventDefault(); reject(newest.pop); }
    else if (key === "n" && tabs.size) {
      ev.preventDefault();
      const ids = [...tabs.keys()];
      const current = ids.findIndex((id) => !tabs.get(id).node.hidden);
      selectTab(ids[(current + 1) % ids.length]);
    }
  });

  // The newest entries (this call's IVR path, the last message) are what the agent
  // needs first: a long timeline opens scrolled to its end, and stays there while new
  // entries arrive unless the agent scrolled up to read.
  function scrollToLatest(root) {
    for (const list of root.querySelectorAll("ol.timeline")) list.scrollTop = list.scrollHeight;
  }

  function appendEntry(caseId, entry) {
    for (const list of document.querySelectorAll("ol.timeline")) {
      if (list.dataset.case === caseId && !list.querySelector('[data-entry="' + CSS.escape(entry.id) + '"]')) {
        const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        list.appendChild(entryNode(entry));
        if (atEnd) list.scrollTop = list.scrollHeight;
      }
    }
  }

  async function refreshCase(caseId) {
    const r = await api("GET", "/api/cases/" + encodeURIComponent(caseId) + "/timeline");
    if (!r.ok) return;
    for (const list of document.querySelectorAll("ol.timeline")) {
      if (list.dataset.case === caseId) list.replaceWith(timelineNode(r.data.entries, caseId));
    }
  }

  const WITHDRAWN = ["task.offer_withdrawn", "task.rejected", "task.offer_rejected", "task.offer_expired", "task.missed", "task.abandoned"];

  function onTaskEvent(frame) {
    const p = frame.payload || {};
    const at = frame.occurred_at || new Date().toISOString();
    if (WITHDRAWN.includes(frame.topic)) {
      if (p.offer_id) dropOffer(p.offer_id);
      else dropOffersOfTask(p.task_id);
      if (frame.topic === "task.abandoned" && tabs.has(p.task_id)) sync();
    } else if (frame.topic === "task.accepted") {
      finished.delete(p.task_id);
      openTab({task_id: p.task_id, case_id: p.case_id, channel: p.channel, queue_id: p.queue_id},
              {status: "accepted", since: at});
    } else if (frame.topic === "task.completed") {
      const ends = new Date(new Date(at).getTime() + 1000 * Number(p.wrap_up_seconds || 0)).toISOString();
      const live = {status: "wrap_up", wrapEnds: ends, code: p.wrap_up_code};
      if (tabs.has(p.task_id)) applyLive(tabs.get(p.task_id), live);
      else openTab({task_id: p.task_id, case_id: p.case_id, channel: p.channel, queue_id: p.queue_id}, live);
    } else if (frame.topic === "task.wrap_up_extended") {
      if (tabs.has(p.task_id)) applyLive(tabs.get(p.task_id), {status: "wrap_up", wrapEnds: p.ends_at});
    } else if (frame.topic === "task.moved" && p.reason === "transfer") {
      closeTab(p.task_id);  // handed on: it is someone else's now
    } else if (frame.topic === "task.wrap_up_ended") {
      closeTab(p.task_id);
      if (p.wrap_up_code) flash(t("Wrap-up done."));
    }
  }

  // Search: customers and their cases, by name, phone (as people type it), e-mail,
  // WhatsApp id or case id.
  document.getElementById("search-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = document.getElementById("search-q").value.trim();
    const list = document.getElementById("search-results");
    if (q.length < 2) return;
    const r = await api("GET", "/api/search?q=" + encodeURIComponent(q));
    if (!r.ok) { flash((r.data && r.data.error) || t("Search failed"), true); return; }
    list.replaceChildren(...r.data.results.map((c) => el("li", {class: "search-result", "data-customer": c.id},
      el("strong", {}, c.display_name || t("Unknown customer")), " ",
      el("span", {class: "muted"}, (c.identities || []).map((i) => i.raw).join(", ")),
      el("ul", {}, ...(c.cases || []).map((k) => el("li", {},
        el("a", {href: "/cases/" + encodeURIComponent(k.id), target: "_blank", class: "case-link"}, k.id),
        " (" + t(k.status) + ", " + fmtTime(k.last_activity_at) + ")"))))));
    if (!r.data.results.length) list.appendChild(el("li", {class: "muted"}, t("Nothing found")));
  });

  renderTaskList();
  connect((frame) => {
    switch (frame.type) {
      case "hello": sync(); break;
      case "screenpop": showOffer(frame); break;
      case "timeline": appendEntry(frame.case_id, frame.entry); break;
      case "delivery": applyDelivery(frame); break;
      case "conversation": if (frame.payload && frame.payload.case_id) refreshCase(frame.payload.case_id); break;
      case "agent_state": showState(frame.payload.state, frame.payload.reason); break;
      case "task": onTaskEvent(frame); break;
    }
  });
})();
