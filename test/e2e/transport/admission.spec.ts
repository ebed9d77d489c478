// Handshake deadlines and admission limits: stalled clients never lock honest peers out.
import { beforeAll, describe, expect, it } from '@jest/globals';

import type { TransportKind } from '../../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { dial } from '../../../lib/engine/transport/dial.js';
import { makeTestPki, type TestPki } from '../../support/pki.js';
import {
  Cleanup,
  WAIT_MS,
  closedWithin,
  dialAs,
  listenAddr,
  material,
  rawConnect,
  startListener,
  testLimits,
  within,
  cleanupAfterEach,
  socketDirForFile,
} from '../../support/transport.js';
import { eventually } from '../../support/mesh.js';
import { countResources, expectNothingLeftSince } from '../../support/resources.js';

let pki: TestPki;
const sockets = socketDirForFile();
const cleanup = cleanupAfterEach();
let counter = 0;

beforeAll(async () => {
  pki = await makeTestPki();
});

const deadlineField = (transport: TransportKind) =>
  transport === 'tcp' ? 'tcpHandshakeTimeoutMs' : 'socketHandshakeTimeoutMs';

describe.each<TransportKind>(['tcp', 'socket'])('over %s', (transport) => {
  const addr = () => listenAddr(transport, sockets, `a${++counter}`);

  it('drops a client that connects and sends nothing at its handshake deadline', async () => {
    const server = await startListener(
      cleanup,
      addr(),
      await pki.node('alpha'),
      testLimits({ [deadlineField(transport)]: 300 }),
    );
    const startedAt = Date.now();
    const stalled = await rawConnect(cleanup, server.addr);
    const { err, source } = await server.refusals.next();
    await closedWithin(stalled);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toBe(
      `${source} did not complete the TLS handshake within 300 ms (${deadlineField(transport)}); connection dropped`,
    );
    expect(server.listener.handshakesInProgress).toBe(0);
  });

  it('refuses handshakes beyond the total limit at once and admits an honest peer after the stalled ones time out', async () => {
    const server = await startListener(
      cleanup,
      addr(),
      await pki.node('alpha'),
      // Long enough that the early dial below still finds the slots taken on a busy machine.
      testLimits({ total: 3, perPeer: 3, [deadlineField(transport)]: 3000 }),
    );
    const beta = material(await pki.node('beta')).secureContext;
    const stalled = [];
    for (let i = 0; i < 3; i++) stalled.push(await rawConnect(cleanup, server.addr));
    // The listener accepts in arrival order, so the fourth finds every slot taken.
    const excess = await rawConnect(cleanup, server.addr);
    const refused = await server.refusals.next();
    expect(refused.err.kind).toBe(ErrorId.LocalQueueFull);
    expect(refused.err.message).toContain(
      '3 handshakes already in progress (inboundHandshakeLimitTotal 3)',
    );
    await closedWithin(excess);

    const early = await dial(server.addr, { secureContext: beta, timeoutMs: WAIT_MS }).then(
      (conn) => {
        conn.socket.destroy();
        return undefined;
      },
      (err: unknown) => err,
    );
    expect(AureliaError.is(early, ErrorId.PeerUnavailable)).toBe(true);
    expect((await server.refusals.next()).err.kind).toBe(ErrorId.LocalQueueFull);

    const timeouts = await server.refusals.take(3);
    expect(timeouts.map((r) => r.err.kind)).toEqual([
      ErrorId.PeerUnavailable,
      ErrorId.PeerUnavailable,
      ErrorId.PeerUnavailable,
    ]);
    await Promise.all(stalled.map((socket) => closedWithin(socket)));

    const honest = await dialAs(cleanup, server.addr, await pki.node('beta'));
    expect(honest.identity).toBe('spiffe://aurelia.local/alpha');
    expect((await server.connections.next()).identity).toBe('spiffe://aurelia.local/beta');
  });

  it('reads the limits live: lowering and raising the total applies to the next connection', async () => {
    const server = await startListener(
      cleanup,
      addr(),
      await pki.node('alpha'),
      testLimits({ total: 1 }),
    );
    await rawConnect(cleanup, server.addr);
    const second = await rawConnect(cleanup, server.addr);
    expect((await server.refusals.next()).err.message).toContain('(inboundHandshakeLimitTotal 1)');
    await closedWithin(second);
    server.limits = testLimits({ total: 2 });
    const honest = await dialAs(cleanup, server.addr, await pki.node('beta'));
    expect(honest.identity).toBe('spiffe://aurelia.local/alpha');
    await server.connections.next();
  });

  it('close() destroys connections still handshaking but leaves handed-over connections working', async () => {
    const server = await startListener(cleanup, addr(), await pki.node('alpha'));
    const client = await dialAs(cleanup, server.addr, await pki.node('beta'));
    const accepted = await server.connections.next();
    const stalled = await rawConnect(cleanup, server.addr);
    // The stalled socket is accepted (and handshaking) once the listener has a slot taken.
    await eventually(
      () => server.listener.handshakesInProgress === 1,
      'the stalled connection to be accepted',
    );
    await server.listener.close();
    await closedWithin(stalled);
    expect(server.refusals.size).toBe(0);
    const echoed = within(
      new Promise<string>((resolve) =>
        client.socket.once('data', (d: Buffer) => resolve(d.toString())),
      ),
      WAIT_MS,
      'bytes over the handed-over connection',
    );
    accepted.socket.write('still here');
    expect(await echoed).toBe('still here');
  });
});

describe('clean-up', () => {
  it.each<TransportKind>(['tcp', 'socket'])(
    'over %s a closed listener and its closed connections leave no handle or timer behind',
    async (transport) => {
      const before = countResources();
      const local = new Cleanup();
      const server = await startListener(
        local,
        listenAddr(transport, sockets, `c${++counter}`),
        await pki.node('alpha'),
      );
      const client = await dialAs(local, server.addr, await pki.node('beta'));
      await server.connections.next();
      await rawConnect(local, server.addr);
      await eventually(
        () => server.listener.handshakesInProgress === 1,
        'the stalled connection to be accepted',
      );
      await local.run();
      await closedWithin(client.socket);
      await expectNothingLeftSince(before);
    },
  );
});

describe('per-source limit over TCP', () => {
  it('one source cannot take every slot: another source still gets in while it stalls', async () => {
    const server = await startListener(
      cleanup,
      listenAddr('tcp', sockets),
      await pki.node('alpha'),
      testLimits({ total: 8, perPeer: 2, tcpHandshakeTimeoutMs: 60_000 }),
    );
    // Linux routes all of 127.0.0.0/8 to loopback, so 127.0.0.2 is another source.
    await rawConnect(cleanup, server.addr, '127.0.0.2');
    await rawConnect(cleanup, server.addr, '127.0.0.2');
    const third = await rawConnect(cleanup, server.addr, '127.0.0.2');
    const refused = await server.refusals.next();
    expect(refused.err.kind).toBe(ErrorId.LocalQueueFull);
    expect(refused.source).toMatch(/^tls:\/\/127\.0\.0\.2:\d+$/);
    expect(refused.err.message).toContain(
      '2 handshakes from 127.0.0.2 already in progress (inboundHandshakeLimitPerPeer 2)',
    );
    await closedWithin(third);

    const honest = await dialAs(cleanup, server.addr, await pki.node('beta'));
    expect(honest.identity).toBe('spiffe://aurelia.local/alpha');
    const accepted = await server.connections.next();
    expect(accepted.remoteAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    expect(server.listener.handshakesInProgress).toBe(2);
  });
});
