// The independent side of t/test_webpush_crypto.py: the npm http_ece
// package (the library behind the web-push package) decrypts what the C
// code encrypts, and Node's own crypto verifies the VAPID token.
//
// Reads one JSON request on stdin, writes one JSON answer on stdout:
//   {"op": "keys"}  ->  {"private", "p256dh", "auth"}  (a browser's keys)
//   {"op": "decrypt", "private", "auth", "bodies": [...]}
//       ->  [{"plaintext"} or {"error"}, ...]
//   {"op": "vapid", "header", "aud", "sub", "exp"}  ->  {"ok"} or {"error"}
// Every byte string in base64url.

import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'web', 'package.json'));
const ece = require('http_ece');

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const unb64 = (s) => Buffer.from(s, 'base64url');

function keys() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  return {
    private: b64(ecdh.getPrivateKey()),
    p256dh: b64(ecdh.getPublicKey()),
    auth: b64(crypto.randomBytes(16)),
  };
}

function decrypt(req) {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.setPrivateKey(unb64(req.private));
  return req.bodies.map((body) => {
    try {
      const plain = ece.decrypt(unb64(body), {
        version: 'aes128gcm',
        privateKey: ecdh,
        authSecret: req.auth,
      });
      return { plaintext: b64(plain) };
    } catch (e) {
      return { error: String(e.message || e) };
    }
  });
}

// "vapid t=<jwt>, k=<key>": the token signed by k, with these claims
function vapid(req) {
  const m = /^vapid t=([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+), k=([A-Za-z0-9_-]+)$/
    .exec(req.header);
  if (!m) {
    return { error: 'not "vapid t=<jwt>, k=<key>"' };
  }
  const [, h, c, s, k] = m;
  const point = unb64(k);
  if (point.length !== 65 || point[0] !== 4) {
    return { error: 'k is not an uncompressed P-256 point' };
  }
  const key = crypto.createPublicKey({
    key: {
      kty: 'EC', crv: 'P-256',
      x: b64(point.subarray(1, 33)), y: b64(point.subarray(33)),
    },
    format: 'jwk',
  });
  const ok = crypto.verify('sha256', Buffer.from(h + '.' + c),
    { key, dsaEncoding: 'ieee-p1363' }, unb64(s));
  if (!ok) {
    return { error: 'bad signature' };
  }
  const header = JSON.parse(unb64(h).toString());
  const claims = JSON.parse(unb64(c).toString());
  if (header.typ !== 'JWT' || header.alg !== 'ES256'
      || Object.keys(header).length !== 2) {
    return { error: 'header ' + JSON.stringify(header) };
  }
  if (claims.aud !== req.aud || claims.sub !== req.sub
      || claims.exp !== req.exp || Object.keys(claims).length !== 3) {
    return { error: 'claims ' + JSON.stringify(claims) };
  }
  return { ok: true, claims };
}

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const req = JSON.parse(Buffer.concat(chunks).toString());
const ops = { keys, decrypt, vapid };
process.stdout.write(JSON.stringify(ops[req.op](req)) + '\n');
