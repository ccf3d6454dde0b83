// Real Socket.IO v4 clients (npm `socket.io-client`) for the randomised driver in
// `tests/randomized.rs`, over stdin/stdout, one JSON object per line. Unlike `sio-driver.mjs` it
// also sends binary arguments, raw (possibly malformed) Socket.IO packets and abrupt transport
// drops, and it never treats an unknown socket as fatal (the Rust side may race a server close).
//
// in:  {"op":"connect","id":"s1","url":"http://127.0.0.1:1234","headers":{...},"query":{...},"auth":{...}}
//      {"op":"emit","id":"s1","event":"v1MyOnline","args":["[...]", {"$binary":"AAEC"}]}
//      {"op":"raw","id":"s1","data":"2[\"v1MyOnline\""}      (an Engine.IO message, as is)
//      {"op":"close","id":"s1"}                              (a clean Socket.IO disconnect)
//      {"op":"drop","id":"s1"}                               (the transport just goes away)
//      {"op":"flash","id":"f1","url":...,"headers":{...}}    (connect, and close the moment it is)
// out: {"id":"s1","type":"connect","sid":"..."} | {"id":"s1","type":"connect_error","message":"..."}
//      {"id":"s1","type":"event","event":"v1OnMyOnline","args":["..."]}   (binary as {"$binary": base64})
//      {"id":"s1","type":"disconnect","reason":"..."} | {"id":"s1","type":"closed"}
//      {"id":"f1","type":"flashed","connected":true|false}

import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const io = require("socket.io-client");

const sockets = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const toWire = (a) =>
  a && typeof a === "object" && !Array.isArray(a) && typeof a.$binary === "string"
    ? Buffer.from(a.$binary, "base64")
    : a;
const fromWire = (a) => {
  if (Buffer.isBuffer(a) || a instanceof ArrayBuffer || ArrayBuffer.isView(a)) {
    return { $binary: Buffer.from(a).toString("base64") };
  }
  return a;
};

function connect(cmd) {
  const { id, url } = cmd;
  const socket = io(url, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    extraHeaders: cmd.headers ?? {},
    query: cmd.query ?? {},
    auth: cmd.auth ?? {},
  });
  sockets.set(id, socket);
  socket.on("connect", () => out({ id, type: "connect", sid: socket.id }));
  socket.on("connect_error", (err) =>
    out({ id, type: "connect_error", message: String(err && err.message ? err.message : err) }),
  );
  socket.on("disconnect", (reason) => out({ id, type: "disconnect", reason: String(reason) }));
  socket.onAny((event, ...args) => out({ id, type: "event", event, args: args.map(fromWire) }));
}

// A client that leaves the instant it is let in (an app killed right after connecting).
function flash(cmd) {
  const { id, url } = cmd;
  const socket = io(url, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    extraHeaders: cmd.headers ?? {},
  });
  socket.on("connect", () => {
    socket.close();
    out({ id, type: "flashed", connected: true });
  });
  socket.on("connect_error", () => out({ id, type: "flashed", connected: false }));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ type: "fatal", message: "bad command: " + line });
    return;
  }
  const socket = sockets.get(cmd.id);
  try {
    switch (cmd.op) {
      case "connect":
        connect(cmd);
        break;
      case "flash":
        flash(cmd);
        break;
      case "emit":
        if (socket && socket.connected) socket.emit(cmd.event, ...(cmd.args ?? []).map(toWire));
        break;
      case "raw":
        if (socket && socket.connected && socket.io.engine) socket.io.engine.write(cmd.data);
        break;
      case "close":
        if (socket) {
          socket.close();
          sockets.delete(cmd.id);
        }
        out({ id: cmd.id, type: "closed" });
        break;
      case "drop":
        if (socket) {
          // No Socket.IO disconnect packet: the server sees the transport close.
          if (socket.io.engine) socket.io.engine.close();
          socket.close();
          sockets.delete(cmd.id);
        }
        out({ id: cmd.id, type: "closed" });
        break;
      default:
        out({ type: "fatal", message: "unknown op " + cmd.op });
    }
  } catch (e) {
    out({ id: cmd.id, type: "driver_error", message: String(e && e.stack ? e.stack : e) });
  }
});
rl.on("close", () => {
  for (const s of sockets.values()) s.close();
  process.exit(0);
});
