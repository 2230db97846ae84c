/* Centrale webchat widget. Embed with one tag:
 *   <script src="https://centrale.example/webchat/widget.js" async></script>
 * Plain JS, no dependencies. Every text from the network is rendered with textContent,
 * never innerHTML. Protocol: docs/channels.md (hello/welcome, message/ack with seq,
 * resume by last_seq, client_id re-sent until acknowledged).
 */
(function () {
  "use strict";
  var CONFIG = /*CENTRALE_CONFIG*/{};
  var script = document.currentScript;
  var base = script ? new URL(script.src) : new URL(window.location.href);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/webchat/ws";
  var KEY = "centrale.webchat";
  var state = load();
  var ws = null;
  var backoff = 500;
  var seen = {};
  var ui = build();

  function load() {
    try {
      var s = JSON.parse(window.localStorage.getItem(KEY) || "{}");
      // lastSeq is what this page shows: a new page load starts at 0 and gets the
      // whole thread; a reconnect of the same page asks only for what it missed.
      return { token: s.token || null, lastSeq: 0, pending: s.pending || [] };
    } catch (e) {
      return { token: null, lastSeq: 0, pending: [] };
    }
  }
  function save() {
    try {
      window.localStorage.setItem(KEY, JSON.stringify({ token: state.token, pending: state.pending }));
    } catch (e) { /* private mode: the session lasts as long as the page */ }
  }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function build() {
    var style = el("style");
    style.textContent =
      ".cw-box{position:fixed;right:16px;bottom:16px;width:320px;max-height:460px;display:flex;" +
      "flex-direction:column;font:14px sans-serif;background:#fff;border:1px solid #ccc;" +
      "border-radius:8px;box-shadow:0 2px 12px rgba(0,0,0,.2);z-index:2147483000}" +
      ".cw-head{padding:8px 12px;background:#2b5797;color:#fff;border-radius:8px 8px 0 0}" +
      ".cw-log{flex:1;overflow:auto;padding:8px;min-height:200px}" +
      ".cw-msg{margin:4px 0;padding:6px 8px;border-radius:6px;white-space:pre-wrap;word-wrap:break-word}" +
      ".cw-visitor{background:#e6f0ff;margin-left:40px}.cw-agent{background:#f1f1f1;margin-right:40px}" +
      ".cw-pending{opacity:.6}.cw-typing{font-style:italic;color:#666;padding:0 8px;min-height:1em}" +
      ".cw-form{display:flex;border-top:1px solid #ddd}.cw-form input{flex:1;border:0;padding:8px}" +
      ".cw-form button{border:0;background:#2b5797;color:#fff;padding:0 12px}" +
      ".cw-quick{display:flex;flex-wrap:wrap;gap:4px;margin:4px 40px 4px 0}" +
      ".cw-quick button{border:1px solid #2b5797;background:#fff;color:#2b5797;" +
      "border-radius:12px;padding:2px 10px;cursor:pointer}";
    document.head.appendChild(style);
    var box = el("div", "cw-box");
    box.setAttribute("role", "dialog");
    box.appendChild(el("div", "cw-head", CONFIG.title || "Chat"));
    var log = el("div", "cw-log");
    log.setAttribute("aria-live", "polite");
    var typing = el("div", "cw-typing");
    var form = el("form", "cw-form");
    var input = el("input");
    input.setAttribute("maxlength", "4000");
    input.setAttribute("aria-label", "Message");
    var button = el("button", null, "Send");
    button.type = "submit";
    form.appendChild(input);
    form.appendChild(button);
    box.appendChild(log);
    box.appendChild(typing);
    box.appendChild(form);
    document.body.appendChild(box);
    var typingSent = 0;
    input.addEventListener("input", function () {
      var now = Date.now();
      if (now - typingSent > 3000) { typingSent = now; send({ type: "typing" }); }
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      post(text, null);
    });
    return { log: log, typing: typing };
  }
  function post(text, reply) {
    var item = { client_id: "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8),
                 text: text };
    if (reply) item.reply = reply;
    state.pending.push(item);
    save();
    show({ from: "visitor", text: text, client_id: item.client_id }, true);
    send(frameOf(item));
  }
  function frameOf(item) {
    var frame = { type: "message", client_id: item.client_id, text: item.text };
    if (item.reply) frame.reply = item.reply;
    return frame;
  }
  // Quick replies (a survey's answers): one button each under the message; a click
  // sends the button's title as text with its id, and the buttons go away.
  function quickReplies(options) {
    var old = ui.log.querySelectorAll(".cw-quick");
    for (var i = 0; i < old.length; i++) old[i].parentNode.removeChild(old[i]);
    if (!options || !options.length) return;
    var row = el("div", "cw-quick");
    options.forEach(function (o) {
      if (typeof o.id !== "string" || typeof o.title !== "string") return;
      var b = el("button", null, o.title);
      b.type = "button";
      b.setAttribute("data-reply", o.id);
      b.addEventListener("click", function () {
        if (row.parentNode) row.parentNode.removeChild(row);
        post(o.title, o.id);
      });
      row.appendChild(b);
    });
    ui.log.appendChild(row);
    ui.log.scrollTop = ui.log.scrollHeight;
  }
  function show(msg, pending) {
    var key = msg.seq ? "s" + msg.seq : null;
    if (key && seen[key]) return;
    var existing = msg.client_id && ui.log.querySelector('[data-client-id="' + cssId(msg.client_id) + '"]');
    if (existing) {
      if (!pending) existing.classList.remove("cw-pending");
      if (key) seen[key] = true;
      return;
    }
    if (typeof msg.text !== "string") return;
    var node = el("div", "cw-msg " + (msg.from === "agent" ? "cw-agent" : "cw-visitor") +
                  (pending ? " cw-pending" : ""), msg.text);
    if (msg.client_id) node.setAttribute("data-client-id", msg.client_id);
    if (key) seen[key] = true;
    ui.log.appendChild(node);
    ui.log.scrollTop = ui.log.scrollHeight;
  }
  function cssId(id) { return String(id).replace(/[^A-Za-z0-9_-]/g, ""); }
  function send(frame) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
  }
  function connect() {
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      backoff = 500;
      ws.send(JSON.stringify({ type: "hello", token: state.token, last_seq: state.lastSeq }));
    };
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "welcome") {
        if (!f.resumed) { state.lastSeq = 0; }
        state.token = f.token;
        save();
        state.pending.forEach(function (p) {
          show({ from: "visitor", text: p.text, client_id: p.client_id }, true);
          send(frameOf(p));
        });
      } else if (f.type === "ack") {
        state.pending = state.pending.filter(function (p) { return p.client_id !== f.client_id; });
        if (f.seq > state.lastSeq) state.lastSeq = f.seq;
        save();
        show({ from: "visitor", seq: f.seq, client_id: f.client_id }, false);
      } else if (f.type === "message") {
        show(f, false);
        if (f.from === "agent") quickReplies(f.quick_replies);
        if (f.seq > state.lastSeq) { state.lastSeq = f.seq; save(); }
        ui.typing.textContent = "";
      } else if (f.type === "typing") {
        ui.typing.textContent = "Agent is typing\u2026";
        setTimeout(function () { ui.typing.textContent = ""; }, 4000);
      }
    };
    ws.onclose = function () {
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
  }
  connect();
})();
