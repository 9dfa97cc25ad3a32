// Node's own HTTP/1.1 server (llhttp, with Node's defaults: strict parsing, Host required, a 16 KiB
// header section) answering every request with what it parsed: method, target, raw headers and body,
// as base64 JSON in the X-Wire-Echo response header. Listens on 127.0.0.1, prints its port, and
// exits when stdin closes, so it never outlives the test that started it.
"use strict";
const http = require("http");

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const seen = {
      method: request.method,
      target: Buffer.from(request.url, "latin1").toString("base64"),
      headers: request.rawHeaders.map((text) => Buffer.from(text, "latin1").toString("base64")),
      body_base64: Buffer.concat(chunks).toString("base64"),
    };
    response.setHeader("X-Wire-Echo", Buffer.from(JSON.stringify(seen)).toString("base64"));
    response.setHeader("Content-Type", "text/plain");
    response.end("echoed\n");
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(server.address().port + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
