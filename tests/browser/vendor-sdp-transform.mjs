// Builds web/vendor/sdp-transform.js from the npm `sdp-transform` package (a devDependency):
// its CommonJS lib/grammar.js, parser.js and writer.js wrapped, unchanged, in one IIFE that
// exposes `window.sdpTransform = { parse, write }` (what the stock Gen-A apps use through the
// Dart port of the same library). The page uses it to send and read SDP as parsed objects.
//
//   npm ci && node tests/browser/vendor-sdp-transform.mjs           # (re)write it
//   node tests/browser/vendor-sdp-transform.mjs --check                # exit 1 if it differs
//
// Writes the same bytes for the same package version, so a regenerated file diffs clean.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PKG = path.join(ROOT, "node_modules/sdp-transform");
const OUT = path.join(ROOT, "web/vendor/sdp-transform.js");

if (!fs.existsSync(path.join(PKG, "package.json"))) {
  console.error("node_modules/sdp-transform is missing: run `npm ci` first");
  process.exit(2);
}
const { version } = JSON.parse(fs.readFileSync(path.join(PKG, "package.json"), "utf8"));
const license = fs.readFileSync(path.join(PKG, "LICENSE"), "utf8").trim();
const MODULES = ["grammar", "parser", "writer"]; // lib/index.js only re-exports these

const modules = MODULES.map((name) => {
  const src = fs.readFileSync(path.join(PKG, "lib", name + ".js"), "utf8").trimEnd();
  return `  // ---- lib/${name}.js ----\n  defs["./${name}"] = function (module, exports, require) {\n${src}\n  };`;
}).join("\n\n");

const out = `/*! sdp-transform ${version} (npm), bundled for the browser by tests/browser/vendor-sdp-transform.mjs.
 * Exposes window.sdpTransform = { parse, write }. Do not edit: regenerate.
 *
${license.split("\n").map((l) => (" * " + l).trimEnd()).join("\n")}
 */
(function () {
  var defs = {};
  var cache = {};
  function require(name) {
    if (!cache[name]) {
      var module = { exports: {} };
      cache[name] = module;
      defs[name].call(module.exports, module, module.exports, require);
    }
    return cache[name].exports;
  }

${modules}

  var parser = require("./parser");
  window.sdpTransform = Object.freeze({ parse: parser.parse, write: require("./writer") });
})();
`;

if (process.argv.includes("--check")) {
  const same = fs.existsSync(OUT) && fs.readFileSync(OUT, "utf8") === out;
  console.log(`${path.relative(ROOT, OUT)} ${same ? "matches" : "differs from"} sdp-transform ${version}`);
  process.exit(same ? 0 : 1);
}
fs.writeFileSync(OUT, out);
console.log(`wrote ${path.relative(ROOT, OUT)} (sdp-transform ${version}, ${out.length} bytes)`);
