// Real-browser end-to-end test of the built-in web client: two pages (two browser contexts, two
// users) in headless Chromium from Debian's packages, driven by playwright-core, calling and
// chatting through a freshly started `vchat-signal --dev`. Every wait is on page state (the
// `data-*` attributes the page keeps for this) or on what it sent and was sent, with a timeout.
//
//   node tests/browser/e2e.mjs [--bin target/release/vchat-signal] [--only name,name]
//
// Screenshots of the in-call pages (and of any failure) go to target/browser-artifacts/.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(ROOT, "target/browser-artifacts");
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const BIN = path.resolve(ROOT, arg("--bin", process.env.VCHAT_BIN || "target/release/vchat-signal"));
const ONLY = (arg("--only", "") || "").split(",").filter(Boolean);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const GEN_A_OFFER = fs.readFileSync(path.join(ROOT, "tests/browser/gen-a-offer.json"), "utf8").trim();
const RING_MS = 6000; // the server's ring timeout here: long enough to answer on a busy machine
const WAIT = 20000; // any single wait on page state

// ---------- the server ----------

async function startServer() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "vchat-browser-"));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("VCHAT_")));
  Object.assign(env, {
    VCHAT_LISTEN: "127.0.0.1:0",
    VCHAT_TURN_LISTEN: "127.0.0.1:0",
    VCHAT_DATA_DIR: dataDir,
    VCHAT_CALL_TIMEOUT_MS: String(RING_MS),
    // alice calls bob with a rejected, a canceled and a missed call back to back, faster than
    // people do; the server's cool-down after 3 unanswered calls in a row and its calls-per-minute
    // limit (tests/limits.rs covers both) would refuse the next ones.
    VCHAT_MAX_UNANSWERED_CALLS: "0",
    VCHAT_MAX_CALLS_PER_MINUTE: "0",
    VCHAT_LOG: "info",
  });
  const log = fs.createWriteStream(path.join(ARTIFACTS, "server.log"));
  const child = spawn(BIN, ["--dev"], { env, stdio: ["ignore", "pipe", "pipe"] });
  process.on("exit", () => child.exitCode === null && child.kill("SIGKILL")); // interrupted
  child.stderr.pipe(log);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start within 20 s")), 20000);
    child.once("exit", (code) => reject(new Error(`the server exited (${code}); see ${log.path}`)));
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      log.write(line + "\n");
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await gone;
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------- pages ----------

const ARGS = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--allow-loopback-in-peer-connection",
];

