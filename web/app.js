// vchat-signal web client: sign-in, rooms, presence, chat and call history. It speaks the V Chat
// protocol as a stock client does: REST under /api/v2 with `{code, data}` answers, Socket.IO
// events whose payload is one JSON string. Calls (WebRTC) live in call.js.
"use strict";

const $ = (sel) => document.querySelector(sel);
const html = document.documentElement;
const DEV = html.dataset.dev === "true";
const SIGNIN = html.dataset.signin === "true";
const SESSION_KEY = "vchat.session";

const S = {
  token: "",
  me: null, // {_id, identifier, fullName}
  socket: null,
  connectedOnce: false,
  rooms: new Map(), // roomId → room (from GET channel/)
  roomId: "", // the open room
  msgs: new Map(), // lId → message, open room only
  oldest: "", // _id of the oldest loaded message, for paging
  typingSent: false,
  typingStop: 0,
  peerTypingHide: 0,
  pollTimer: 0,
};

// ---------- errors in plain words ----------

function notify(text, kind = "error") {
  $("#notice-text").textContent = text;
  $("#notice").dataset.kind = kind;
  $("#notice").hidden = false;
  clearTimeout(notify.t);
  notify.t = setTimeout(() => ($("#notice").hidden = true), kind === "error" ? 10000 : 5000);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const PLAIN = {
  0: "Cannot reach the server. Check the connection and that the server is running.",
  403: "Not allowed",
  404: "Not found",
  413: "That is too large for the server",
  429: "Too many attempts; wait a little and try again",
};

/** One REST call. Resolves to `data`; rejects with an ApiError carrying the server's words. */
async function api(method, path, body, { auth = true } = {}) {
  const headers = {};
  if (auth) headers.authorization = "Bearer " + S.token;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch("/api/v2/" + path, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, PLAIN[0]);
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    /* a proxy's HTML page, say */
  }
  if (res.ok) return json ? json.data : null;
  const said = json && typeof json.data === "string" ? json.data : "";
  if (res.status === 450 && auth) {
    signOut("Your session is no longer valid" + (said ? ` (${said})` : "") + ". Please sign in again.");
  }
  throw new ApiError(res.status, said || PLAIN[res.status] || `The server answered ${res.status}`);
}

/** Runs an async action, showing any failure as a notice. */
const guard = (fn) => (...args) =>
  Promise.resolve(fn(...args)).catch((e) => notify(e.message || String(e)));

// ---------- Socket.IO: one JSON string per event, both ways ----------

function emit(event, obj) {
  if (S.socket) S.socket.emit(event, JSON.stringify(obj));
}

function on(event, fn) {
  S.socket.on(event, (raw) => {
    let data = raw;
    try {
      if (typeof raw === "string") data = JSON.parse(raw);
    } catch {
      return;
    }
    try {
      fn(data);
    } catch (e) {
      console.error(event, e);
    }
  });
}

function connectSocket() {
  const socket = io(location.origin, {
    transports: ["websocket"],
    query: { auth: "Bearer " + S.token },
    reconnectionDelay: 2000,
    timeout: 5000,
  });
  S.socket = socket;
  const conn = $("#conn");
  socket.on("connect", () => {
    conn.dataset.state = "connected";
    conn.title = "Connected";
    if (S.connectedOnce) {
      // Events missed while away are not replayed: catch up through REST, as the SDK does.
      loadRooms().catch(() => {});
      calls.checkActive();
    }
    S.connectedOnce = true;
    pollOnline();
  });
  socket.on("disconnect", () => {
    conn.dataset.state = "disconnected";
    conn.title = "Disconnected; retrying";
  });
  socket.on("connect_error", (err) => {
    const was = conn.dataset.state;
    conn.dataset.state = "error";
    const why = (err && err.message) || "unknown error";
    if (/unauthori[sz]ed/i.test(why)) return signOut("The server refused your token (" + why + "). Please sign in again.");
    if (was !== "error") notify("Cannot connect to the server (" + why + "); retrying.");
  });
  on("v1OnException", (d) => notify("The server refused that: " + (d.error || JSON.stringify(d))));
  on("v1OnMyOnline", onOnline);
  on("v1OnNewMessage", onNewMessage);
  on("v1OnDeleteMessageFromAll", onMessageDeleted);
  on("v1OnRoomStatusChange", onRoomStatus);
  on("v1OnDeliverChatRoom", (d) => onTicks(d, false));
  on("v1OnEnterChatRoom", (d) => onTicks(d, true));
  calls.listen(on);
}

