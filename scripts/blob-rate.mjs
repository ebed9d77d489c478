#!/usr/bin/env node
// Measures blob throughput between two domus on loopback (TCP and a Unix socket) for several
// blob windows, next to a raw node:tls bulk copy over the same transport in the same run.
// Used to choose DEFAULT_BLOB_WINDOWS; a measurement, not a test.
//
// Configurations are interleaved round by round and the median of the rounds is reported, so a
// machine whose load drifts during the run biases no configuration in particular.
//
// Usage: node scripts/blob-rate.mjs [--mib 256] [--rounds 3] [--windows 64x16,256x16,1024x8]
//        [--transports tcp,socket]
import { Buffer } from 'node:buffer';
import console from 'node:console';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import { URL } from 'node:url';
import { parseArgs } from 'node:util';

import './register-ts.mjs';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    transports: { type: 'string', default: 'tcp,socket' },
    windows: { type: 'string', default: '64x16,256x8,256x16,256x32,1024x8' },
  },
});
const totalBytes = Number(values.mib) * 1024 * 1024;
const windows = values.windows.split(',').map((w) => {
  const [kib, ack] = w.split('x').map(Number);
  return { chunkSize: kib * 1024, ackWindow: ack };
});

const lib = (file) => new URL(`../lib/${file}`, import.meta.url).href;
const index = await import(lib('index.ts'));
const { createCertificateAuthority, issueNodeCertificate } = await import(lib('cli/pki.ts'));
const { Aurelia, DomusAddr, DomusConfigBuilder, JsonCodec, SendOptions, SimpleResolver } = index;

const ca = await createCertificateAuthority({ commonName: 'blob-rate CA' });
const nodes = {
  alpha: await issueNodeCertificate(ca, { name: 'alpha' }),
  beta: await issueNodeCertificate(ca, { name: 'beta' }),
};
const auth = (node) => ({
  format: 'pem',
  caPem: Buffer.from(node.caPem),
  certPem: Buffer.from(node.chainPem),
  pkcs8KeyPem: Buffer.from(node.keyPem),
});
const dir = mkdtempSync(path.join(tmpdir(), 'aur-blob-'));
const block = Buffer.alloc(1024 * 1024, 0x5a);

function source() {
  let left = totalBytes;
  return new Readable({
    read() {
      if (left <= 0) return this.push(null);
      left -= block.length;
      this.push(block);
    },
  });
}

// Throughput in MiB/s, and CPU milliseconds (user + system, both ends) per MiB moved: the latter
// hardly depends on what else the machine is doing.
function figures(seconds, cpu) {
  const mib = totalBytes / 1024 / 1024;
  return { rate: mib / seconds, cpu: (cpu.user + cpu.system) / 1000 / mib };
}

async function aureliaRun(transport, window) {
  const aurelia = new Aurelia();
  const resolver = new SimpleResolver();
  const config = new DomusConfigBuilder().blobWindow(window).build();
  const addr = (name) =>
    transport === 'tcp'
      ? DomusAddr.tcp('127.0.0.1', 0)
      : DomusAddr.socket(path.join(dir, `${name}-${window.chunkSize}-${window.ackWindow}.sock`));
  const alpha = await aurelia.domusBuilder(config, addr('a'), auth(nodes.alpha), resolver).build();
  const beta = await aurelia.domusBuilder(config, addr('b'), auth(nodes.beta), resolver).build();
  const codec = new JsonCodec();
  const taberna = await beta.taberna(1n, codec);
  resolver.insert(1n, beta.localAddr);
  try {
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    const sending = alpha.send(codec, 1n, { file: 'x' }, SendOptions.BLOB);
    const request = await taberna.next(5000);
    const receiver = request.blobReceiver;
    request.accept();
    const { sender } = await sending;
    let received = 0;
    const reading = (async () => {
      for await (const part of receiver) received += part.length;
    })();
    await pipeline(source(), sender);
    await reading;
    const seconds = (performance.now() - started) / 1000;
    if (received !== totalBytes) throw new Error(`received ${received} of ${totalBytes} bytes`);
    return figures(seconds, process.cpuUsage(cpuStarted));
  } finally {
    await aurelia.shutdown();
  }
}

async function rawRun(transport) {
  const { loadAuthMaterial } = await import(lib('engine/auth.ts'));
  const server = tls.createServer({
    SNICallback: (_name, cb) => cb(null, loadAuthMaterial(auth(nodes.beta)).secureContext),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  });
  const sock = path.join(dir, 'raw.sock');
  if (transport === 'tcp') server.listen(0, '127.0.0.1');
  else server.listen(sock);
  await once(server, 'listening');
  let received = 0;
  const done = new Promise((resolve) =>
    server.once('secureConnection', (socket) => {
      socket.on('data', (part) => {
        received += part.length;
      });
      socket.on('end', () => {
        socket.end();
        resolve();
      });
    }),
  );
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  const client = tls.connect({
    ...(transport === 'tcp' ? { host: '127.0.0.1', port: server.address().port } : { path: sock }),
    servername: 'localhost',
    secureContext: loadAuthMaterial(auth(nodes.alpha)).secureContext,
    checkServerIdentity: () => undefined,
  });
  await once(client, 'secureConnect');
  await pipeline(source(), client);
  await done;
  const seconds = (performance.now() - started) / 1000;
  server.close();
  if (received !== totalBytes) throw new Error(`raw copy received ${received} bytes`);
  return figures(seconds, process.cpuUsage(cpuStarted));
}

const rounds = Number(values.rounds);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  `node ${process.version}, ${values.mib} MiB per run, median of ${rounds} interleaved rounds, both ends in one process`,
);
try {
  for (const transport of values.transports.split(',')) {
    const raws = [];
    const rates = windows.map(() => []);
    for (let round = 0; round < rounds; round++) {
      raws.push(await rawRun(transport));
      for (const [i, window] of windows.entries())
        rates[i].push(await aureliaRun(transport, window));
    }
    const line = (label, runs, raw) => {
      const rate = median(runs.map((r) => r.rate));
      const cpu = median(runs.map((r) => r.cpu));
      const rates = runs.map((r) => r.rate);
      const spread = `${Math.min(...rates).toFixed(0)}–${Math.max(...rates).toFixed(0)}`;
      const versus = raw
        ? `${((rate / raw.rate) * 100).toFixed(0).padStart(3)} % of raw, cpu ${(cpu / raw.cpu).toFixed(2)}x`
        : '';
      console.log(
        `${transport.padEnd(6)} ${label.padEnd(24)} ${rate.toFixed(0).padStart(5)} MiB/s (${spread})  ${cpu.toFixed(2)} cpu-ms/MiB  ${versus}`,
      );
      return { rate, cpu };
    };
    const raw = line('raw node:tls copy', raws);
    for (const [i, window] of windows.entries()) {
      line(`blob ${window.chunkSize / 1024} KiB x ${window.ackWindow}`, rates[i], raw);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
