// SDP the way the stock Gen-A apps (Flutter `v_chat_web_rtc` 1.2.1) carry it, protocol.md §4:
// not as text but as the object that the Dart `sdp_transform` package (0.3.x) parses it into,
// and they rebuild the text with that package's writer. The page parses and writes with the npm
// original (web/vendor/sdp-transform.js, `window.sdpTransform`); its objects differ from the
// Dart port's in a few places, which are converted here both ways:
//
//   a=msid:<stream> <track>  Dart: media.msid = "<stream> <track>" (one string)
//                            npm:  media.msid = [{ id, appdata }]
//   a=extmap-allow-mixed     Dart: extmapAllowMixed = [{ "extmap-allow-mixed": "extmap-allow-mixed" }]
//                            npm:  extmapAllowMixed = "extmap-allow-mixed"
//   optional parts missing   Dart: the key is there with null; npm: no key
//
// Unconverted, the Dart writer fails on npm's shapes (forEach on a string) or writes a broken line
// (`a=msid:[{id: …}]`), and npm's writer fails on Dart's (msid.forEach on a string).
"use strict";

const GenA = (() => {
  const MIXED = "extmap-allow-mixed";

  /** Our SDP text → the object a stock app's `sdp_transform.write` can read. */
  function toObject(text) {
    const s = sdpTransform.parse(text);
    for (const at of [s, ...s.media]) {
      if (typeof at.extmapAllowMixed === "string") at.extmapAllowMixed = [{ [MIXED]: MIXED }];
      if (Array.isArray(at.msid)) {
        const [first, ...more] = at.msid.map((m) => (m.appdata ? `${m.id} ${m.appdata}` : String(m.id)));
        at.msid = first;
        // Dart keeps one a=msid per section; any further one rides along as an unparsed line
        if (more.length) at.invalid = [...(at.invalid || []), ...more.map((v) => ({ value: "msid:" + v }))];
      }
      for (const e of at.ext || []) {
        // the Dart grammar has no slot for the encrypt flag: keep it in front of the URI
        if (e["encrypt-uri"]) {
          e.uri = `${e["encrypt-uri"]} ${e.uri}`;
          delete e["encrypt-uri"];
        }
      }
    }
    return s;
  }

  /** An SDP object from a stock app (Dart shapes) or from this page (either shape) → text. */
  function toText(obj) {
    const s = withoutNulls(obj);
    if (!s || typeof s !== "object" || !Array.isArray(s.media)) throw new Error("the SDP object has no media sections");
    for (const at of [s, ...s.media]) {
      if (at.extmapAllowMixed != null && typeof at.extmapAllowMixed !== "string") at.extmapAllowMixed = MIXED;
      if (typeof at.msid === "string" || typeof at.msid === "number") {
        const [id, ...rest] = String(at.msid).trim().split(/\s+/);
        at.msid = [rest.length ? { id, appdata: rest.join(" ") } : { id }];
      } else if (at.msid && !Array.isArray(at.msid)) {
        at.msid = [at.msid]; // npm sdp-transform 2.x: one object
      }
    }
    return sdpTransform.write(s);
  }

  /** A deep copy without null values (JSON has no "absent"; the Dart parser writes null). */
  function withoutNulls(v) {
    if (Array.isArray(v)) return v.filter((x) => x != null).map(withoutNulls);
    if (v && typeof v === "object") {
      const o = {};
      for (const [k, x] of Object.entries(v)) if (x != null) o[k] = withoutNulls(x);
      return o;
    }
    return v;
  }

  /** What goes on the wire for a local description: `{sdp: <object>, type}`. */
  function wire(desc) {
    return { sdp: toObject(desc.sdp), type: desc.type };
  }

  /** A received `{sdp, type}` whose sdp is an object (stock apps) or text (older pages) →
   *  an RTCSessionDescriptionInit. */
  function description(d, type) {
    if (!d || d.sdp == null) throw new Error(`no ${type} in the message`);
    const sdp = typeof d.sdp === "string" ? d.sdp : toText(d.sdp);
    return { type: d.type || type, sdp };
  }

  return { toObject, toText, wire, description };
})();