// ---------- sign-in ----------

function b64urlJson(part) {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

function deviceId() {
  let id = localStorage.getItem("vchat.device");
  if (!id) localStorage.setItem("vchat.device", (id = "web-" + uuid()));
  return id;
}

async function signInDev(e) {
  e.preventDefault();
  const name = $("#dev-name").value.trim();
  const d = await api("POST", "dev/token", { name }, { auth: false });
  startSession(d.accessToken, d.user);
}

async function signInConnect(e) {
  e.preventDefault();
  const identifier = $("#cn-identifier").value.trim();
  const form = new FormData();
  form.append("identifier", identifier);
  form.append("fullName", $("#cn-name").value.trim());
  form.append("deviceId", deviceId());
  form.append("password", await sha512hex($("#cn-key").value + "_" + identifier));
  form.append("platform", "web");
  try {
    const d = await api("POST", "auth/connect", form, { auth: false });
    startSession(d.accessToken, d.user);
  } catch (err) {
    if (err.status === 403) err.message = "Sign-in refused: " + err.message;
    throw err;
  }
}

async function signInToken(e) {
  e.preventDefault();
  const token = $("#token-input").value.trim().replace(/^Bearer\s+/i, "");
  let claims;
  try {
    claims = b64urlJson(token.split(".")[1]);
  } catch {
    throw new Error("That does not look like a token (a JWT has three parts separated by dots).");
  }
  S.token = token;
  try {
    await api("GET", "channel/?limit=1&page=1"); // is the token good?
  } catch (err) {
    throw new Error(err.status === 450 ? "The server refused this token: " + err.message : err.message);
  }
  startSession(token, {
    _id: claims.sub,
    identifier: claims.identifier || claims.sub,
    fullName: claims.name || claims.sub,
  });
}

function startSession(token, user) {
  S.token = token;
  S.me = { _id: user._id, identifier: user.identifier, fullName: user.fullName };
  localStorage.setItem(SESSION_KEY, JSON.stringify({ token, user: S.me }));
  document.body.dataset.view = "app";
  $("#me-name").textContent = S.me.fullName + (S.me.fullName !== S.me.identifier ? ` (${S.me.identifier})` : "");
  connectSocket();
  loadRooms().catch((e) => notify(e.message));
  loadHistory();
  calls.checkActive();
  clearInterval(S.pollTimer);
  S.pollTimer = setInterval(pollOnline, 10000); // the SDK polls presence every 10 s
}

function signOut(reason) {
  localStorage.removeItem(SESSION_KEY);
  calls.hangup();
  clearInterval(S.pollTimer);
  if (S.socket) S.socket.disconnect();
  Object.assign(S, { token: "", me: null, socket: null, connectedOnce: false, roomId: "" });
  S.rooms.clear();
  S.msgs.clear();
  $("#rooms").replaceChildren();
  $("#history").replaceChildren();
  showRoom("");
  document.body.dataset.view = "signin";
  if (reason) notify(reason);
}

// ---------- rooms and presence ----------

async function loadRooms() {
  const d = await api("GET", "channel/?limit=20&page=1");
  const online = new Map([...S.rooms].map(([id, r]) => [id, r.online]));
  S.rooms.clear();
  for (const r of d.docs || []) S.rooms.set(r.rId, { ...r, online: online.get(r.rId) || false });
  renderRooms();
  pollOnline();
}

function renderRooms() {
  const sorted = [...S.rooms.values()].sort((a, b) => when(b).localeCompare(when(a)));
  $("#rooms").replaceChildren(...sorted.map(roomItem));
  if (S.roomId && S.rooms.has(S.roomId)) renderChatHead();
  function when(r) {
    return (r.lastMessage && r.lastMessage.createdAt) || r.createdAt || "";
  }
}

function roomItem(r) {
  const li = el("li", "room");
  li.dataset.roomId = r.rId;
  li.dataset.peer = r.pIdentifier || "";
  li.dataset.online = String(!!r.online);
  li.setAttribute("aria-current", String(r.rId === S.roomId));
  const last = r.lastMessage ? preview(r.lastMessage) : "No messages yet";
  li.append(el("span", "dot"), el("span", "grow", r.t), el("span", "preview muted small", last));
  if (r.uC > 0) li.append(el("span", "badge", String(r.uC)));
  li.onclick = () => openRoom(r.rId);
  return li;
}

function pollOnline() {
  if (!S.socket || !S.socket.connected) return;
  const peers = [...S.rooms.values()]
    .filter((r) => (r.rT === "s" || r.rT === "o") && r.pId)
    .map((r) => ({ peerId: r.pId, extra: r.rId }));
  if (peers.length) emit("v1MyOnline", peers);
}

function onOnline(list) {
  for (const { isOnline, extra } of list) {
    const r = S.rooms.get(extra);
    if (r) r.online = !!isOnline;
  }
  renderRooms();
}

const openByIdentifier = guard(async (e) => {
  e.preventDefault();
  const id = $("#open-identifier").value.trim();
  if (id === S.me.identifier) throw new Error("That is you. Enter someone else's identifier.");
  const room = await api("POST", "channel/peer-room/" + encodeURIComponent(id));
  $("#open-identifier").value = "";
  S.rooms.set(room.rId, { ...room, online: (S.rooms.get(room.rId) || {}).online || false });
  renderRooms();
  pollOnline();
  openRoom(room.rId);
});

// ---------- chat ----------

function showRoom(roomId) {
  S.roomId = roomId;
  $("#chat").dataset.room = roomId;
  document.body.dataset.room = roomId ? "open" : "";
  $("#typing").dataset.typing = "0";
  $("#typing").textContent = "";
}

const openRoom = guard(async (roomId) => {
  stopTyping();
  showRoom(roomId);
  S.msgs.clear();
  $("#messages").replaceChildren();
  const room = S.rooms.get(roomId);
  if (room) room.uC = 0;
  renderRooms();
  const d = await api("GET", `channel/${roomId}/message/?limit=30`);
  if (S.roomId !== roomId) return;
  for (const m of (d.docs || []).reverse()) upsertMessage(m);
  S.oldest = d.docs && d.docs.length ? d.docs[0]._id : "";
  $("#btn-older").hidden = !d.hasNextPage;
  markSeen();
  $("#msg-input").focus();
});

const loadOlder = guard(async () => {
  const roomId = S.roomId;
  const d = await api("GET", `channel/${roomId}/message/?limit=30&lastId=${S.oldest}`);
  if (S.roomId !== roomId) return;
  const list = $("#messages");
  for (const m of d.docs || []) {
    // newest first: each one goes above the ones already shown
    S.msgs.set(m.lId, m);
    list.insertBefore(messageItem(m), list.firstChild);
  }
  if (d.docs && d.docs.length) S.oldest = d.docs[d.docs.length - 1]._id;
  $("#btn-older").hidden = !d.hasNextPage;
});

function renderChatHead() {
  const r = S.rooms.get(S.roomId);
  if (!r) return;
  $("#chat-title").textContent = r.t;
  $("#chat-dot").dataset.online = String(!!r.online);
  $("#chat-dot").title = r.online ? "online" : "offline";
}

/** Tell the peer that we saw their messages (the room is open and the page is visible). */
function markSeen() {
  if (S.roomId && document.visibilityState === "visible") emit("v1EnterChatRoom", { roomId: S.roomId });
}

function upsertMessage(m) {
  S.msgs.set(m.lId, m);
  const old = $(`#messages li[data-lid="${CSS.escape(m.lId)}"]`);
  const li = messageItem(m);
  if (old) old.replaceWith(li);
  else {
    const list = $("#messages");
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
    list.append(li);
    if (stick || m.sId === S.me._id) list.scrollTop = list.scrollHeight;
  }
}

function tickOf(m) {
  if (m.failed) return "failed";
  if (!m._id) return "pending";
  if (m.sAt) return "seen";
  if (m.dAt) return "delivered";
  return "sent";
}

const TICKS = { pending: "…", failed: "⚠ not sent", sent: "✓", delivered: "✓✓", seen: "✓✓" };

function messageItem(m) {
  const mine = m.sId === S.me._id;
  const li = el("li", "msg" + (mine ? " mine" : ""));
  li.dataset.lid = m.lId;
  li.dataset.id = m._id || "";
  li.dataset.deleted = String(!!m.dltAt);
  li.append(el("div", "body", m.dltAt ? "This message was deleted" : preview(m)));
  const meta = el("div", "meta small");
  meta.append(el("span", "muted", time(m.createdAt)));
  if (mine) {
    li.dataset.tick = tickOf(m);
    meta.append(el("span", "tick", TICKS[tickOf(m)]));
    if (m._id && !m.dltAt && m.mT === "text") {
      const del = el("button", "link del", "Delete");
      del.title = "Delete for everyone";
      del.onclick = guard(() => api("DELETE", `channel/${m.rId}/message/${m._id}/delete/all`));
      meta.append(del);
    }
  }
  li.append(meta);
  return li;
}

const CALL_WORDS = {
  ring: "ringing",
  inCall: "in progress",
  finished: "ended",
  canceled: "canceled",
  rejected: "declined",
  timeout: "missed",
  sessionEnd: "ended",
};

function preview(m) {
  if (m.dltAt) return "Deleted message";
  if (m.mT === "call" && m.msgAtt) {
    const a = m.msgAtt;
    const kind = a.withVideo ? "Video call" : "Audio call";
    const dur = a.endAt && a.startAt ? " " + duration(Date.parse(a.endAt) - Date.parse(a.startAt)) : "";
    return `${kind} ${CALL_WORDS[a.callStatus] || a.callStatus}${dur}`;
  }
  if (m.mT !== "text") return `[${m.mT}] ${m.c || ""}`;
  return m.c;
}

const send = guard(async (e) => {
  e.preventDefault();
  const input = $("#msg-input");
  const text = input.value.trim();
  if (!text || !S.roomId) return;
  input.value = "";
  stopTyping();
  const m = {
    lId: uuid(), c: text, mT: "text", sId: S.me._id, rId: S.roomId, createdAt: new Date().toISOString(),
  };
  upsertMessage(m);
  try {
    const saved = await api("POST", `channel/${m.rId}/message/`, { content: text, localId: m.lId, messageType: "text" });
    const now = S.msgs.get(m.lId);
    // The v1OnNewMessage echo may have come first, possibly with ticks already: keep the newest.
    if (m.rId === S.roomId && (!now || !now._id)) upsertMessage(saved);
  } catch (err) {
    if (m.rId === S.roomId) upsertMessage({ ...m, failed: true });
    throw err;
  }
});

function onNewMessage(m) {
  const room = S.rooms.get(m.rId);
  const mine = m.sId === S.me._id;
  if (!room) loadRooms().catch(() => {});
  else {
    room.lastMessage = m;
    if (!mine && m.rId !== S.roomId) room.uC = (room.uC || 0) + 1;
    renderRooms();
  }
  if (!mine) emit("v1DeliverChatRoom", { roomId: m.rId });
  if (m.rId === S.roomId) {
    const have = S.msgs.get(m.lId);
    if (!have || !have._id || have.updatedAt <= m.updatedAt) upsertMessage(m);
    if (!mine) {
      markSeen();
      showTyping(null); // they sent it, so they stopped typing
    }
  }
  if (m.mT === "call") loadHistory();
}

function onMessageDeleted(m) {
  const room = S.rooms.get(m.rId);
  if (room && room.lastMessage && room.lastMessage.lId === m.lId) {
    room.lastMessage = m;
    renderRooms();
  }
  if (m.rId === S.roomId) upsertMessage(m);
}

/** Delivered/seen receipts: `userId` is the sender whose messages changed, i.e. us. */
function onTicks({ roomId, userId, date }, seen) {
  if (userId !== S.me._id || roomId !== S.roomId) return;
  for (const m of S.msgs.values()) {
    if (m.sId !== S.me._id || !m._id) continue;
    const next = { ...m, dAt: m.dAt || date, sAt: seen ? m.sAt || date : m.sAt };
    if (next.dAt !== m.dAt || next.sAt !== m.sAt) upsertMessage(next);
  }
}

// typing: `typing` once when typing starts, `stop` 3 s after the last key or on send
function onInput() {
  if (!S.roomId) return;
  if (!S.typingSent) {
    emit("v1RoomStatusChange", { roomId: S.roomId, status: "typing" });
    S.typingSent = true;
  }
  clearTimeout(S.typingStop);
  S.typingStop = setTimeout(stopTyping, 3000);
}

function stopTyping() {
  clearTimeout(S.typingStop);
  if (S.typingSent && S.roomId) emit("v1RoomStatusChange", { roomId: S.roomId, status: "stop" });
  S.typingSent = false;
}

function onRoomStatus({ roomId, status, name, userId }) {
  if (userId === S.me._id || roomId !== S.roomId) return;
  showTyping(status === "stop" ? null : `${name} is ${status === "recording" ? "recording" : "typing"}…`);
}

function showTyping(text) {
  const t = $("#typing");
  t.textContent = text || "";
  t.dataset.typing = text ? "1" : "0";
  clearTimeout(S.peerTypingHide);
  if (text) S.peerTypingHide = setTimeout(() => showTyping(null), 10000); // a lost `stop`
}

// ---------- call history ----------

async function loadHistory() {
  let list;
  try {
    list = await api("GET", "call/history");
  } catch {
    return;
  }
  $("#history").replaceChildren(
    ...(list || []).map((h) => {
      const li = el("li", "hist");
      li.dataset.id = h._id;
      li.dataset.status = h.callStatus;
      const who = (h.peerUser && h.peerUser.fullName) || "?";
      const dur = h.endAt && h.callStatus === "finished" ? " · " + duration(Date.parse(h.endAt) - Date.parse(h.createdAt)) : "";
      li.append(
        el("span", "kind", h.withVideo ? "Video" : "Audio"),
        el("span", "grow", who),
        el("span", "muted small", `${CALL_WORDS[h.callStatus] || h.callStatus}${dur} · ${time(h.createdAt, true)}`),
      );
      if (h.peerUser && h.peerUser.identifier) {
        li.title = "Open the chat with " + who;
        li.onclick = () => {
          $("#open-identifier").value = h.peerUser.identifier;
          $("#form-open").requestSubmit();
          showTab("rooms");
        };
      }
      return li;
    }),
  );
}

function showTab(which) {
  $("#rooms").hidden = which !== "rooms";
  $("#history").hidden = which !== "history";
  $("#tab-rooms").setAttribute("aria-selected", String(which === "rooms"));
  $("#tab-history").setAttribute("aria-selected", String(which === "history"));
  if (which === "history") loadHistory();
}

// ---------- wiring ----------

const calls = Calls({
  api,
  emit,
  notify,
  me: () => S.me,
  token: () => S.token,
  room: (id) => S.rooms.get(id),
  relayOnly: () => $("#opt-relay").checked,
  onEnded: () => loadHistory(),
});

function init() {
  document.body.classList.toggle("dev", DEV);
  document.body.classList.toggle("signin", SIGNIN);
  $("#notice-close").onclick = () => ($("#notice").hidden = true);
  $("#form-dev").onsubmit = guard(signInDev);
  $("#form-connect").onsubmit = guard(signInConnect);
  $("#form-token").onsubmit = guard(signInToken);
  $("#btn-signout").onclick = async () => {
    await api("POST", "auth/logout").catch(() => {}); // the token stops working
    signOut();
  };
  $("#form-open").onsubmit = openByIdentifier;
  $("#tab-rooms").onclick = () => showTab("rooms");
  $("#tab-history").onclick = () => showTab("history");
  $("#btn-back").onclick = () => {
    stopTyping();
    showRoom("");
    renderRooms();
  };
  $("#btn-older").onclick = loadOlder;
  $("#form-send").onsubmit = send;
  $("#msg-input").oninput = onInput;
  $("#btn-call-audio").onclick = () => calls.start(S.roomId, false);
  $("#btn-call-video").onclick = () => calls.start(S.roomId, true);
  document.addEventListener("visibilitychange", markSeen);
  $("#opt-relay").checked = new URLSearchParams(location.search).has("relay");

  const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  if (saved && saved.token && saved.user) startSession(saved.token, saved.user);
  else document.body.dataset.view = "signin";
}

init();
