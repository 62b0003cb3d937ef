'use strict';
// Upstream for tests/interop.rs: Node's own `http` / `http2` modules (no npm), so that the
// peer on the far side of the gateway is code nobody here wrote.
//
//   node echo_server.js h1   IP PORT              HTTP/1.1 (Node's `http`)
//   node echo_server.js h2c  IP PORT              cleartext HTTP/2, prior knowledge (`http2`)
//   node echo_server.js h2   IP PORT CERT KEY     HTTP/2 over TLS, ALPN h2 (`http2`)
//
// Paths (any prefix before the last segment is ignored):
//   /echo         streams the request body back as it arrives (no content-length)
//   /sha          {"bytes": N, "sha256": HEX, "framing": …} of the request body, once it ended
//   /bytes?n=N    N bytes, byte i = i % 251, streamed in 64 KiB writes
//   anything else the request's path, method and x-req header, as text
// Every request is logged to stderr as `METHOD PATH bytes=N framing=…`.
const http = require('http');
const http2 = require('http2');
const fs = require('fs');
const crypto = require('crypto');

const [mode, ip, port, cert, key] = process.argv.slice(2);

function framing(req) {
  if (req.httpVersionMajor === 2) return req.headers['content-length'] !== undefined ? 'h2-length' : 'h2-stream';
  if (req.headers['transfer-encoding']) return `chunked`;
  if (req.headers['content-length'] !== undefined) return 'length';
  return 'none';
}

function handle(req, res) {
  const url = new URL(req.url, 'http://upstream');
  const what = url.pathname.split('/').pop();
  const how = framing(req);
  let bytes = 0;
  if (what === 'echo') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-framing': how });
    req.on('data', (chunk) => { bytes += chunk.length; res.write(chunk); });
    req.on('end', () => { res.end(); process.stderr.write(`${req.method} ${req.url} bytes=${bytes} framing=${how}\n`); });
    return;
  }
  const hash = crypto.createHash('sha256');
  req.on('data', (chunk) => { bytes += chunk.length; hash.update(chunk); });
  req.on('end', () => {
    process.stderr.write(`${req.method} ${req.url} bytes=${bytes} framing=${how}\n`);
    if (what === 'sha') {
      const body = JSON.stringify({ bytes, sha256: hash.digest('hex'), framing: how }) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (what === 'bytes') {
      const n = Number(url.searchParams.get('n') || 0);
      const block = Buffer.alloc(251 * 261); // a whole number of 251-byte periods, ~64 KiB
      for (let i = 0; i < block.length; i++) block[i] = i % 251;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      let sent = 0;
      const more = () => {
        while (sent < n) {
          const piece = block.subarray(0, Math.min(block.length, n - sent));
          sent += piece.length;
          if (!res.write(piece)) { res.once('drain', more); return; }
        }
        res.end();
      };
      more();
      return;
    }
    const body = `${req.method} ${url.pathname} x-req=${req.headers['x-req'] || '-'}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

let server;
if (mode === 'h1') server = http.createServer(handle);
else if (mode === 'h2c') server = http2.createServer({ maxSessionMemory: 64 }, handle);
else if (mode === 'h2') server = http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), maxSessionMemory: 64 }, handle);
else { process.stderr.write(`unknown mode ${mode}\n`); process.exit(2); }
server.listen(Number(port), ip, () => process.stdout.write(`listening ${mode} ${ip}:${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
