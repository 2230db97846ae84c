// Agent assist on the desktop: beside each open conversation, replies from similar
// resolved cases and knowledge-base sections (and, when the site configured a model, a
// draft that cites them); the case summary on a screen-pop when the case has history.
// "Insert" only fills the reply box: nothing reaches the customer without the agent's
// Send. What the agent did with the suggestions is reported when they send (used as
// is, edited, or ignored). Works alongside desktop.js by watching the DOM it builds.
"use strict";

(() => {
  const {api, el} = Centrale;
  const panelTemplate = document.getElementById("assist-panel-template");
  const summaryTemplate = document.getElementById("assist-summary-template");
  const panes = document.getElementById("tab-panes");
  const offers = document.getElementById("offers");
  if (!panelTemplate || !panes) return;
  let disabled = false;  // the server answered 501: assist is not enabled there

  function newKey() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "fb-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ------------------------------------------------------------ the panel of a pane

  function attach(pane) {
    if (disabled || pane.assist || !pane.dataset.case) return;
    const caseId = pane.dataset.case;
    const panel = panelTemplate.content.firstElementChild.cloneNode(true);
    const state = {caseId, pane, panel, shown: false, inserted: null, loading: null};
    pane.assist = state;
    // Beside the conversation: right after the reply box(es), before the wrap-up.
    const wrap = pane.querySelector(".wrapup");
    pane.insertBefore(panel, wrap || null);
    panel.querySelector(".assist-ask-draft").addEventListener("click", () => askDraft(state));
    // Sending is the moment to report what the suggestion became (capture: before
    // desktop.js's own click handler clears the box).
    pane.addEventListener("click", (ev) => {
      if (ev.target.closest && ev.target.closest(".reply-send")) onSend(state, ev.target.closest(".conversation"));
    }, true);
    // The timeline: a new customer message → suggest again; the agent's reply landing
    // (sent for real, not refused) → report what the suggestion became.
    observeTimeline(state);
    load(state);
    showSummary(caseId, panel, panel.querySelector("h4"));
    wrapUpHelper(state);
  }

  // "Suggest a code" beside the wrap-up select: the model's pick when one is
  // configured, else the code similar resolved cases ended with. Asked on click only.
  function wrapUpHelper(state) {
    const select = state.pane.querySelector(".wrapup .wrap-code");
    if (!select) return;
    const hint = el("span", {class: "assist-wrap-hint muted"});
    const button = el("button", {type: "button", class: "assist-wrap-suggest", onclick: async () => {
      button.disabled = true;
      const r = await api("GET", "/api/assist/cases/" + encodeURIComponent(state.caseId) + "/wrap-up");
      button.disabled = false;
      const code = r.ok && r.data.code;
      if (code && Array.from(select.options).some((o) => o.value === code)) {
        select.value = code;
        hint.textContent = r.data.by === "model" ? "(assistant's pick)" : "(as similar cases)";
      } else {
        hint.textContent = "No suggestion.";
      }
    }}, "Suggest a code");
    select.after(button, hint);
  }

  async function load(state) {
    const r = await api("GET", "/api/assist/cases/" + encodeURIComponent(state.caseId) + "/suggestions");
    if (r.status === 501) { disabled = true; state.panel.remove(); return; }
    if (!r.ok) { note(state, (r.data && r.data.error) || "Suggestions are not available."); return; }
    render(state, r.data);
  }

  function note(state, text) {
    state.panel.querySelector(".assist-note").textContent = text || "";
  }

  function render(state, data) {
    const replies = state.panel.querySelector(".assist-replies");
    const articles = state.panel.querySelector(".assist-articles");
    replies.replaceChildren();
    articles.replaceChildren();
    for (const s of data.replies || []) replies.appendChild(replyItem(state, s));
    for (const a of data.articles || []) articles.appendChild(articleItem(state, a));
    if (!(data.replies || []).length) replies.appendChild(el("li", {class: "muted"}, "No similar resolved case yet."));
    if (!(data.articles || []).length) articles.appendChild(el("li", {class: "muted"}, "No matching article."));
    state.shown = state.shown || (data.replies || []).length > 0 || (data.articles || []).length > 0;
    state.panel.querySelector(".assist-ask-draft").hidden = !data.model;
    note(state, data.note || "");
  }

  function replyItem(state, s) {
    const origin = el("div", {class: "assist-origin", hidden: true},
      s.question ? "That customer asked: " + s.question : "",
      el("br"), el("a", {href: "/cases/" + encodeURIComponent(s.case_id), target: "_blank",
                         rel: "noopener"}, "Open case " + s.case_id));
    return el("li", {class: "assist-reply", "data-case": s.case_id},
      el("div", {class: "assist-text"}, s.text),
      el("button", {type: "button", class: "assist-insert",
                    onclick: () => insert(state, s.text, "case", s.case_id)}, "Insert"),
      el("button", {type: "button", class: "assist-source link",
                    onclick: () => { origin.hidden = !origin.hidden; }},
         "From case " + s.case_id + " (" + s.channel + ")"),
      origin);
  }

  function articleItem(state, a) {
    const title = a.title + (a.heading && a.heading !== a.title ? " — " + a.heading : "");
    return el("li", {class: "assist-article", "data-article": a.article_id},
      el("strong", {}, title),
      el("div", {class: "assist-text"}, a.text),
      el("button", {type: "button", class: "assist-insert",
                    onclick: () => insert(state, a.text, "article", a.article_id + "#" + (a.heading || ""))}, "Insert"));
  }

  async function askDraft(state) {
    const button = state.panel.querySelector(".assist-ask-draft");
    button.disabled = true;
    note(state, "Asking the assistant…");
    const r = await api("POST", "/api/assist/cases/" + encodeURIComponent(state.caseId) + "/draft", {});
    button.disabled = false;
    if (!r.ok) { note(state, (r.data && r.data.error) || "The assistant is not available."); return; }
    render(state, r.data);
    const box = state.panel.querySelector(".assist-draft");
    if (!r.data.draft) { box.hidden = true; return; }
    box.hidden = false;
    box.querySelector(".assist-draft-text").textContent = r.data.draft.text;
    const cites = (r.data.draft.cited || []).map((c) => c.label + ": " + c.title);
    box.querySelector(".assist-cites").textContent = cites.length ? "Sources — " + cites.join("; ") : "No sources cited: check it before sending.";
    box.querySelector(".assist-insert-draft").onclick = () => insert(state, r.data.draft.text, "model", null);
  }

  function insert(state, text, source, ref) {
    const box = state.pane.querySelector(".conversation .reply-text");
    if (!box) { note(state, "No reply box for this case: copy the text instead."); return; }
    box.value = box.value.trim() ? box.value.replace(/\s+$/, "") + "\n" + text : text;
    box.focus();
    state.inserted = {text: box.value, source, ref};
  }

  function observeTimeline(state) {
    let timeline = null;
    const observer = new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) {
        if (!n.classList || !n.classList.contains("message")) continue;
        if (n.classList.contains("inbound")) load(state);
        else if (n.classList.contains("outbound")) onSent(state, n);
      }
    });
    // desktop.js may replace the whole list (a refresh): follow the current one.
    const follow = () => {
      const current = state.pane.querySelector("ol.timeline");
      if (current && current !== timeline) {
        observer.disconnect();
        timeline = current;
        observer.observe(timeline, {childList: true});
        for (const li of timeline.querySelectorAll("li.message.outbound")) onSent(state, li);
      }
    };
    follow();
    new MutationObserver(follow).observe(state.pane, {childList: true});
  }

  // Send pressed: remember what is being sent; it counts once it is on the timeline.
  function onSend(state, conversation) {
    const box = conversation && conversation.querySelector(".reply-text");
    const sent = box ? box.value.trim() : "";
    if (!sent || !state.shown) return;
    let body;
    if (state.inserted) {
      const outcome = sent === state.inserted.text.trim() ? "used" : "edited";
      body = {source: state.inserted.source, source_ref: state.inserted.ref, outcome};
    } else {
      body = {source: "case", source_ref: null, outcome: "ignored"};
    }
    state.sending = {text: sent, body, key: newKey()};
  }

  function onSent(state, entry) {
    const sending = state.sending;
    const text = entry.querySelector(".body");
    if (!sending || !text || text.textContent.trim() !== sending.text) return;
    state.sending = null;
    state.inserted = null;
    api("POST", "/api/assist/feedback", {key: sending.key, case_id: state.caseId, ...sending.body});
  }

  // ------------------------------------------------------------ the summary on a pop

  // On a pop it goes just above Accept/Reject, below the timeline, so the timeline
  // keeps its place (it opens scrolled to this contact); in a tab, atop the panel.
  async function showSummary(caseId, container, after) {
    if (disabled || !summaryTemplate || !container || container.querySelector(".assist-summary")) return;
    const r = await api("GET", "/api/assist/cases/" + encodeURIComponent(caseId) + "/summary");
    if (r.status === 501) { disabled = true; return; }
    if (!r.ok || !r.data.has_history || container.querySelector(".assist-summary")) return;
    const node = summaryTemplate.content.firstElementChild.cloneNode(true);
    const lines = node.querySelector(".assist-summary-lines");
    for (const line of (r.data.text || "").split("\n")) if (line.trim()) lines.appendChild(el("li", {}, line));
    if (r.data.written_by === "model") node.querySelector("h5").textContent = "Case summary (assistant)";
    if (after && after.parentNode === container) after.after(node); else container.prepend(node);
  }

  function showPopSummary(pop) {
    const actions = pop.querySelector(".actions");
    if (!actions) return;
    const before = actions.previousElementSibling;
    showSummary(pop.dataset.case, pop, before);
  }

  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType === 1 && n.matches("section.pane")) attach(n);
    }
  }).observe(panes, {childList: true});
  for (const pane of panes.querySelectorAll("section.pane")) attach(pane);

  if (offers) new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType === 1 && n.matches("article.screenpop") && n.dataset.case) {
        showPopSummary(n);
      }
    }
  }).observe(offers, {childList: true});
})();
