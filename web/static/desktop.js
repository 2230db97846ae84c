// The agent desktop: state buttons, screen-pops with accept/reject, one tab per
// accepted task (digital conversations side by side, up to capacity), replies, wrap-up,
// merge suggestions, click-to-call and callbacks. All over one websocket + JSON POSTs.
"use strict";

(() => {
  const {api, el, flash, safeUrl, fmtSeconds, connect} = Centrale;
  const agentId = document.body.dataset.agent;
  const offers = new Map();   // offer_id -> {pop, node}
  const tabs = new Map();     // task_id -> {task, node, caseId}
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
      if (Array.isArray(path)) facts.push("path: " + path.map((p) => typeof p === "object" ? (p.node || p.id || JSON.stringify(p)) : p).join(" → "));
      const digits = meta.digits || meta.dtmf;
      if (digits) facts.push("digits: " + (Array.isArray(digits) ? digits.join(" ") : digits));
    }
    if (e.kind === "call" || e.channel === "voice") {
      const d = meta.duration_seconds ?? meta.duration ?? meta.talk_seconds;
      if (d !== undefined) facts.push("duration: " + fmtSeconds(d));
    }
    const code = meta.wrap_up_code || (e.kind === "wrap_up" ? meta.code : null);
    if (code) facts.push("wrap-up: " + code);
    const delivery = meta.message_id ? noteDelivery(meta.message_id, fromMeta(meta.delivery)) : fromMeta(meta.delivery);
    if (!delivery && (meta.status || meta.delivery_status)) facts.push("status: " + (meta.status || meta.delivery_status));
    if (meta.agent_id) facts.push("agent: " + meta.agent_id);
    if (meta.notes && !(e.body || "").includes(meta.notes)) facts.push("notes: " + meta.notes);
    const when = e.occurred_at ? new Date(e.occurred_at).toLocaleString() : "";
    const tick = delivery ? el("span", {class: "delivery " + delivery.delivery, "data-delivery": delivery.delivery,
                                        title: delivery.delivery}, "delivery: " + delivery.delivery + " " + (TICKS[delivery.delivery] || "")) : null;
    const node = el("li", {class: "entry " + e.kind + " " + e.direction, "data-entry": e.id, "data-message": meta.message_id || null},
      el("span", {class: "when"}, when), " ",
      el("span", {class: "what"}, e.channel + " · " + e.kind + " · " + e.direction),
      e.body ? el("div", {class: "body"}, e.body) : null,
      facts.length || tick ? el("div", {class: "facts"}, tick, tick && facts.length ? " · " : null, facts.join(" · ")) : null);
    node.centraleEntry = e;
    return node;
  }

  // ---------------------------------------------------------------- delivery ticks
  // message id -> {delivery, failed}: the best state seen, from the entries' own meta
  // and from `delivery` frames (which may come before the entry's `timeline` frame).
  // A state only moves forward (sent < delivered < read); failed stays failed.
  const deliveries = new Map();
  const RANK = {pending: 0, accepted: 0, sent: 1, delivered: 2, read: 3, failed: 4};
  const TICKS = {pending: "…", accepted: "…", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗"};

  function fromMeta(value) {
    return value ? {delivery: String(value), failed: value === "failed"} : null;
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
    noteDelivery(frame.message_id, {delivery: frame.failed ? "failed" : frame.delivery, failed: !!frame.failed});
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
      el("h3", {class: "customer-name"}, c.display_name || "Unknown customer"));
    const ids = el("ul", {class: "identities"});
    for (const i of c.identities || []) ids.appendChild(el("li", {}, i.kind + ": " + i.raw + (i.verified ? "" : " (unverified)")));
    box.appendChild(ids);
    if ((c.tags || []).length) {
      const tags = el("p", {class: "tags"});
      for (const t of c.tags) tags.appendChild(el("span", {class: "tag"}, t));
      box.appendChild(tags);
    }
    const cti = safeUrl(pop.cti_url);
    if (cti) box.appendChild(el("a", {class: "cti", href: cti, target: "_blank", rel: "noopener noreferrer"}, "Open in CRM"));
    if (pop.case) box.appendChild(el("p", {class: "case-ref"}, "Case ",
      el("a", {href: "/cases/" + encodeURIComponent(pop.case.id), class: "case-link", target: "_blank"}, pop.case.id),
      " (" + pop.case.status + ")"));
    for (const s of pop.suggestions || []) {
      box.appendChild(el("div", {class: "suggestion"}, s.reason + " ",
        el("button", {type: "button", class: "merge", onclick: () => merge(s, c.id)}, "Merge")));
    }
    return box;
  }

  async function merge(s, customerId) {
    const r = await api("POST", "/api/customers/merge", {source_customer_id: s.candidate_customer_id,
      target_customer_id: customerId, reason: s.reason});
    flash(r.ok ? "Customers merged." : (r.data && r.data.error) || "Merge failed", !r.ok);
  }

  // ---------------------------------------------------------------- offers

  function showOffer(pop) {
    if (!pop.offer_id || offers.has(pop.offer_id)) return;
    document.getElementById("idle-hint").hidden = true;
    const countdown = el("span", {class: "countdown"});
    const card = el("article", {class: "screenpop", id: "offer-" + pop.offer_id, "data-case": pop.case_id || "",
                                "data-channel": pop.channel || ""},
      el("header", {}, el("strong", {}, "Offer: " + (pop.channel || "task")), " from queue " + (pop.queue_id || "–") + " ", countdown),
      pop.error ? el("p", {class: "flash error"}, pop.error) : customerNode(pop),
      pop.error ? null : timelineNode(pop.timeline, pop.case_id),
      el("div", {class: "actions"},
        el("button", {type: "button", class: "accept", onclick: () => accept(pop)}, "Accept"),
        el("button", {type: "button", class: "reject", onclick: () => reject(pop)}, "Reject")));
    offersBox.prepend(card);
    scrollToLatest(card);
    offers.set(pop.offer_id, {pop, node: card});
    if (pop.expires_at) {
      const end = new Date(pop.expires_at).getTime();
      const tick = () => {
        if (!offers.has(pop.offer_id)) return;
        countdown.textContent = Math.max(0, Math.round((end - Date.now()) / 1000)) + " s";
        setTimeout(tick, 500);
      };
      tick();
    }
  }

  function dropOffer(offerId) {
    const o = offers.get(offerId);
    if (o) { o.node.remove(); offers.delete(offerId); }
  }

  async function accept(pop) {
    const r = await api("POST", "/api/offers/" + encodeURIComponent(pop.offer_id) + "/accept");
    if (!r.ok) { flash((r.data && r.data.error) || "Could not accept", true); dropOffer(pop.offer_id); return; }
    dropOffer(pop.offer_id);
    openTab({task_id: pop.task_id, case_id: pop.case_id, channel: pop.channel, queue_id: pop.queue_id}, pop);
    loadTasks();
  }

  async function reject(pop) {
    const r = await api("POST", "/api/offers/" + encodeURIComponent(pop.offer_id) + "/reject");
    if (!r.ok) flash((r.data && r.data.error) || "Could not reject", true);
    dropOffer(pop.offer_id);
  }

  // ---------------------------------------------------------------- tabs (accepted tasks)

  async function openTab(task, bundle) {
    if (tabs.has(task.task_id)) { selectTab(task.task_id); return; }
    if (opening.has(task.task_id) || finished.has(task.task_id)) return;
    if (!bundle) {
      opening.add(task.task_id);
      const r = await api("GET", "/api/cases/" + encodeURIComponent(task.case_id));
      opening.delete(task.task_id);
      if (!r.ok) { flash((r.data && r.data.error) || "Cannot open the case", true); return; }
      if (tabs.has(task.task_id) || finished.has(task.task_id)) return;
      bundle = r.data;
    }
    const pane = el("section", {class: "pane", id: "task-" + task.task_id, "data-case": task.case_id, "data-channel": task.channel});
    const label = ((bundle.customer && bundle.customer.display_name) || task.channel || "task");
    const tabButton = el("button", {type: "button", class: "tab", onclick: () => selectTab(task.task_id)}, task.channel + ": " + label);
    tabsBar.appendChild(tabButton);
    pane.appendChild(customerNode(bundle));
    pane.appendChild(timelineNode(bundle.timeline, task.case_id));
    // Call or call back the customer from any task: a WhatsApp or SMS contact with a
    // number is often better served by phone.
    if (task.channel === "voice" || phoneOf(bundle)) pane.appendChild(voiceTools(task, bundle));
    for (const conv of bundle.conversations || []) pane.appendChild(replyBox(task, conv));
    if (task.channel !== "voice" && !(bundle.conversations || []).length) {
      pane.appendChild(el("p", {class: "muted"}, "No open conversation for this case."));
    }
    pane.appendChild(wrapUp(task));
    panes.appendChild(pane);
    tabs.set(task.task_id, {task, node: pane, button: tabButton, caseId: task.case_id});
    selectTab(task.task_id);
    scrollToLatest(pane);
    document.getElementById("idle-hint").hidden = true;
  }

  function selectTab(taskId) {
    for (const [id, t] of tabs) {
      t.node.hidden = id !== taskId;
      t.button.classList.toggle("active", id === taskId);
    }
  }

  function closeTab(taskId) {
    finished.add(taskId);
    const t = tabs.get(taskId);
    if (!t) return;
    t.node.remove(); t.button.remove(); tabs.delete(taskId);
    const next = tabs.keys().next();
    if (!next.done) selectTab(next.value);
  }

  function windowText(w) {
    if (!w || w.applies === false) return "";
    if (w.open === false) return w.reason || "24-hour window closed: only templates can be sent";
    const until = w.expires_at || w.closes_at || w.until;
    return until ? "24-hour window open until " + new Date(until).toLocaleString() : "window open";
  }

  function replyBox(task, conv) {
    const input = el("textarea", {class: "reply-text", maxlength: "4096", rows: "2", placeholder: "Reply…"});
    const win = el("p", {class: "window"}, windowText(conv.window));
    const send = async () => {
      const text = input.value.trim();
      if (!text) return;
      const r = await api("POST", "/api/conversations/" + encodeURIComponent(conv.id) + "/messages",
                          {case_id: task.case_id, text});
      if (r.ok) { input.value = ""; flash("Sent."); }
      else flash((r.data && r.data.error) || "Not sent", true);
    };
    return el("div", {class: "conversation", "data-conversation": conv.id},
      el("h4", {}, (conv.channel || "conversation") + " " + (conv.status ? "(" + conv.status + ")" : "")),
      win, input, el("button", {type: "button", class: "reply-send", onclick: send}, "Send"));
  }

  function phoneOf(bundle) {
    const ids = (bundle.customer && bundle.customer.identities) || [];
    const phone = ids.find((i) => i.kind === "phone") || ids.find((i) => i.kind === "whatsapp" && /^\d+$/.test(i.value));
    return phone ? (phone.kind === "whatsapp" ? "+" + phone.value : phone.value) : "";
  }

  function voiceTools(task, bundle) {
    const number = phoneOf(bundle);
    const input = el("input", {class: "call-number", value: number, maxlength: "32"});
    return el("div", {class: "voice-tools"}, input,
      el("button", {type: "button", class: "click-to-call", onclick: async () => {
        const r = await api("POST", "/api/calls", {number: input.value.trim(), case_id: task.case_id});
        flash(r.ok ? "Calling " + input.value : (r.data && r.data.error) || "Call failed", !r.ok);
      }}, "Call"),
      el("button", {type: "button", class: "callback", onclick: async () => {
        const r = await api("POST", "/api/callbacks", {number: input.value.trim(), case_id: task.case_id, queue_id: task.queue_id || null});
        flash(r.ok ? "Callback scheduled." : (r.data && r.data.error) || "Callback failed", !r.ok);
      }}, "Schedule callback"));
  }

  function wrapUp(task) {
    const node = document.getElementById("wrap-up-template").content.firstElementChild.cloneNode(true);
    const complete = node.querySelector(".wrap-complete");
    const end = node.querySelector(".wrap-end");
    const extend = node.querySelector(".wrap-extend");
    extend.addEventListener("click", async () => {
      const r = await api("POST", "/api/tasks/" + encodeURIComponent(task.task_id) + "/wrap-up/extend", {seconds: 30});
      flash(r.ok ? "Wrap-up extended by 30 s." : (r.data && r.data.error) || "Not extended", !r.ok);
    });
    complete.addEventListener("click", async () => {
      const r = await api("POST", "/api/tasks/" + encodeURIComponent(task.task_id) + "/complete", {
        wrap_up_code: node.querySelector(".wrap-code").value || null,
        notes: node.querySelector(".wrap-notes").value.trim() || null});
      if (!r.ok) { flash((r.data && r.data.error) || "Could not complete", true); return; }
      complete.hidden = true; end.hidden = false; extend.hidden = false; flash("Wrap-up started.");
    });
    end.addEventListener("click", async () => {
      const r = await api("POST", "/api/tasks/" + encodeURIComponent(task.task_id) + "/wrap-up/end");
      if (!r.ok) { flash((r.data && r.data.error) || "Could not end wrap-up", true); return; }
      closeTab(task.task_id); loadTasks();
    });
    return node;
  }

  // ---------------------------------------------------------------- lists and state

  async function loadTasks() {
    const r = await api("GET", "/api/tasks?mine=1");
    if (!r.ok) return;
    const list = document.getElementById("task-list");
    list.replaceChildren();
    for (const t of r.data.tasks) {
      if (finished.has(t.task_id)) continue;  // wrapped up here; the ledger may lag a moment
      list.appendChild(el("li", {class: "task " + t.status, "data-task": t.task_id},
        el("a", {href: "/cases/" + encodeURIComponent(t.case_id), target: "_blank"}, t.channel + " · " + t.status),
        " ", t.queue_id || ""));
      if ((t.status === "accepted" || t.status === "wrap_up") && !tabs.has(t.task_id)) openTab(t);
    }
  }

  function showState(state, reason) {
    document.getElementById("agent-state").textContent = (state || "logged_out").replace("_", " ");
    document.getElementById("agent-reason").textContent = reason ? "(" + reason + ")" : "";
    document.body.dataset.state = state || "";
  }

  async function setState(state, reason) {
    const r = await api("POST", "/api/agents/" + encodeURIComponent(agentId) + "/state", {state, reason: reason || null});
    if (!r.ok) { flash((r.data && r.data.error) || "State not changed", true); return; }
    showState(r.data.state, r.data.reason);
  }

  document.getElementById("go-available").addEventListener("click", () => setState("available"));
  document.getElementById("go-not-ready").addEventListener("click",
    () => setState("not_ready", document.getElementById("reason-code").value));

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

  connect((frame) => {
    switch (frame.type) {
      case "hello": loadTasks(); break;
      case "screenpop": showOffer(frame); break;
      case "timeline": appendEntry(frame.case_id, frame.entry); break;
      case "delivery": applyDelivery(frame); break;
      case "conversation": if (frame.payload && frame.payload.case_id) refreshCase(frame.payload.case_id); break;
      case "agent_state": showState(frame.payload.state, frame.payload.reason); break;
      case "task": {
        const p = frame.payload || {};
        if (["task.offer_withdrawn", "task.rejected", "task.offer_rejected", "task.offer_expired", "task.missed", "task.abandoned"].includes(frame.topic)) {
          if (p.offer_id) dropOffer(p.offer_id);
          else for (const [id, o] of offers) if (o.pop.task_id === p.task_id) dropOffer(id);
        }
        if (frame.topic === "task.wrap_up_ended") { closeTab(p.task_id); loadTasks(); }
        if (frame.topic === "task.accepted") {  // e.g. answered on the desk phone
          if (p.offer_id) dropOffer(p.offer_id);
          loadTasks();
        }
        break;
      }
    }
  });
})();
