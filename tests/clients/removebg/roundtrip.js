// The npm `remove.bg` client (pinned in package.json), pointed at a local Clipline API.
//
// remove.bg@1.3.0 has no base-URL option: it posts to the constant
// "https://api.remove.bg/v1.0/removebg" through `unirest.post`. Node caches modules, so the
// `unirest` this script requires is the one the client calls: wrapping its `post` to swap that
// origin for CLIPLINE_URL (and nothing else) sends the client's own request, headers, body and
// all, to Clipline. That override is the only change made to the client.
//
// Usage: node roundtrip.js CALL OPTIONS_JSON
//   CALL is file | base64 | url (removeBackgroundFromImageFile / ...Base64 / ...Url);
//   OPTIONS_JSON is the client's options object (apiKey, path, base64img, url, size, ...).
// Prints one JSON line: {"ok": true, "result": {...}} or {"ok": false, "errors": ...}.
"use strict";

const REMOVE_BG_ORIGIN = "https://api.remove.bg";
const base = process.env.CLIPLINE_URL;
if (!base) {
  console.error("CLIPLINE_URL is not set");
  process.exit(2);
}
const unirest = require("unirest");
const post = unirest.post;
unirest.post = function (url, ...rest) {
  if (typeof url !== "string" || !url.startsWith(REMOVE_BG_ORIGIN + "/")) {
    throw new Error(`unexpected URL from the client: ${url}`);
  }
  return post.call(unirest, base + url.slice(REMOVE_BG_ORIGIN.length), ...rest);
};
const removebg = require("remove.bg");

const calls = {
  file: removebg.removeBackgroundFromImageFile,
  base64: removebg.removeBackgroundFromImageBase64,
  url: removebg.removeBackgroundFromImageUrl,
};
const [call, options] = process.argv.slice(2);
if (!calls[call]) {
  console.error(`CALL must be one of ${Object.keys(calls).join(", ")}`);
  process.exit(2);
}
calls[call](JSON.parse(options)).then(
  (result) => console.log(JSON.stringify({ ok: true, result })),
  (errors) => console.log(JSON.stringify({ ok: false, errors })),
);
