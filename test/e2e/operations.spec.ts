import tls from 'node:tls';
import {
  AureliaError,
  DomusAddr,
  ErrorId,
  JsonCodec,
  loadAuthMaterial,
  type Domus,
  type DomusReportingEvent,
  type Taberna,
} from '../../lib/index.js';
import { rejection } from '../support/expect.js';
import { FaultProxy } from '../support/proxy.js';
import { makeTestPki } from '../support/pki.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';

interface Note {
  n: number;
  pad?: string;
}
const codec = new JsonCodec<Note>();

function acceptAll(taberna: Taberna<Note>, seen: number[] = []) {
  void (async () => {
    try {
      for await (const request of taberna) {
        seen.push(request.message.n);
        request.accept();
      }
    } catch {
      // closed with the domus
    }
  })();
  return seen;
}

/** The fingerprint of the certificate a domus presents to a new connection. */
async function presentedFingerprint(domus: Domus, client: tls.SecureContext): Promise<string> {
  const addr = domus.localAddr;
  return new Promise<string>((resolve, reject) => {
    const socket = tls.connect({
      host: addr.host as string,
      port: addr.port as number,
      secureContext: client,
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

describe('live configuration', () => {
  let mesh: TestMesh;
  let alpha: Domus;
  let beta: Domus;
  afterEach(() => mesh.close());

  beforeEach(async () => {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha');
    beta = await mesh.add('beta', { config: fastConfig((b) => b.tabernaAcceptQueueSize(64)) });
  });

  it('applies a valid update at once and reports the changed fields', async () => {
    const reloaded = firstMatch(
      alpha.reporting.events$,
      (e: DomusReportingEvent) => e.type === 'ConfigReloaded',
      'ConfigReloaded',
    );
    const next = alpha.config.update({ maxPayloadLen: 64, keepaliveIntervalMs: 2000 });
    expect(next.maxPayloadLen).toBe(64);
    expect(alpha.config.snapshot().keepaliveIntervalMs).toBe(2000);
    expect(await reloaded).toMatchObject({
      changed: expect.arrayContaining(['maxPayloadLen', 'keepaliveIntervalMs']),
    });
    await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
    const err = await rejection(alpha.send(codec, 10n, { n: 1, pad: 'x'.repeat(100) }));
    expect(err.kind).toBe(ErrorId.EncodeFailure);
    expect(err.message).toContain('maxPayloadLen 64');
  });

  it('refuses an invalid update with InvalidConfig and changes nothing', () => {
    const before = alpha.config.snapshot();
    const err = (() => {
      try {
        alpha.config.update({ sendTimeoutMs: 100, callisConnectTimeoutMs: 5000 });
      } catch (e) {
        return e as AureliaError;
      }
      throw new Error('the update was accepted');
    })();
    expect(err.kind).toBe(ErrorId.InvalidConfig);
    expect(err.message).toContain('callisConnectTimeoutMs');
    expect(alpha.config.snapshot()).toBe(before);
    expect(() => alpha.config.update({ sendQueueSize: 0 })).toThrow(/sendQueueSize/);
  });

  it('a shrunk send queue refuses new sends without dropping those already admitted', async () => {
    const taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
    const held = Array.from({ length: 6 }, (_, n) => alpha.send(codec, 10n, { n }));
    await eventually(() => alpha.reporting.snapshot().messagesSent === 6, 'six sends in flight');
    alpha.config.update({ sendQueueSize: 2 });
    const refused = await rejection(alpha.send(codec, 10n, { n: 99 }));
    expect(refused.kind).toBe(ErrorId.LocalQueueFull);
    const seen = acceptAll(taberna);
    await Promise.all(held);
    expect(seen.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
    // Once the lane drained below the new size, sends are admitted again.
    await alpha.send(codec, 10n, { n: 7 });
  });
});

describe('reporting events', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('reports a failed dial, a lane overrun and backpressure on a stalled link', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', {
      config: fastConfig((b) =>
        b.sendQueueSize(32).sendTimeoutMs(1500).callisConnectTimeoutMs(1000),
      ),
    });
    const beta = await mesh.add('beta');
    const events: DomusReportingEvent[] = [];
    alpha.reporting.events$.subscribe((e) => events.push(e));

    mesh.resolver.insert(11n, DomusAddr.tcp('127.0.0.1', 1));
    await rejection(alpha.send(codec, 11n, { n: 0 }));
    expect(events.find((e) => e.type === 'PeerDialFailed')).toMatchObject({
      address: 'tls://127.0.0.1:1',
      attempt: 1,
    });

    acceptAll(await beta.taberna(10n, codec));
    const proxy = await FaultProxy.start({
      host: '127.0.0.1',
      port: beta.localAddr.port as number,
    });
    try {
      mesh.resolver.insert(10n, DomusAddr.tcp('127.0.0.1', proxy.port));
      await alpha.send(codec, 10n, { n: 0 }); // connected
      proxy.pause();
      const pad = 'y'.repeat(512 * 1024);
      const stuck = Array.from({ length: 32 }, (_, n) =>
        alpha.send(codec, 10n, { n, pad }).then(
          () => 'sent',
          (e: unknown) => e,
        ),
      );
      expect((await rejection(alpha.send(codec, 10n, { n: 33 }))).kind).toBe(
        ErrorId.LocalQueueFull,
      );
      await eventually(
        () => events.some((e) => e.type === 'BackpressureTriggered'),
        'BackpressureTriggered',
      );
      expect(events.find((e) => e.type === 'OutboundQueueOverrun')).toMatchObject({
        capacity: 32,
      });
      proxy.forward();
      const outcomes = await Promise.all(stuck);
      expect(outcomes.every((o) => o === undefined || o === 'sent')).toBe(true);
    } finally {
      await proxy.close();
    }
  });
});

describe('certificate rotation', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('rotates to a new CA while traffic flows without failing a send', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', { config: fastConfig((b) => b.sendQueueSize(1024)) });
    const beta = await mesh.add('beta', {
      config: fastConfig((b) => b.tabernaAcceptQueueSize(1024)),
    });
    const seen = acceptAll(await beta.taberna(10n, codec));
    const proxy = await FaultProxy.start({
      host: '127.0.0.1',
      port: beta.localAddr.port as number,
    });
    try {
      mesh.resolver.insert(10n, DomusAddr.tcp('127.0.0.1', proxy.port));
      const reloads: DomusReportingEvent[] = [];
      beta.reporting.events$.subscribe((e) => e.type === 'AuthReloaded' && reloads.push(e));

      const next = await makeTestPki({ commonName: 'Aurelia Rotated CA' });
      const oldCa = mesh.pki.ca.certPem;
      const newAlpha = await next.node('alpha');
      const newBeta = await next.node('beta');
      const oldFingerprint = await presentedFingerprint(
        beta,
        loadAuthMaterial((await mesh.pki.node('gamma')).auth()).secureContext,
      );

      const sends: Promise<unknown>[] = [];
      let n = 0;
      const burst = () => {
        for (let i = 0; i < 50; i++) sends.push(alpha.send(codec, 10n, { n: n++ }));
      };
      burst();
      // Step 1: both trust old and new CAs. Step 2: both present new certificates.
      await alpha.reloadAuth((await mesh.pki.node('alpha')).auth(next.ca.certPem));
      await beta.reloadAuth((await mesh.pki.node('beta')).auth(next.ca.certPem));
      burst();
      await alpha.reloadAuth(newAlpha.auth(oldCa));
      await beta.reloadAuth(newBeta.auth(oldCa));
      burst();
      proxy.cut(); // forces new callis, which must handshake with the new material
      burst();
      await Promise.all(sends);
      expect(seen.length).toBe(n);
      expect(new Set(seen).size).toBe(n);
      expect(reloads).toHaveLength(2);

      const newFingerprint = await presentedFingerprint(
        beta,
        loadAuthMaterial((await next.node('gamma')).auth()).secureContext,
      );
      expect(newFingerprint).not.toBe(oldFingerprint);
      expect(proxy.accepted).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it('refuses material that is invalid or changes the identity, keeping the old one', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const other = await mesh.pki.node('intruder');
    const err = await rejection(alpha.reloadAuth(other.auth()));
    expect(err.kind).toBe(ErrorId.InvalidConfig);
    expect(err.message).toContain('identity');
    const expired = await mesh.pki.expired('alpha');
    expect((await rejection(alpha.reloadAuth(expired.auth()))).kind).toBe(ErrorId.InvalidConfig);
    const beta = await mesh.add('beta');
    const seen = acceptAll(await beta.taberna(10n, codec));
    mesh.route(10n, 'beta');
    await alpha.send(codec, 10n, { n: 1 });
    expect(seen).toEqual([1]);
  });
});
