// Small helpers for app.js and call.js: DOM, time formatting, ids, hashing.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function time(iso, withDay) {
  if (!iso) return "";
  const d = new Date(iso);
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return withDay && d.toDateString() !== new Date().toDateString() ? d.toLocaleDateString() + " " + t : t;
}

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** UUID v4 (crypto.randomUUID needs https; getRandomValues works on a plain-http LAN page). */
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Lowercase hex SHA-512. crypto.subtle exists only on https/localhost pages; elsewhere a
 *  small BigInt implementation (constants derived from the primes, FIPS 180-4) stands in. */
async function sha512hex(text) {
  const data = new TextEncoder().encode(text);
  if (crypto.subtle) {
    const h = new Uint8Array(await crypto.subtle.digest("SHA-512", data));
    return [...h].map((x) => x.toString(16).padStart(2, "0")).join("");
  }
  return sha512Fallback(data);
}

function sha512Fallback(bytes) {
  const M = (1n << 64n) - 1n;
  const root = (n, k) => { // floor(n^(1/k)) by Newton's method
    let x = 1n << BigInt(Math.ceil(n.toString(2).length / k) + 1);
    for (;;) {
      const y = ((BigInt(k) - 1n) * x + n / x ** BigInt(k - 1)) / BigInt(k);
      if (y >= x) return x;
      x = y;
    }
  };
  const primes = [];
  for (let n = 2; primes.length < 80; n++) if (primes.every((p) => n % p)) primes.push(n);
  const K = primes.map((p) => root(BigInt(p) << 192n, 3) & M);
  const H = primes.slice(0, 8).map((p) => root(BigInt(p) << 128n, 2) & M);
  const rotr = (x, n) => ((x >> BigInt(n)) | (x << BigInt(64 - n))) & M;
  const len = bytes.length;
  const padded = new Uint8Array(Math.ceil((len + 17) / 128) * 128);
  padded.set(bytes);
  padded[len] = 0x80;
  new DataView(padded.buffer).setBigUint64(padded.length - 8, BigInt(len) * 8n);
  const view = new DataView(padded.buffer);
  for (let off = 0; off < padded.length; off += 128) {
    const w = [];
    for (let i = 0; i < 16; i++) w[i] = view.getBigUint64(off + i * 8);
    for (let i = 16; i < 80; i++) {
      const s0 = rotr(w[i - 15], 1) ^ rotr(w[i - 15], 8) ^ (w[i - 15] >> 7n);
      const s1 = rotr(w[i - 2], 19) ^ rotr(w[i - 2], 61) ^ (w[i - 2] >> 6n);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M;
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 80; i++) {
      const t1 = (h + (rotr(e, 14) ^ rotr(e, 18) ^ rotr(e, 41)) + ((e & f) ^ (~e & M & g)) + K[i] + w[i]) & M;
      const t2 = ((rotr(a, 28) ^ rotr(a, 34) ^ rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))) & M;
      [h, g, f, e, d, c, b, a] = [g, f, e, (d + t1) & M, c, b, a, (t1 + t2) & M];
    }
    [a, b, c, d, e, f, g, h].forEach((v, i) => (H[i] = (H[i] + v) & M));
  }
  return H.map((x) => x.toString(16).padStart(16, "0")).join("");
}
