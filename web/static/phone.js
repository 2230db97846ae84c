// The browser phone: a voice offer rings here, Answer takes the call over WebRTC.
// Signalling goes over the desktop's websocket (Centrale.send / Centrale.listen):
// phone.ring -> Answer: the page offers (its microphone), the server answers ->
// phone.connected. Reject, hang up, mute (the microphone), a dial pad (the server
// sends the digits as RFC 4733 to the caller), microphone and speaker choice, an input
// level meter, a call timer and the network state. After a reload the server says
// phone.active and the page brings the call back on a new connection (grace period).
"use strict";

(() => {
  const {t, flash, fmtClock, listen, send} = Centrale;
  const panel = document.getElementById("phone");
  if (!panel) return;
  const $ = (id) => document.getElementById(id);
  const stateText = $("phone-state"), caller = $("phone-caller"), timer = $("phone-timer");
  const net = $("phone-net"), codec = $("phone-codec"), audioOut = $("phone-audio");
  const btn = {answer: $("phone-answer"), reject: $("phone-reject"), hangup: $("phone-hangup"),
               mute: $("phone-mute")};
  const pad = $("phone-pad"), micSelect = $("phone-mic"), speakerSelect = $("phone-speaker");
  const meter = $("phone-level");

  let ringing = null;     // the phone.ring frame being rung
  let callId = null;      // the browser leg's call id, once answered
  let pc = null;
  let mic = null;         // the microphone stream: asked for once, kept for the page's life
  let audio = null;       // AudioContext (ringtone, meters)
  let ringTimer = null, clock = null, connectedAt = null;
  let remoteAnalyser = null;

  function setState(state, label) {
    panel.dataset.state = state;
    stateText.textContent = label;
    btn.answer.hidden = btn.reject.hidden = state !== "ringing";
    btn.hangup.hidden = !["connecting", "talking", "reconnecting"].includes(state);
    btn.mute.hidden = pad.hidden = state !== "talking" && state !== "reconnecting";
  }

  const netLabels = {connected: t("connected"), reconnecting: t("reconnecting"), lost: t("lost")};
  function setNet(state) {
    net.dataset.net = state;
    net.textContent = netLabels[state];
  }

  function ctx() {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  // ---- ringtone: a two-tone burst every 2 s until answered or stopped
  function chime() {
    try {
      const a = ctx(), now = a.currentTime;
      for (const [i, f] of [[0, 440], [1, 480]]) {
        const osc = a.createOscillator(), gain = a.createGain();
        osc.frequency.value = f;
        gain.gain.setValueAtTime(0.12, now + i * 0.4);
        gain.gain.exponentialRampToValueAtTime(0.001, now + i * 0.4 + 0.38);
        osc.connect(gain).connect(a.destination);
        osc.start(now + i * 0.4); osc.stop(now + i * 0.4 + 0.4);
      }
    } catch (err) { /* no audio device: the panel still shows the ring */ }
  }
  function startRingtone() { stopRingtone(); chime(); ringTimer = setInterval(chime, 2000); }
  function stopRingtone() { if (ringTimer) clearInterval(ringTimer); ringTimer = null; }

  // ---- devices and the level meter
  async function microphone() {
    if (mic) return mic;
    const id = micSelect.value;
    mic = await navigator.mediaDevices.getUserMedia({audio: id ? {deviceId: {exact: id}} : true});
    await listDevices();
    meterOn(mic);
    return mic;
  }

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [select, kind] of [[micSelect, "audioinput"], [speakerSelect, "audiooutput"]]) {
      const chosen = select.value;
      select.textContent = "";
      devices.filter((d) => d.kind === kind).forEach((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || (kind === "audioinput" ? t("Microphone") : t("Speaker")) + " " + (i + 1);
        select.appendChild(option);
      });
      if (chosen) select.value = chosen;
    }
  }

  function meterOn(stream) {
    try {
      const a = ctx(), analyser = a.createAnalyser();
      analyser.fftSize = 512;
      a.createMediaStreamSource(stream).connect(analyser);
      const data = new Float32Array(analyser.fftSize);
      const draw = () => {
        analyser.getFloatTimeDomainData(data);
        let sum = 0;
        for (const v of data) sum += v * v;
        meter.value = Math.min(1, Math.sqrt(sum / data.length) * 4);
        requestAnimationFrame(draw);
      };
      draw();
    } catch (err) { /* no meter without WebAudio */ }
  }

  micSelect.addEventListener("change", async () => {
    if (!mic) return;
    const old = mic;
    mic = null;
    const stream = await microphone();
    old.getTracks().forEach((track) => track.stop());
    if (pc) {
      const sender = pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      if (sender) await sender.replaceTrack(stream.getAudioTracks()[0]);
    }
  });
  speakerSelect.addEventListener("change", () => {
    if (audioOut.setSinkId) audioOut.setSinkId(speakerSelect.value).catch(() => flash(t("Cannot use that speaker"), true));
  });

  // ---- the peer connection
  function closePc() {
    if (pc) { pc.onconnectionstatechange = null; pc.close(); }
    pc = null;
  }

  async function offer(iceServers) {
    closePc();
    const stream = await microphone();
    pc = new RTCPeerConnection({iceServers: iceServers || []});
    const mine = pc;
    stream.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
    pc.ontrack = (ev) => {
      audioOut.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      try {
        remoteAnalyser = ctx().createAnalyser();
        remoteAnalyser.fftSize = 4096;
        ctx().createMediaStreamSource(audioOut.srcObject).connect(remoteAnalyser);
      } catch (err) { remoteAnalyser = null; }
    };
    pc.onconnectionstatechange = () => {
      if (pc !== mine) return;
      const s = pc.connectionState;
      if (s === "connected") setNet("connected");
      else if (s === "disconnected") setNet("reconnecting");
      else if (s === "failed") setNet("lost");
    };
    await pc.setLocalDescription(await pc.createOffer());
    // Host candidates come at once on a LAN; the whole list goes in the offer.
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const done = () => { if (mine.iceGatheringState === "complete") resolve(); };
      mine.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
    return pc.localDescription.sdp;
  }

  async function answer() {
    if (!ringing) return;
    const ring = ringing;
    stopRingtone();
    setState("connecting", t("connecting…"));
    try {
      const sdp = await offer(ring.ice_servers);
      send({type: "phone.offer", offer_id: ring.offer_id, sdp});
    } catch (err) {
      flash(t("No microphone: {error}", {error: err.message || String(err)}), true);
      reject();
    }
  }

  function reject() {
    if (!ringing) return;
    send({type: "phone.reject", offer_id: ringing.offer_id});
    idle();
  }

  function idle() {
    stopRingtone();
    closePc();
    ringing = null; callId = null; connectedAt = null;
    if (clock) clearInterval(clock);
    clock = null;
    timer.textContent = caller.textContent = codec.textContent = "";
    btn.mute.setAttribute("aria-pressed", "false");
    btn.mute.textContent = t("Mute");
    if (mic) mic.getAudioTracks().forEach((track) => { track.enabled = true; });
    setState("idle", t("idle"));
  }

  function talking(frame) {
    callId = frame.call_id;
    ringing = null;
    codec.textContent = frame.codec ? "(" + frame.codec + ")" : "";
    setState("talking", t("in call"));
    setNet("connected");
    if (!connectedAt) {
      connectedAt = Date.now();
      clock = setInterval(() => { timer.textContent = fmtClock((Date.now() - connectedAt) / 1000); }, 500);
      timer.textContent = fmtClock(0);
    }
  }

  btn.answer.addEventListener("click", answer);
  btn.reject.addEventListener("click", reject);
  btn.hangup.addEventListener("click", () => {
    if (callId) send({type: "phone.hangup", call_id: callId});
  });
  btn.mute.addEventListener("click", () => {
    if (!mic) return;
    const muted = btn.mute.getAttribute("aria-pressed") !== "true";
    mic.getAudioTracks().forEach((track) => { track.enabled = !muted; });
    btn.mute.setAttribute("aria-pressed", String(muted));
    btn.mute.textContent = muted ? t("Unmute") : t("Mute");
  });
  pad.addEventListener("click", (ev) => {
    const key = ev.target.closest("[data-digit]");
    if (key && callId) send({type: "phone.dtmf", call_id: callId, digits: key.dataset.digit});
  });

  listen(async (frame) => {
    switch (frame.type) {
      case "socket":
        if (!frame.open && panel.dataset.state !== "idle") setNet("reconnecting");
        break;
      case "phone.ring":
        ringing = frame;
        caller.textContent = frame.caller || t("unknown caller");
        setState("ringing", t("ringing"));
        startRingtone();
        break;
      case "phone.stop_ringing":
        if (ringing && ringing.offer_id === frame.offer_id) idle();
        break;
      case "phone.answer":
        if (pc) {
          try { await pc.setRemoteDescription({type: "answer", sdp: frame.sdp}); }
          catch (err) { flash(t("Phone: {error}", {error: err.message || String(err)}), true); }
        }
        break;
      case "phone.connected":
        if (pc) talking(frame);
        else idle();  // answered in another tab of this agent: that tab has the call
        break;
      case "phone.active":
        // This page was reloaded (or its connection dropped) during a call: bring it back.
        callId = frame.call_id;
        setState("reconnecting", t("reconnecting…"));
        setNet("reconnecting");
        try {
          send({type: "phone.resume", call_id: frame.call_id, sdp: await offer(frame.ice_servers)});
        } catch (err) { flash(t("No microphone: {error}", {error: err.message || String(err)}), true); }
        break;
      case "phone.ended":
        if (!callId || callId === frame.call_id) idle();
        break;
      case "phone.error":
        panel.dataset.error = frame.error || "";
        flash(t("Phone: {error}", {error: frame.error || ""}), true);
        break;
    }
  });

  // What the phone hears, for the curious (and the tests): the loudest frequency.
  window.CentralePhone = {
    peakFrequency() {
      if (!remoteAnalyser) return null;
      const bins = new Float32Array(remoteAnalyser.frequencyBinCount);
      remoteAnalyser.getFloatFrequencyData(bins);
      let best = 0;
      for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
      return {hz: best * ctx().sampleRate / remoteAnalyser.fftSize, db: bins[best]};
    },
    levelAt(hz) {  // dB of the received audio around one frequency
      if (!remoteAnalyser) return null;
      const bins = new Float32Array(remoteAnalyser.frequencyBinCount);
      remoteAnalyser.getFloatFrequencyData(bins);
      const i = Math.round(hz * remoteAnalyser.fftSize / ctx().sampleRate);
      return Math.max(bins[i - 1], bins[i], bins[i + 1]);
    },
    get state() { return panel.dataset.state; },
  };
  idle();
})();
