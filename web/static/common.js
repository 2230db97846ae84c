// Centrale: small helpers shared by the desktop and the wallboard. No framework, no
// build step. Text from customers is only ever written with textContent.
"use strict";

const Centrale = (() => {
  // ---- language and time zone, both chosen by the server for this user (see base.html)
  const body = document.body;
  const lang = document.documentElement.lang || "en";
  const timeZone = (body && body.dataset.timezone) || undefined;
  let catalogue = {};
  try {
    const node = document.getElementById("catalogue");
    if (node) catalogue = JSON.parse(node.textContent) || {};
  } catch (err) { catalogue = {}; }

  // t("Offer: {channel}", {channel: "WhatsApp"}): the message in the user's language
  // (the gettext catalogue, web/i18n/), English when it has no translation.
  function t(message, vars) {
    let text = catalogue[message] || message;
    if (vars) text = text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return text;
  }

  // Timestamps come from the server in UTC with their offset; they are shown in the
  // user's (or the site's) time zone, never the browser's guess.
  // A 24-hour clock in both languages: a contact centre's shifts run through the night.
  const dateTime = new Intl.DateTimeFormat(lang, {timeZone, year: "numeric", month: "2-digit", day: "2-digit",
                                                  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"});
  const timeOnly = new Intl.DateTimeFormat(lang, {timeZone, hour: "2-digit", minute: "2-digit", second: "2-digit",
                                                  hourCycle: "h23"});
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : dateTime.format(d);
  }
  function fmtTimeOfDay(d) { return timeOnly.format(d); }

  // Midnight today on the site's (or user's) clock, as a Date: the day charts' origin.
  function zoneMidnight() {
    const now = new Date();
    const parts = {};
    for (const p of new Intl.DateTimeFormat("en-GB", {timeZone, hour12: false, hour: "2-digit", minute: "2-digit",
                                                       second: "2-digit"}).formatToParts(now)) parts[p.type] = p.value;
    const since = ((Number(parts.hour) % 24) * 3600 + Number(parts.minute) * 60 + Number(parts.second)) * 1000
                  + now.getMilliseconds();
    return new Date(now.getTime() - since);
  }

  // 0:07, 12:34, 1:02:03 — a running clock (talk time, wrap-up, time in state).
  function fmtClock(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
  }

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function api(method, path, body) {
    const opts = {method, credentials: "same-origin",
                  headers: {"Accept": "application/json", "X-CSRF-Token": csrf()}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (err) {
      return {ok: false, status: 0, data: {error: t("network error") + ": " + err}};
    }
    let data = null;
    try { data = await resp.json(); } catch (err) { data = null; }
    if (resp.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname); }
    return {ok: resp.ok, status: resp.status, data};
  }

  // el("div", {class: "x", "data-id": id}, "text", child, ...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function flash(message, isError) {
    const node = document.getElementById("flash");
    if (!node) return;
    node.textContent = message;
    node.classList.toggle("error", !!isError);
  }

  function safeUrl(url) {
    // Only http(s) links from the server's own templates (CTI); never javascript:.
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  function fmtSeconds(value) {
    if (value === null || value === undefined || value === "") return "–";
    const s = Math.round(Number(value));
    if (!isFinite(s)) return "–";
    return s >= 60 ? Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s" : s + "s";
  }

  function fmtPercent(value) {
    if (value === null || value === undefined) return "–";
    return Math.round(Number(value) * 100) + "%";
  }

  // Other scripts of the page (the browser phone) hear every frame and the socket's
  // opening and closing ({type: "socket", open: true|false}), and may send frames.
  const listeners = [];
  let socket = null;
  function listen(fn) { listeners.push(fn); }
  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }
  function tell(frame) {
    for (const fn of listeners) {
      try { fn(frame); } catch (err) { console.error("frame listener failed", err, frame); }
    }
  }

  function connect(onFrame) {
    let delay = 500;
    const status = document.getElementById("connection");
    function open() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(proto + "//" + location.host + "/ws");
      socket = ws;
      ws.onopen = () => {
        delay = 500; if (status) { status.textContent = t("live"); status.className = "conn live"; }
        tell({type: "socket", open: true});
      };
      ws.onmessage = (msg) => {
        let frame;
        try { frame = JSON.parse(msg.data); } catch (err) { return; }
        try { onFrame(frame); } catch (err) { console.error("frame handler failed", err, frame); }
        tell(frame);
      };
      ws.onclose = () => {
        tell({type: "socket", open: false});
        if (status) { status.textContent = t("reconnecting…"); status.className = "conn"; }
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  return {api, el, flash, safeUrl, fmtSeconds, fmtPercent, fmtClock, fmtTime, fmtTimeOfDay, zoneMidnight,
          connect, listen, send, csrf, t, lang, timeZone};
})();