async function openUser(browser, url, name) {
  const context = await browser.newContext({
    viewport: { width: 1000, height: 680 },
    permissions: ["camera", "microphone"],
  });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const log = [];
  page.on("console", (m) => log.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
  page.on("response", (r) => r.status() >= 400 && log.push(`[http ${r.status()}] ${r.request().method()} ${r.url()}`));
  // what the page sends (call/create, call/accept bodies) and what the server relays to it
  // (v1OnNewCall, v1OnCallAccepted), to check the Gen-A wire form
  const sent = [];
  const relayed = [];
  page.on("request", (r) => {
    const m = /\/api\/v2\/call\/(create|accept)\//.exec(r.url());
    if (m && r.method() === "POST") sent.push({ route: m[1], url: r.url(), body: r.postDataJSON() });
  });
  page.on("websocket", (ws) =>
    ws.on("framereceived", (f) => {
      const m = typeof f.payload === "string" && /^42\d*(\[.*)$/s.exec(f.payload); // Socket.IO EVENT packet
      if (!m) return;
      try {
        const [event, arg] = JSON.parse(m[1]);
        // every payload is one JSON *string* (protocol.md §2)
        const data = typeof arg === "string" ? JSON.parse(arg) : arg;
        if (event === "v1OnNewCall" || event === "v1OnCallAccepted") relayed.push({ event, data });
      } catch {
        /* not JSON: not ours */
      }
    }),
  );
  await page.goto(url);
  await page.fill("#dev-name", name);
  await page.click("#form-dev button[type=submit]");
  await page.waitForSelector('#conn[data-state="connected"]');
  return { name, page, context, log, sent, relayed };
}

const attr = (u, sel, name) => u.page.getAttribute(sel, name);

/** The last call's "ended" view covers the page until it closes itself; a user clicks Close
 *  (it may close itself meanwhile, so a missed click is fine). */
async function closeCallView(u) {
  if ((await attr(u, "#call", "data-state")) === "ended") await u.page.click("#btn-close", { timeout: 3000 }).catch(() => {});
  await u.page.waitForSelector("#call", { state: "hidden" });
}

/** `u` has the chat with `peer` open (opened by identifier, as a user would). */
async function openChat(u, peer) {
  if ((await u.page.getAttribute("body", "data-room")) === "open" && (await u.page.textContent("#chat-title")) === peer.name) return;
  await u.page.fill("#open-identifier", peer.name);
  await u.page.click("#form-open button");
  await u.page.waitForSelector(`#chat-title:text-is("${peer.name}")`);
}

/** A clicks the call button and the call has a meetId; returns it. */
async function placeCall(a, b, video) {
  await closeCallView(a);
  await openChat(a, b);
  const before = (await attr(a, "#call", "data-meet")) || "";
  await a.page.click(video ? "#btn-call-video" : "#btn-call-audio");
  const handle = await a.page.waitForFunction(
    (old) => {
      const c = document.querySelector("#call");
      return c.dataset.state === "outgoing" && c.dataset.meet && c.dataset.meet !== old && c.dataset.meet;
    },
    before,
  );
  return handle.jsonValue();
}

const waitState = (u, meet, state, timeout = WAIT) =>
  u.page.waitForSelector(`#call[data-meet="${meet}"][data-state="${state}"]`, { state: "attached", timeout });

const waitEnded = (u, meet, reason, timeout = WAIT) =>
  u.page.waitForSelector(`#call[data-meet="${meet}"][data-reason="${reason}"]`, { state: "attached", timeout });

const waitHistory = (u, meet, status) =>
  u.page.waitForSelector(`#history li.hist[data-id="${meet}"][data-status="${status}"]`, { state: "attached" });

/** Inbound RTP bytes (from the page's getStats display) grow by at least `by` bytes. */
async function bytesGrow(u, by = 20000) {
  const sel = "#call-stats";
  await u.page.waitForFunction((s) => Number(document.querySelector(s).dataset.inBytes) > 0, sel);
  const start = Number(await attr(u, sel, "data-in-bytes"));
  await u.page.waitForFunction(
    ([s, min]) => Number(document.querySelector(s).dataset.inBytes) >= min,
    [sel, start + by],
  );
  return Number(await attr(u, sel, "data-in-bytes"));
}

/** ICE candidates each side sent and received through v1IceCandidate; both must have received some. */
async function trickled(users) {
  const counts = [];
  for (const u of users) {
    const sent = Number(await attr(u, "#call-stats", "data-candidates-sent"));
    const got = Number(await attr(u, "#call-stats", "data-candidates-received"));
    if (!(got > 0)) throw new Error(`${u.name} received no ICE candidate through the server`);
    counts.push(`${u.name} ${sent}↑${got}↓`);
  }
  return "candidates " + counts.join(" ");
}

/** Gen-A `sdp` (protocol.md §4): a parsed SDP object in the Dart `sdp_transform` shapes that a
 *  stock app's writer needs, never SDP text. */
function checkGenASdp(what, d, type) {
  if (!d || d.type !== type) throw new Error(`${what}: type is ${d && d.type}, not ${type}`);
  const s = d.sdp;
  if (typeof s !== "object" || !s || !Array.isArray(s.media) || !s.media.length || s.version !== 0 || !s.origin) {
    throw new Error(`${what}: sdp is ${typeof s === "string" ? "SDP text" : JSON.stringify(s).slice(0, 80)}, not a parsed SDP object`);
  }
  for (const at of [s, ...s.media]) {
    if (at.msid !== undefined && typeof at.msid !== "string") throw new Error(`${what}: msid ${JSON.stringify(at.msid)} is not one string`);
    if (at.extmapAllowMixed !== undefined && !Array.isArray(at.extmapAllowMixed)) throw new Error(`${what}: extmapAllowMixed is not a list`);
    for (const [k, v] of Object.entries(at)) {
      if (["rtp", "fmtp", "ext", "rtcpFb", "ssrcs", "ssrcGroups", "groups", "invalid", "candidates"].includes(k) && !Array.isArray(v)) {
        throw new Error(`${what}: ${k} is not a list`);
      }
    }
  }
  return s.media.map((m) => m.type).join("+");
}

/** The call's offer and answer went out as Gen-A payloads and the server relayed them byte for byte. */
function checkGenAWire(caller, callee, meet) {
  const create = caller.sent.filter((x) => x.route === "create").at(-1);
  const newCall = callee.relayed.find((x) => x.event === "v1OnNewCall" && x.data.meetId === meet);
  const accept = callee.sent.find((x) => x.route === "accept" && x.url.includes(meet));
  const accepted = caller.relayed.find((x) => x.event === "v1OnCallAccepted" && x.data.meetId === meet);
  if (!create || !newCall || !accept || !accepted) throw new Error("missing call/create, v1OnNewCall, call/accept or v1OnCallAccepted");
  if (typeof newCall.data.payload !== "string") throw new Error("v1OnNewCall.payload is not a string (stock apps jsonDecode it)");
  if (newCall.data.payload !== create.body.payload) throw new Error("v1OnNewCall.payload differs from the call/create payload");
  if (typeof accepted.data.peerAnswer !== "string") throw new Error("v1OnCallAccepted.peerAnswer is not a string");
  if (accepted.data.peerAnswer !== accept.body.payload) throw new Error("v1OnCallAccepted.peerAnswer differs from the call/accept payload");
  const offer = checkGenASdp("offer", JSON.parse(newCall.data.payload), "offer");
  const answer = checkGenASdp("answer", JSON.parse(accepted.data.peerAnswer).answer, "answer");
  return `Gen-A objects relayed as sent: offer ${offer}, answer ${answer}`;
}

/** Polls `fn` (node-side state) until it returns something, for at most WAIT ms. */
async function until(fn, what) {
  for (const end = Date.now() + WAIT; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
    const v = fn();
    if (v) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function shot(u, name) {
  await u.page.screenshot({ path: path.join(ARTIFACTS, name) });
}

// ---------- the cases ----------

const CASES = [];
const test = (name, fn) => CASES.push({ name, fn });

test("chat", async ({ a, b }) => {
  await openChat(a, b);
  // presence: B is connected, so A's room shows them online (A polls v1MyOnline)
  await a.page.waitForSelector(`#rooms li.room[data-peer="${b.name}"][data-online="true"]`, { state: "attached" });

  await a.page.fill("#msg-input", "hello from " + a.name);
  await a.page.press("#msg-input", "Enter");
  const first = a.page.locator("#messages li.msg.mine").last();
  // B's page receives it (an unknown room until now) and reports it delivered
  await b.page.waitForSelector(`#rooms li.room[data-peer="${a.name}"]`);
  await a.page.waitForSelector('#messages li.msg.mine[data-tick="delivered"]');
  // B opens the room: seen
  await b.page.click(`#rooms li.room[data-peer="${a.name}"]`);
  await b.page.waitForSelector(`#messages li.msg:not(.mine) .body:text("hello from ${a.name}")`);
  await a.page.waitForSelector('#messages li.msg.mine[data-tick="seen"]');
  await b.page.waitForSelector(`#rooms li.room[data-peer="${a.name}"][data-online="true"]`, { state: "attached" });

  // typing indicator, then B's reply: A has the room open, so B sees it seen
  await b.page.type("#msg-input", "hi " + a.name);
  await a.page.waitForSelector('#typing[data-typing="1"]');
  await b.page.press("#msg-input", "Enter");
  await a.page.waitForSelector(`#messages li.msg:not(.mine) .body:text("hi ${a.name}")`);
  await a.page.waitForSelector('#typing[data-typing="0"]', { state: "attached" });
  await b.page.waitForSelector('#messages li.msg.mine[data-tick="seen"]');

  await shot(a, "chat.png");
  // delete for everyone
  const lid = await first.getAttribute("data-lid");
  await first.locator("button.del").click();
  await a.page.waitForSelector(`#messages li.msg[data-lid="${lid}"][data-deleted="true"]`);
  await b.page.waitForSelector(`#messages li.msg[data-lid="${lid}"][data-deleted="true"]`);
  return "sent, delivered, seen, typing, deleted";
});

test("video call: accept, media both ways, hang up", async ({ a, b }) => {
  const meet = await placeCall(a, b, true);
  await waitState(b, meet, "incoming");
  await b.page.click("#btn-accept");
  await Promise.all([waitState(a, meet, "connected"), waitState(b, meet, "connected")]);
  const [inA, inB] = await Promise.all([bytesGrow(a), bytesGrow(b)]);
  const pairA = await attr(a, "#call-stats", "data-pair");
  const ice = await trickled([a, b]);
  const wire = checkGenAWire(a, b, meet);
  await Promise.all([shot(a, "call-video-caller.png"), shot(b, "call-video-callee.png")]);
  await a.page.click("#btn-hangup");
  await Promise.all([waitEnded(a, meet, "finished"), waitEnded(b, meet, "finished")]);
  await Promise.all([waitHistory(a, meet, "finished"), waitHistory(b, meet, "finished")]);
  return `in-bytes A=${inA} B=${inB}, route ${pairA}, ${ice}; ${wire}`;
});

// A stock Gen-A app's offer, exactly as it sends it: tests/browser/gen-a-offer.json is a
// Chromium offer (audio+video) in the form Dart `sdp_transform` 0.3.2 parses and jsonEncodes it
// (null for absent optional parts, a=msid as one string, a=extmap-allow-mixed as a list, a
// 64-bit origin session id). A's call/create body is swapped for it on the way out; B must read
// it (setRemoteDescription, createAnswer) and answer in the Gen-A form, and the server must relay
// both unchanged. No media can flow (the offer's ICE and DTLS credentials are not A's), so the
// call is ended as soon as B's answer has reached A.
test("video call: B answers a stock Gen-A app's offer object", async ({ a, b }) => {
  await a.page.route("**/api/v2/call/create/**", (route) => {
    const body = route.request().postDataJSON();
    route.continue({ postData: JSON.stringify({ ...body, payload: GEN_A_OFFER }) });
  });
  try {
    const meet = await placeCall(a, b, true);
    await waitState(b, meet, "incoming");
    const newCall = await until(() => b.relayed.find((x) => x.event === "v1OnNewCall" && x.data.meetId === meet), "v1OnNewCall at B");
    if (newCall.data.payload !== GEN_A_OFFER) throw new Error("v1OnNewCall.payload is not the stock app's offer byte for byte");
    // B posts call/accept only after its browser took the offer and made an answer
    const response = b.page.waitForResponse((r) => r.url().includes("/call/accept/" + meet));
    const ended = b.page.waitForSelector(`#call[data-meet="${meet}"]:not([data-reason=""])`, { state: "attached" });
    ended.catch(() => {});
    await b.page.click("#btn-accept");
    await Promise.race([response, ended]); // a page that cannot read the offer ends the call instead
    const mine = b.sent.find((x) => x.route === "accept" && x.url.includes(meet));
    if (!mine) throw new Error(`B could not answer: ${await b.page.textContent("#call-status")}`);
    const res = await response;
    if (!res.ok()) throw new Error(`call/accept answered ${res.status()}`);
    const sent = mine.body.payload;
    const answer = checkGenASdp("answer", JSON.parse(sent).answer, "answer");
    const relayed = await until(() => a.relayed.find((x) => x.event === "v1OnCallAccepted" && x.data.meetId === meet), "v1OnCallAccepted at A");
    if (relayed.data.peerAnswer !== sent) throw new Error("v1OnCallAccepted.peerAnswer differs from B's call/accept payload");
    // A hangs up, unless a failed media connection has already ended the call (on either side:
    // the server then ends it for the other one)
    if (!(await attr(a, "#call", "data-reason"))) await a.page.click("#btn-hangup", { timeout: 3000 }).catch(() => {});
    for (const u of [a, b]) await u.page.waitForSelector(`#call[data-meet="${meet}"]:not([data-reason=""])`, { state: "attached" });
    return `answer ${answer} relayed to A unchanged`;
  } finally {
    await a.page.unroute("**/api/v2/call/create/**");
  }
});

test("audio call: callee rejects", async ({ a, b }) => {
  const meet = await placeCall(a, b, false);
  await waitState(b, meet, "incoming");
  await b.page.click("#btn-reject");
  await Promise.all([waitEnded(a, meet, "rejected"), waitEnded(b, meet, "rejected")]);
  await Promise.all([waitHistory(a, meet, "rejected"), waitHistory(b, meet, "rejected")]);
});

test("audio call: caller cancels", async ({ a, b }) => {
  const meet = await placeCall(a, b, false);
  await waitState(b, meet, "incoming");
  await a.page.click("#btn-hangup");
  await Promise.all([waitEnded(a, meet, "canceled"), waitEnded(b, meet, "canceled")]);
  await Promise.all([waitHistory(a, meet, "canceled"), waitHistory(b, meet, "canceled")]);
});

test("video call: nobody answers (timeout)", async ({ a, b }) => {
  const meet = await placeCall(a, b, true);
  await waitState(b, meet, "incoming");
  const t = RING_MS + WAIT;
  await Promise.all([waitEnded(a, meet, "timeout", t), waitEnded(b, meet, "timeout", t)]);
  await Promise.all([waitHistory(a, meet, "timeout"), waitHistory(b, meet, "timeout")]);
});

test("video call relay-only through the embedded TURN", async ({ a, b }) => {
  for (const u of [a, b]) {
    await closeCallView(u);
    await u.page.check("#opt-relay");
  }
  try {
    const meet = await placeCall(a, b, true);
    await waitState(b, meet, "incoming");
    await b.page.click("#btn-accept");
    await Promise.all([waitState(a, meet, "connected"), waitState(b, meet, "connected")]);
    const [inA, inB] = await Promise.all([bytesGrow(a), bytesGrow(b)]);
    const routes = [await attr(a, "#call-stats", "data-pair"), await attr(b, "#call-stats", "data-pair")];
    const ice = await trickled([a, b]);
    for (const r of routes) if (r !== "relay/relay") throw new Error(`selected candidate pair is ${r}, not relay/relay`);
    await Promise.all([shot(a, "call-relay-caller.png"), shot(b, "call-relay-callee.png")]);
    await b.page.click("#btn-hangup");
    await Promise.all([waitEnded(a, meet, "finished"), waitEnded(b, meet, "finished")]);
    await Promise.all([waitHistory(a, meet, "finished"), waitHistory(b, meet, "finished")]);
    return `in-bytes A=${inA} B=${inB}, route ${routes.join(" & ")}, ${ice}`;
  } finally {
    for (const u of [a, b]) {
      await closeCallView(u);
      await u.page.uncheck("#opt-relay");
    }
  }
});

test("presence: B signs out, A's next poll shows them offline", async ({ a, b }) => {
  await closeCallView(a);
  await closeCallView(b);
  await a.page.waitForSelector(`#rooms li.room[data-peer="${b.name}"][data-online="true"]`, { state: "attached" });
  await b.page.click("#btn-signout");
  await b.page.waitForSelector("#signin", { state: "visible" });
  // the page polls v1MyOnline every 10 s, as the SDK does
  await a.page.waitForSelector(`#rooms li.room[data-peer="${b.name}"][data-online="false"]`, { state: "attached", timeout: 10000 + WAIT });
});

// ---------- run ----------

/** After a failure: hang up whatever is left so the next case starts clean. */
async function reset(users) {
  for (const u of users) {
    await u.page
      .evaluate(() => {
        for (const id of ["btn-hangup", "btn-reject", "btn-close"]) {
          const b = document.getElementById(id);
          if (getComputedStyle(b).display !== "none") b.click();
        }
      })
      .catch(() => {});
  }
  for (const u of users) {
    await u.page
      .waitForFunction(() => ["idle", "ended"].includes(document.querySelector("#call").dataset.state), null, { timeout: 5000 })
      .catch(() => {});
  }
}

async function main() {
  fs.rmSync(ARTIFACTS, { recursive: true, force: true }); // no stale screenshots from a past run
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  if (!fs.existsSync(BIN)) throw new Error(`no server binary at ${BIN}`);
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium chromium-driver)`);
  const server = await startServer();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  let passed = 0;
  let failed = 0;
  const users = [];
  try {
    users.push(await openUser(browser, server.url, "alice"), await openUser(browser, server.url, "bob"));
    const [a, b] = users;
    for (const c of CASES) {
      if (ONLY.length && !ONLY.some((o) => c.name.includes(o))) continue;
      const t0 = performance.now();
      try {
        const note = await c.fn({ a, b });
        passed++;
        console.log(`ok   ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s  ${c.name}${note ? "  (" + note + ")" : ""}`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s  ${c.name}: ${String(e.message).split("\n")[0]}`);
        const slug = c.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
        for (const u of users) await shot(u, `failed-${slug}-${u.name}.png`).catch(() => {});
        if (process.env.VERBOSE) console.log(e);
        await reset(users);
      }
    }
  } finally {
    for (const u of users) fs.writeFileSync(path.join(ARTIFACTS, `console-${u.name}.log`), u.log.join("\n") + "\n");
    await browser.close().catch(() => {});
    await server.stop();
  }
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

main().catch((e) => {
  console.error("browser test could not run:", e.message);
  process.exit(2);
});
