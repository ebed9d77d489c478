// Unix socket files: their mode, stale files left by a crash, paths held by a live listener.
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';

import { beforeAll, describe, expect, it } from '@jest/globals';

import { DomusAddr } from '../../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { TlsListener } from '../../../lib/engine/transport/tls-listener.js';
import { makeTestPki, type TestPki } from '../../support/pki.js';
import {
  cleanupAfterEach,
  dialAs,
  material,
  socketDirForFile,
  startListener,
  testLimits,
} from '../../support/transport.js';

let pki: TestPki;
const sockets = socketDirForFile();
const cleanup = cleanupAfterEach();
let counter = 0;

beforeAll(async () => {
  pki = await makeTestPki();
});

const freshPath = () => sockets.path(`u${++counter}`);

async function listenRejection(addr: DomusAddr): Promise<AureliaError> {
  const outcome = await TlsListener.listen({
    addr,
    secureContext: material(await pki.node('alpha')).secureContext,
    limits: () => testLimits(),
    onConnection: (conn) => conn.socket.destroy(),
    onRefused: () => undefined,
  }).then(
    (listener) => listener.close().then(() => undefined),
    (err: unknown) => err,
  );
  if (!(outcome instanceof AureliaError)) {
    throw new Error(`expected listen to reject with an AureliaError, got ${String(outcome)}`);
  }
  return outcome;
}

describe('Unix socket listener', () => {
  it('creates the socket file with mode 0600 and leaves no staging file behind', async () => {
    const path = freshPath();
    await startListener(cleanup, DomusAddr.socket(path), await pki.node('alpha'));
    const stats = lstatSync(path);
    expect(stats.isSocket()).toBe(true);
    expect(stats.mode & 0o777).toBe(0o600);
    expect(readdirSync(sockets.dir).filter((name) => name.startsWith('.aurelia-'))).toEqual([]);
  });

  it('close() removes the socket file, and the path can be listened on again', async () => {
    const path = freshPath();
    const first = await startListener(cleanup, DomusAddr.socket(path), await pki.node('alpha'));
    await first.listener.close();
    expect(existsSync(path)).toBe(false);
    const second = await startListener(cleanup, DomusAddr.socket(path), await pki.node('alpha'));
    await dialAs(cleanup, second.addr, await pki.node('beta'));
    expect((await second.connections.next()).identity).toBe('spiffe://aurelia.local/beta');
  });

  it('reclaims a stale socket file nothing answers on', async () => {
    const path = freshPath();
    // A socket file whose listener is gone, as a crashed process leaves it: bind, keep a second
    // name for the socket, then close (which removes only the first name).
    const crashed = net.createServer();
    const boundPath = `${path}.orig`;
    await new Promise<void>((resolve) => crashed.listen(boundPath, resolve));
    linkSync(boundPath, path);
    await new Promise<void>((resolve) => crashed.close(() => resolve()));
    expect(lstatSync(path).isSocket()).toBe(true);

    const server = await startListener(cleanup, DomusAddr.socket(path), await pki.node('alpha'));
    await dialAs(cleanup, server.addr, await pki.node('beta'));
    expect((await server.connections.next()).identity).toBe('spiffe://aurelia.local/beta');
    expect(lstatSync(path).mode & 0o777).toBe(0o600);
  });

  it('refuses with AddressInUse naming the path when a live listener holds it, and leaves that listener working', async () => {
    const path = freshPath();
    const live = await startListener(
      cleanup,
      DomusAddr.socket(path),
      await pki.node('alpha'),
      testLimits(),
    );
    const err = await listenRejection(DomusAddr.socket(path));
    expect(err.kind).toBe(ErrorId.AddressInUse);
    expect(err.message).toContain(path);
    expect(err.message).toContain('held by a live listener');
    // The probe connection shows up on the live listener as a peer that went away.
    expect((await live.refusals.next()).err.kind).toBe(ErrorId.ConnectionLost);
    await dialAs(cleanup, live.addr, await pki.node('beta'));
    expect((await live.connections.next()).identity).toBe('spiffe://aurelia.local/beta');
  });

  it('refuses with InvalidConfig when the path exists and is not a socket, leaving the file alone', async () => {
    const path = freshPath();
    writeFileSync(path, 'precious data');
    const err = await listenRejection(DomusAddr.socket(path));
    expect(err.kind).toBe(ErrorId.InvalidConfig);
    expect(err.message).toBe(
      `cannot listen on unix://${path}: ${path} exists and is not a socket; remove it or choose another path`,
    );
    expect(readFileSync(path, 'utf8')).toBe('precious data');
  });

  it('binds a path too long for the staging name directly and still sets mode 0600', async () => {
    // A directory whose path leaves room for 'x.sock' within the 107-byte limit but not for the
    // staging directory name.
    const depth = 107 - sockets.dir.length - '/x.sock'.length;
    const dir = `${sockets.dir}/${'d'.repeat(depth - 1)}`;
    mkdirSync(dir);
    const path = `${dir}/x.sock`;
    expect(Buffer.byteLength(path)).toBe(107);
    const server = await startListener(cleanup, DomusAddr.socket(path), await pki.node('alpha'));
    expect(lstatSync(path).mode & 0o777).toBe(0o600);
    await dialAs(cleanup, server.addr, await pki.node('beta'));
    expect((await server.connections.next()).identity).toBe('spiffe://aurelia.local/beta');
    await server.listener.close();
    expect(existsSync(path)).toBe(false);
  });

  it('refuses with InvalidConfig when the directory does not exist', async () => {
    const path = `${sockets.dir}/missing-dir/x.sock`;
    const err = await listenRejection(DomusAddr.socket(path));
    expect(err.kind).toBe(ErrorId.InvalidConfig);
    expect(err.message).toContain(`unix://${path}`);
    expect(err.message).toContain('ENOENT');
  });
});

describe('TCP listener', () => {
  it('refuses with AddressInUse naming the address when the port is taken', async () => {
    const taken = await startListener(
      cleanup,
      DomusAddr.tcp('127.0.0.1', 0),
      await pki.node('alpha'),
    );
    const err = await listenRejection(taken.addr);
    expect(err.kind).toBe(ErrorId.AddressInUse);
    expect(err.message).toBe(
      `cannot listen on ${taken.addr.key}: the address is already in use by another process; stop it or listen elsewhere (EADDRINUSE)`,
    );
  });

  it('reports the real port when asked for port 0', async () => {
    const server = await startListener(
      cleanup,
      DomusAddr.tcp('127.0.0.1', 0),
      await pki.node('alpha'),
    );
    expect(server.addr.port).toBeGreaterThan(0);
    expect(server.addr.key).toBe(`tls://127.0.0.1:${server.addr.port}`);
  });
});
