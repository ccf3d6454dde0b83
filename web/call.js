// Calls, Gen-A style (P2P WebRTC signalled through the server):
//   caller: getUserMedia → offer → POST call/create {payload: JSON string of {sdp, type}}
//   callee: v1OnNewCall → accept → answer → POST call/accept {payload: JSON string of {answer: {sdp, type}}}
//   caller: v1OnCallAccepted.peerAnswer → setRemoteDescription
//   both:   every ICE candidate through v1IceCandidate {meetId, data}
// `sdp` goes out as the stock apps send it, a parsed SDP object (GenA in sdp.js), and is read
// either as such an object or as SDP text.
// The call view's state is on #call: data-state (idle|outgoing|incoming|connecting|connected|
// ended), data-meet (meetId), data-reason (how the last call ended); #call-stats shows getStats.
"use strict";

function Calls(ctx) {
  const $ = (sel) => document.querySelector(sel);
  const view = $("#call");
  let cur = null; // the call in progress
  let ticker = 0;

  const ENDED = {
    finished: { caller: "Call ended", callee: "Call ended" },
    canceled: { caller: "Call canceled", callee: "The caller hung up" },
    rejected: { caller: "Declined", callee: "Call declined" },
    timeout: { caller: "No answer", callee: "Missed call" },
    failed: { caller: "Call failed", callee: "Call failed" },
  };

  function show(state, text) {
    view.hidden = false;
    view.dataset.state = state;
    if (cur) {
      view.dataset.meet = cur.meetId || "";
      view.dataset.video = String(cur.withVideo);
      $("#call-peer").textContent = cur.peerName;
    }
    $("#call-status").textContent = text;
    document.title = state === "incoming" ? "📞 Incoming call" : "vchat-signal";
  }

  function plainMediaError(e) {
    if (!navigator.mediaDevices) {
      return "This browser allows the camera and microphone only on https:// pages or on localhost. Open the page over HTTPS (see the README's LAN notes).";
    }
    if (e.name === "NotAllowedError") return "Permission to use the microphone/camera was denied.";
    if (e.name === "NotFoundError") return "No microphone or camera was found.";
    if (e.name === "NotReadableError") return "The microphone or camera is busy in another program.";
    return e.message || String(e);
  }

  /** Microphone (and camera); a missing camera falls back to audio only. */
  async function getMedia(video) {
    if (!navigator.mediaDevices) throw new Error(plainMediaError({}));
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (e) {
      if (!video) throw new Error(plainMediaError(e));
      ctx.notify("No camera (" + plainMediaError(e) + "); calling with audio only.", "info");
      try {
        return await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      } catch (e2) {
        throw new Error(plainMediaError(e2));
      }
    }
  }

  async function makePeer(c) {
    const { iceServers } = await ctx.api("GET", "call/ice-servers");
    const pc = new RTCPeerConnection({
      iceServers: iceServers || [],
      iceTransportPolicy: c.relay ? "relay" : "all",
    });
    c.pc = pc;
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return; // end of candidates: nothing to send
      const data = {
        candidate: e.candidate.candidate,
        sdpMid: e.candidate.sdpMid,
        sdpMLineIndex: e.candidate.sdpMLineIndex,
      };
      if (c.meetId) sendCandidate(c, data);
      else c.outbox.push(data); // the caller has no meetId until call/create answers
    };
    pc.ontrack = (e) => {
      const v = $("#remote-video");
      if (v.srcObject !== e.streams[0]) v.srcObject = e.streams[0] || new MediaStream([e.track]);
      v.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (cur !== c) return;
      view.dataset.pc = pc.connectionState;
      if (pc.connectionState === "connected") {
        c.since = c.since || Date.now();
        show("connected", "In call");
      } else if (pc.connectionState === "disconnected") {
        show("connecting", "Connection interrupted; reconnecting…");
      } else if (pc.connectionState === "failed") {
        hangup("failed", "The media connection failed: no network path between you (a TURN server reachable by both may be needed).");
      }
    };
    c.stream.getTracks().forEach((t) => pc.addTrack(t, c.stream));
    $("#local-video").srcObject = c.stream;
    stats(c);
    return pc;
  }

  function sendCandidate(c, data) {
    c.sent++;
    ctx.emit("v1IceCandidate", { meetId: c.meetId, data });
  }

  async function addRemoteCandidates(c) {
    while (c.inbox.length && c.pc && c.pc.remoteDescription) {
      const data = c.inbox.shift();
      try {
        await c.pc.addIceCandidate(data);
      } catch (e) {
        console.warn("candidate refused", data, e);
      }
    }
  }

  /** JSON-string payloads (Gen-A) or plain objects (Gen-B style) both read. */
  function parse(payload) {
    return typeof payload === "string" ? JSON.parse(payload) : payload;
  }

  function newCall(fields) {
    view.dataset.reason = ""; // how the last call ended no longer applies
    return { meetId: "", outbox: [], inbox: [], sent: 0, received: 0, relay: ctx.relayOnly(), ...fields };
  }

  // ---------- caller ----------

  async function start(roomId, withVideo) {
    if (cur) return ctx.notify("You are already in a call.");
    const room = ctx.room(roomId);
    if (!room) return;
    const c = (cur = newCall({ role: "caller", roomId, withVideo, peerName: room.t }));
    show("outgoing", `Calling ${room.t}…`);
    try {
      c.stream = await getMedia(withVideo);
      if (cur !== c) return release(c);
      const pc = await makePeer(c);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (cur !== c) return release(c);
      const d = await ctx.api("POST", "call/create/" + roomId, {
        payload: JSON.stringify(GenA.wire(offer)),
        withVideo,
      });
      c.meetId = d.meetId;
      if (cur !== c) {
        // canceled while the request was on its way
        ctx.api("POST", "call/cancel/" + c.meetId).catch(() => {});
        return;
      }
      view.dataset.meet = c.meetId;
      c.outbox.splice(0).forEach((data) => sendCandidate(c, data));
      show("outgoing", `Ringing ${room.t}…`);
    } catch (e) {
      if (cur === c) finish("failed", "Could not start the call: " + e.message);
      else release(c);
    }
  }

  async function onAccepted(d) {
    const c = cur;
    if (!c || c.role !== "caller" || d.meetId !== c.meetId) return;
    show("connecting", "Connecting…");
    try {
      const p = parse(d.peerAnswer);
      await c.pc.setRemoteDescription(GenA.description(p && p.answer, "answer"));
      await addRemoteCandidates(c);
    } catch (e) {
      hangup("failed", "The other side's answer could not be used: " + e.message);
    }
  }

  // ---------- callee ----------

  function onNewCall(d) {
    if (cur) return; // busy here; the server rings our other devices too
    cur = newCall({
      role: "callee",
      meetId: d.meetId,
      roomId: d.roomId,
      withVideo: !!d.withVideo,
      offer: d.payload,
      peerName: (d.userData && d.userData.fullName) || "Someone",
    });
    show("incoming", `${cur.peerName} is calling you (${cur.withVideo ? "video" : "audio"})`);
    if (navigator.vibrate) navigator.vibrate([400, 200, 400]);
  }

  async function accept() {
    const c = cur;
    if (!c || c.role !== "callee" || view.dataset.state !== "incoming") return;
    show("connecting", "Connecting…");
    try {
      let offer;
      try {
        offer = GenA.description(parse(c.offer), "offer");
      } catch (e) {
        throw new Error("the caller's app sent its offer in a form this page cannot read (" + e.message + ")");
      }
      c.stream = await getMedia(c.withVideo);
      if (cur !== c) return release(c);
      const pc = await makePeer(c);
      await pc.setRemoteDescription(offer);
      await addRemoteCandidates(c);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (cur !== c) return release(c);
      await ctx.api("POST", "call/accept/" + c.meetId, {
        payload: JSON.stringify({ answer: GenA.wire(answer) }),
      });
    } catch (e) {
      if (cur !== c) return release(c);
      hangup("failed", "Could not answer: " + e.message);
    }
  }

  async function reject() {
    const c = cur;
    if (!c || c.role !== "callee") return;
    finish("rejected");
    ctx.api("POST", "call/reject/" + c.meetId).catch((e) => ctx.notify(e.message));
  }

  // ---------- both ----------

  function onCandidate(d) {
    const c = cur;
    if (!c || !d.data || (d.meetId && d.meetId !== c.meetId)) return;
    c.received++;
    c.inbox.push(d.data);
    addRemoteCandidates(c);
  }

  /** Our side ends the call: cancel while ringing out, end otherwise (end/v2 also rejects). */
  function hangup(reason, text) {
    const c = cur;
    if (!c) return;
    const ringing = c.role === "caller" && !c.answered && view.dataset.state === "outgoing";
    finish(reason || (ringing ? "canceled" : "finished"), text);
    if (!c.meetId) return; // call/create has not answered yet; start() cancels when it does
    const route = ringing ? "call/cancel/" : "call/end/v2/";
    ctx.api("POST", route + c.meetId).catch(() => ctx.api("POST", "call/end/v2/" + c.meetId).catch(() => {}));
  }

  /** The server says the call is over. */
  function onOver(reason) {
    return (d) => {
      if (cur && d.meetId === cur.meetId) finish(reason);
    };
  }

  function finish(reason, text) {
    const c = cur;
    if (!c) return;
    cur = null;
    release(c);
    view.dataset.reason = reason;
    view.dataset.meet = c.meetId || "";
    const said = (ENDED[reason] || ENDED.finished)[c.role];
    const talk = c.since ? " · " + duration(Date.now() - c.since) : "";
    show("ended", (text || said) + talk);
    if (text) ctx.notify(text);
    ctx.onEnded();
    clearTimeout(finish.t);
    finish.t = setTimeout(close, 6000);
  }

  function release(c) {
    if (c.pc) c.pc.close();
    if (c.stream) c.stream.getTracks().forEach((t) => t.stop());
    clearInterval(c.statsTimer);
    $("#local-video").srcObject = null;
    $("#remote-video").srcObject = null;
    setPressed("#btn-mute", false, "Mute", "Unmute");
    setPressed("#btn-camera", false, "Camera off", "Camera on");
  }

  function close() {
    if (cur) return;
    view.dataset.state = "idle";
    view.hidden = true;
    document.title = "vchat-signal";
  }

  function toggle(kind, btn, off, on) {
    if (!cur || !cur.stream) return;
    const tracks = kind === "audio" ? cur.stream.getAudioTracks() : cur.stream.getVideoTracks();
    const mute = $(btn).getAttribute("aria-pressed") !== "true";
    tracks.forEach((t) => (t.enabled = !mute));
    setPressed(btn, mute, off, on);
  }

  function setPressed(btn, pressed, off, on) {
    $(btn).setAttribute("aria-pressed", String(pressed));
    $(btn).textContent = pressed ? on : off;
  }

  /** Once a second: bytes received and the route the media takes, from getStats. */
  function stats(c) {
    const out = $("#call-stats");
    out.dataset.inBytes = "0";
    out.dataset.pair = "";
    out.textContent = "";
    c.statsTimer = setInterval(async () => {
      if (!c.pc || c.pc.connectionState === "closed") return;
      const report = await c.pc.getStats();
      let bytes = 0;
      let pair = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp") bytes += s.bytesReceived || 0;
        if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
      });
      if (cur !== c) return;
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      const route = local && remote ? `${local.candidateType}/${remote.candidateType}` : "";
      out.dataset.inBytes = String(bytes);
      out.dataset.pair = route;
      out.dataset.candidatesSent = String(c.sent);
      out.dataset.candidatesReceived = String(c.received);
      const how = !route ? "finding a route…" : /relay/.test(route) ? "relayed through TURN" : "direct";
      const talk = c.since ? duration(Date.now() - c.since) + " · " : "";
      out.textContent = `${talk}${how} · received ${(bytes / 1024).toFixed(0)} KB`;
    }, 1000);
  }

  /** A call ringing for us that we have no event for (page opened or reconnected meanwhile). */
  async function checkActive() {
    try {
      const d = await ctx.api("GET", "call/active");
      if (d && d.meetId && !cur) onNewCall(d);
    } catch {
      /* not worth a notice */
    }
  }

  function listen(on) {
    on("v1OnNewCall", onNewCall);
    on("v1OnCallAccepted", (d) => {
      if (cur && d.meetId === cur.meetId) cur.answered = true;
      onAccepted(d);
    });
    on("v1OnIceCandidate", onCandidate);
    on("v1OnCallRejected", onOver("rejected"));
    on("v1OnCallCanceled", onOver("canceled"));
    on("v1OnCallTimeout", onOver("timeout"));
    on("v1OnCallEnded", onOver("finished"));
  }

  $("#btn-accept").onclick = accept;
  $("#btn-reject").onclick = reject;
  $("#btn-hangup").onclick = () => hangup();
  $("#btn-close").onclick = close;
  $("#btn-mute").onclick = () => toggle("audio", "#btn-mute", "Mute", "Unmute");
  $("#btn-camera").onclick = () => toggle("video", "#btn-camera", "Camera off", "Camera on");
  // Leaving the page mid-call: tell the server now rather than after its reconnect grace.
  window.addEventListener("pagehide", () => {
    if (!cur || !cur.meetId) return;
    fetch("/api/v2/call/end/v2/" + cur.meetId, {
      method: "POST",
      keepalive: true,
      headers: { authorization: "Bearer " + ctx.token() },
    });
  });

  return { start, hangup: () => hangup(), checkActive, listen };
}
