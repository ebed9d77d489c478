// Handshake fairness: silent connections, whether before TLS or after it without a hello, cannot
// keep a newcomer out; the oldest silent one is cut for it, over TCP and over Unix sockets.
import type net from 'node:net';
import { AureliaError, ErrorId, JsonCodec, type Domus, type DomusConfig } from '../../lib/index.js';
import { acceptAll } from '../support/accept.js';
import { TestMesh, fastConfig, type TestTransport } from '../support/mesh.js';
import { Cleanup, dialAs, rawConnect, within } from '../support/transport.js';

interface Note {
  n: number;
}
const codec = new JsonCodec<Note>();
const TABERNA = 10n;

/** Default handshake limits (64 in total, 3 per source) and a long handshake deadline. */
function victimConfig(): DomusConfig {
  return fastConfig((b) => b.tcpHandshakeTimeoutMs(30_000).socketHandshakeTimeoutMs(30_000));
}

/** Counts connections the domus closed. */
function closedCount(sockets: readonly net.Socket[]): number {
  return sockets.filter((s) => s.closed).length;
}

describe.each<TestTransport>(['tcp', 'socket'])('handshake fairness over %s', (transport) => {
  let mesh: TestMesh;
  let cleanup: Cleanup;
  let victim: Domus;

  beforeEach(async () => {
    cleanup = new Cleanup();
    mesh = await TestMesh.create();
    victim = await mesh.add('victim', { transport, config: victimConfig() });
    acceptAll(await victim.taberna(TABERNA, codec));
    mesh.route(TABERNA, 'victim');
  });
  afterEach(async () => {
    await cleanup.run();
    await mesh.close();
  });

  it('cuts the oldest silent connection for a newcomer when 64 silent sockets fill every slot', async () => {
    const silent: net.Socket[] = [];
    // Over TCP: 3 sockets from each of 22 loopback sources, the newcomer's own among them.
    for (let i = 0; i < 66; i++) {
      const source = transport === 'tcp' ? `127.0.0.${1 + Math.floor(i / 3)}` : undefined;
      silent.push(await rawConnect(cleanup, victim.localAddr, source));
    }
    const newcomer = await mesh.add('newcomer', { transport });
    await within(newcomer.send(codec, TABERNA, { n: 1 }), 4000, 'the newcomer’s send');
    expect(closedCount(silent)).toBeGreaterThanOrEqual(1);
  });

  it('cuts authenticated connections that never say hello for a newcomer', async () => {
    const node = await mesh.pki.node('mallory');
    const quiet: net.Socket[] = [];
    // Over TCP all come from 127.0.0.1 and hold its 3 slots; over a Unix socket each is a source.
    const count = transport === 'tcp' ? 3 : 64;
    for (let i = 0; i < count; i++) {
      quiet.push((await dialAs(cleanup, victim.localAddr, node)).socket);
    }
    const newcomer = await mesh.add('newcomer', { transport });
    await within(newcomer.send(codec, TABERNA, { n: 1 }), 4000, 'the newcomer’s send');
    expect(closedCount(quiet)).toBeGreaterThanOrEqual(1);
  });
});

describe('handshake fairness across sources', () => {
  it('thins the source holding the most slots first', async () => {
    const cleanup = new Cleanup();
    const mesh = await TestMesh.create();
    try {
      const victim = await mesh.add('victim', {
        config: fastConfig((b) =>
          b
            .inboundHandshakeLimitTotal(8)
            .inboundHandshakeLimitPerPeer(6)
            .tcpHandshakeTimeoutMs(30_000),
        ),
      });
      const crowd: net.Socket[] = [];
      for (let i = 0; i < 6; i++)
        crowd.push(await rawConnect(cleanup, victim.localAddr, '127.0.0.2'));
      const few: net.Socket[] = [];
      for (let i = 0; i < 2; i++)
        few.push(await rawConnect(cleanup, victim.localAddr, '127.0.0.3'));
      const errors: AureliaError[] = [];
      const sub = victim.reporting.errors$.subscribe((err) => errors.push(err));
      acceptAll(await victim.taberna(TABERNA, codec));
      mesh.route(TABERNA, 'victim');
      const newcomer = await mesh.add('newcomer');
      await within(newcomer.send(codec, TABERNA, { n: 1 }), 4000, 'the newcomer’s send');
      sub.unsubscribe();
      expect(closedCount(crowd)).toBeGreaterThanOrEqual(1);
      expect(closedCount(few)).toBe(0);
      expect(
        errors.some((e) => e.kind === ErrorId.LocalQueueFull && /sent nothing/.test(e.message)),
      ).toBe(true);
    } finally {
      await cleanup.run();
      await mesh.close();
    }
  });
});
