// A pool of real Socket.IO clients (the npm `socket.io-client`, v4, or v2 for Engine.IO 3),
// driven by the Rust integration tests over stdin/stdout, one JSON object per line.
//
// in:  {"op":"connect","id":"a","url":"http://127.0.0.1:1234","version":4,
//       "headers":{...},"query":{...},"auth":{...},"transports":["websocket"]}
//      {"op":"emit","id":"a","event":"v1MyOnline","args":["[...]"]}
//      {"op":"emit","id":"a","event":"v1IceCandidate","args":["..."],"repeat":1000}
//      {"op":"pause","id":"a"}   (stops reading the socket's TCP stream: a client that hangs)
//      {"op":"close","id":"a"}
// out: {"id":"a","type":"connect","sid":"<socket id>"} | {"id":"a","type":"connect_error","message":"..."}
//      {"id":"a","type":"event","event":"v1OnMyOnline","args":["..."]}
//      {"id":"a","type":"disconnect","reason":"..."} | {"id":"a","type":"paused"}
//      {"type":"fatal","message":"..."}

import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const io4 = require("socket.io-client");
const io2 = require("socket.io-client-v2");

const sockets = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function connect(cmd) {
  const { id, url, version = 4 } = cmd;
  const common = {
    transports: cmd.transports ?? ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    extraHeaders: cmd.headers ?? {},
    query: cmd.query ?? {},
  };
  let socket;
  if (version === 2) {
    socket = io2(url, { ...common, transportOptions: { websocket: { extraHeaders: common.extraHeaders } } });
  } else {
    socket = io4(url, { ...common, auth: cmd.auth ?? {} });
  }
  sockets.set(id, socket);
  socket.on("connect", () => out({ id, type: "connect", sid: socket.id }));
  socket.on("connect_error", (err) => out({ id, type: "connect_error", message: String(err && err.message ? err.message : err) }));
  // v2 reports a refused namespace connect as "error"
  socket.on("error", (err) => out({ id, type: "connect_error", message: String(err && err.message ? err.message : err) }));
  socket.on("disconnect", (reason) => out({ id, type: "disconnect", reason: String(reason) }));
  if (version === 2) {
    const onevent = socket.onevent;
    socket.onevent = function (packet) {
      const [event, ...args] = packet.data || [];
      out({ id, type: "event", event, args });
      return onevent.call(this, packet);
    };
  } else {
    socket.onAny((event, ...args) => out({ id, type: "event", event, args }));
  }
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
  switch (cmd.op) {
    case "connect":
      connect(cmd);
      break;
    case "emit":
      if (socket) {
        for (let i = 0; i < (cmd.repeat ?? 1); i++) socket.emit(cmd.event, ...(cmd.args ?? []));
      } else out({ id: cmd.id, type: "fatal", message: "no such socket" });
      break;
    case "pause": {
      // The `ws` WebSocket under engine.io-client's websocket transport, and its TCP socket.
      const tcp = socket?.io?.engine?.transport?.ws?._socket;
      if (tcp) {
        tcp.pause();
        out({ id: cmd.id, type: "paused" });
      } else out({ id: cmd.id, type: "fatal", message: "no websocket to pause" });
      break;
    }
    case "close":
      if (socket) {
        socket.close();
        sockets.delete(cmd.id);
      }
      out({ id: cmd.id, type: "closed" });
      break;
    default:
      out({ type: "fatal", message: "unknown op " + cmd.op });
  }
});
rl.on("close", () => {
  for (const s of sockets.values()) s.close();
  process.exit(0);
});
