#!/usr/bin/env node
// Measures mutually authenticated TLS 1.3 handshakes per second on loopback, over TCP and a Unix
// socket, through the real TlsListener and dial(). A quick measurement, not a test or a benchmark
// suite: both ends run in this one process, so the figure is the cost of both sides together.
//
// Usage: node scripts/handshake-rate.mjs [--seconds 3] [--concurrency 1,8] [--key ec-p256]
import { Buffer } from 'node:buffer';
import console from 'node:console';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { URL } from 'node:url';
import { parseArgs } from 'node:util';

import './register-ts.mjs';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,8' },
    key: { type: 'string', default: 'ec-p256' },
  },
});
const seconds = Number(values.seconds);
const concurrencies = values.concurrency.split(',').map(Number);

const lib = (file) => new URL(`../lib/${file}`, import.meta.url).href;
const { DomusAddr } = await import(lib('engine/addr.ts'));
const { loadAuthMaterial } = await import(lib('engine/auth.ts'));
const { TlsListener } = await import(lib('engine/transport/tls-listener.ts'));
const { dial } = await import(lib('engine/transport/dial.ts'));
const { createCertificateAuthority, issueNodeCertificate } = await import(lib('cli/pki.ts'));

const ca = await createCertificateAuthority({
  commonName: 'Handshake Rate CA',
  keyType: values.key,
});
const authOf = async (name) => {
  const node = await issueNodeCertificate(ca, { name, keyType: values.key });
  return loadAuthMaterial({
    format: 'pem',
    caPem: Buffer.from(node.caPem),
    certPem: Buffer.from(node.chainPem),
    pkcs8KeyPem: Buffer.from(node.keyPem),
  });
};
const server = await authOf('server');
const client = await authOf('client');
const dir = mkdtempSync(path.join(tmpdir(), 'aur-rate-'));

/** Runs `concurrency` dial loops for `seconds` and returns completed handshakes per second. */
async function measure(addr, concurrency) {
  let accepted = 0;
  let refused = 0;
  const listener = await TlsListener.listen({
    addr,
    secureContext: server.secureContext,
    limits: () => ({
      total: 1024,
      perPeer: 64,
      tcpHandshakeTimeoutMs: 10_000,
      socketHandshakeTimeoutMs: 10_000,
    }),
    onConnection: (conn) => {
      accepted++;
      conn.socket.on('error', () => undefined);
      conn.socket.destroy();
    },
    onRefused: () => {
      refused++;
    },
  });
  let dialed = 0;
  const until = performance.now() + seconds * 1000;
  const loop = async () => {
    while (performance.now() < until) {
      const conn = await dial(listener.localAddr, {
        secureContext: client.secureContext,
        timeoutMs: 10_000,
        expectedIdentity: 'spiffe://aurelia.local/server',
      });
      conn.socket.on('error', () => undefined);
      // The handshake counts once the listener verified this client too: it then closes the
      // connection (in TLS 1.3 the dialer finishes first, so its own success is not enough).
      await new Promise((resolve) => {
        conn.socket.once('close', resolve);
        conn.socket.resume();
      });
      dialed++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (performance.now() - started) / 1000;
  await listener.close();
  if (refused > 0) console.error(`  (${refused} handshakes refused by the listener)`);
  return { completed: Math.min(dialed, accepted) / elapsed };
}

console.log(
  `node ${process.version}, ${values.key} certificates, ${seconds} s per run, both ends in one process`,
);
try {
  for (const [name, addr] of [
    ['tcp', DomusAddr.tcp('127.0.0.1', 0)],
    ['unix', DomusAddr.socket(path.join(dir, 'rate.sock'))],
  ]) {
    for (const concurrency of concurrencies) {
      const rate = await measure(addr, concurrency);
      console.log(
        `${name.padEnd(5)} concurrency ${String(concurrency).padStart(2)}: ${rate.completed.toFixed(0).padStart(6)} handshakes/s`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
