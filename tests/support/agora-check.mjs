// Checks an Agora AccessToken2 ("007...") RTC token against the reference implementation, the npm
// `agora-token` package.
//
// usage: node tests/support/agora-check.mjs <token> <appId> <appCertificate>
//
// Parses the token with the reference parser, checks its signature with the given certificate,
// then rebuilds it with the reference `RtcTokenBuilder.buildTokenWithUid(..., RtcRole.PUBLISHER,
// expire, privilegeExpire)` using the token's own issue time and salt (the builder reads both from
// the clock and Math.random, so those are pinned while it runs) and compares the two byte for byte.
//
// The comparison is on the token *content* (the zlib-inflated bytes: signature + signing info).
// The compressed bytes are reported too (`sameString`) but do not decide `ok`: Node bundles
// Chromium's zlib, whose deflate output depends on the CPU (it hashes with CRC32C when SSE4.2 or
// ARMv8 CRC is available) and differs from canonical zlib, so no other implementation (nor Agora's
// own Go/Python/Java builders) can promise identical compressed bytes. Agora inflates tokens
// before checking them, so the content is what matters.
//
// Prints one line of JSON and exits 0:
//   {"ok":true,"appId":"...","channel":"...","uid":0,"issueTs":...,"expire":...,"salt":...,
//    "privileges":{"1":exp,"2":exp,"3":exp,"4":exp},"sameString":true}
//   {"ok":false,"error":"..."}
// Exits 2 on usage errors.

import { createRequire } from "node:module";
import zlib from "node:zlib";

const require = createRequire(import.meta.url);
const { RtcTokenBuilder, RtcRole } = require("agora-token");
const { AccessToken2, kRtcServiceType } = require("agora-token/src/AccessToken2");

const SALT_MAX = 99999999;
const UID_MAX = 4294967295;

const args = process.argv.slice(2);
if (args.length !== 3) {
  process.stderr.write("usage: node agora-check.mjs <token> <appId> <appCertificate>\n");
  process.exit(2);
}
const [token, appId, appCertificate] = args;

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
class CheckFailed extends Error {}
const fail = (error) => {
  throw new CheckFailed(error);
};

// The token content: everything the signature covers, plus the signature.
const inflate = (tok) => zlib.inflateSync(Buffer.from(tok.slice(3), "base64"));

// Runs the reference builder with its clock and salt source pinned.
function buildPinned(issueTs, salt, build) {
  const getTime = Date.prototype.getTime;
  const random = Math.random;
  Date.prototype.getTime = () => issueTs * 1000;
  // The builder takes Math.floor(Math.random() * 99999999) + 1.
  Math.random = () => (salt - 0.5) / SALT_MAX;
  try {
    return build();
  } finally {
    Date.prototype.getTime = getTime;
    Math.random = random;
  }
}

try {
  const parsed = new AccessToken2("", "", 0, 0);
  if (!parsed.from_string(token)) fail("the reference parser rejects the token");
  // The reference parser leaves the strings it reads as Buffers.
  const tokenAppId = parsed.appId.toString("utf8");
  if (tokenAppId !== appId) {
    fail(`token app id ${JSON.stringify(tokenAppId)} is not ${JSON.stringify(appId)}`);
  }
  if (!parsed.verifySignature(appCertificate)) {
    fail("signature does not verify with the given app certificate");
  }
  if (parsed.services.length !== 1 || parsed.getServices(kRtcServiceType).length !== 1) {
    fail(`expected exactly one service, RTC; got types [${parsed.services.map((s) => s.service_type())}]`);
  }

  const rtc = parsed.getServices(kRtcServiceType)[0];
  const channel = rtc.__channel_name.toString("utf8");
  const account = rtc.__uid.toString("utf8");
  const privileges = rtc.__privileges;
  const { issueTs, expire, salt } = parsed;

  // buildTokenWithUid writes uid 0 as "" and any other uid as its decimal text.
  let uid;
  if (account === "") uid = 0;
  else if (/^[1-9][0-9]{0,9}$/.test(account) && Number(account) <= UID_MAX) uid = Number(account);
  else fail(`account ${JSON.stringify(account)} is not a uid as buildTokenWithUid writes it`);

  const keys = Object.keys(privileges).join(",");
  if (keys !== "1,2,3,4") fail(`expected the publisher privileges 1,2,3,4; got ${keys}`);
  const privilegeExpire = privileges[1];
  if (![2, 3, 4].every((p) => privileges[p] === privilegeExpire)) {
    fail(`publisher privileges should share one expiry; got ${JSON.stringify(privileges)}`);
  }
  if (!(salt >= 1 && salt <= SALT_MAX)) fail(`salt ${salt} is outside the reference's 1..=${SALT_MAX}`);

  const rebuilt = buildPinned(issueTs, salt, () =>
    RtcTokenBuilder.buildTokenWithUid(
      appId,
      appCertificate,
      channel,
      uid,
      RtcRole.PUBLISHER,
      expire,
      privilegeExpire,
    ),
  );
  if (!rebuilt) fail("the reference builder refused these inputs");
  // Sanity: the pinning took effect.
  const again = new AccessToken2("", "", 0, 0);
  if (!again.from_string(rebuilt) || again.issueTs !== issueTs || again.salt !== salt) {
    fail("could not pin the reference builder's issue time and salt");
  }

  const mine = inflate(token);
  const theirs = inflate(rebuilt);
  if (!mine.equals(theirs)) {
    // Skip the length-prefixed signature: it differs whenever the signed fields do.
    const skip = (buf) => buf.subarray(2 + buf.readUInt16LE(0));
    const [a, b] = [skip(mine), skip(theirs)];
    let at = 0;
    while (at < a.length && at < b.length && a[at] === b[at]) at++;
    fail(
      `content differs from the reference's: signed fields differ from byte ${at} ` +
        `(lengths ${a.length} vs ${b.length}); reference token ${rebuilt}`,
    );
  }

  print({
    ok: true,
    appId: tokenAppId,
    channel,
    uid,
    issueTs,
    expire,
    salt,
    privileges,
    sameString: rebuilt === token,
  });
} catch (e) {
  const error = e instanceof CheckFailed ? e.message : `check failed: ${e && e.message ? e.message : e}`;
  print({ ok: false, error });
}
