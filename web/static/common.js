// Centrale: small helpers shared by the desktop and the wallboard. No framework, no
// build step. Text from customers is only ever written with textContent.
"use strict";

const Centrale = (() => {
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
      return {ok: false, status: 0, data: {error: "network error: " + err}};
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

  function connect(onFrame) {
    let delay = 500;
    const status = document.getElementById("connection");
    function open() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(proto + "//" + location.host + "/ws");
      ws.onopen = () => { delay = 500; if (status) { status.textContent = "live"; status.className = "conn live"; } };
      ws.onmessage = (msg) => {
        let frame;
        try { frame = JSON.parse(msg.data); } catch (err) { return; }
        try { onFrame(frame); } catch (err) { console.error("frame handler failed", err, frame); }
      };
      ws.onclose = () => {
        if (status) { status.textContent = "reconnecting…"; status.className = "conn"; }
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  return {api, el, flash, safeUrl, fmtSeconds, fmtPercent, connect, csrf};
})();
