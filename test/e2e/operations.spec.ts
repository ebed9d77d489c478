import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { config as rxjsConfig, lastValueFrom, map, toArray } from 'rxjs';
import {
  AureliaError,
  BlobReceiver,
  DnsSrvResolver,
  DomusAddr,
  ErrorId,
  JsonCodec,
  SendOptions,
  type Domus,
  type DomusConfig,
  type DomusReportingEvent,
  type Taberna,
} from '../../lib/index.js';
import {
  A2_MESSAGE_TYPE_BASE,
  A3_MESSAGE_TYPE_BASE,
  DEFAULT_BLOB_WINDOWS,
  MessagePriorityClass,
  loadAuthMaterial,
} from '../../lib/engine/index.js';
import { TestDns } from '../support/dns.js';
import { acceptAll } from '../support/accept.js';
import { expectElapsedBetween, rejection } from '../support/expect.js';
import { LogCapture } from '../support/logs.js';
import { unusedPort } from '../support/ports.js';
import { FaultProxy } from '../support/proxy.js';
import { makeTestPki } from '../support/pki.js';
import { presentedFingerprint } from '../support/secret-mount.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';

interface Note {
  n: number;
  pad?: string;
}
const codec = new JsonCodec<Note>();

/** Sends `data` as a blob to taberna 10 and accepts it there; resolves with the bytes received. */
async function blobRoundTrip(from: Domus, taberna: Taberna<Note>, data: Buffer): Promise<number> {
  const sending = from.send(codec, 10n, { n: 1 }, SendOptions.BLOB);
  const request = await taberna.next(5000);
  request.accept();
  let received = 0;
  const drained = (async () => {
    for await (const part of request.blobReceiver as BlobReceiver)
      received += (part as Buffer).length;
  })();
  const outcome = await sending;
  if (outcome.kind !== 'blob') throw new Error('expected a blob sender');
  outcome.sender.end(data);
  await drained;
  return received;
}

/**
 * The client certificates of the primary callis `domus` accepted and holds now, read from their
 * TLS sockets: the domus does not report certificates, so this looks at its inbound sessions.
 */
function inboundPeerCertificates(domus: Domus): tls.PeerCertificate[] {
  const internals = domus as unknown as {
    inbound: {
      sessions: Map<string, { current?: { connection: { socket: tls.TLSSocket } } }>;
    };
  };
  const out: tls.PeerCertificate[] = [];
  for (const session of internals.inbound.sessions.values()) {
    const socket = session.current?.connection.socket;
    if (socket) out.push(socket.getPeerCertificate());
  }
  return out;
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
    expect(seen.map((m) => m.n).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
    // Once the lane drained below the new size, sends are admitted again.
    await alpha.send(codec, 10n, { n: 7 });
  });
});

describe('live configuration takes effect', () => {
  let mesh: TestMesh;
  let proxy: FaultProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await mesh.close();
  });

  /** Alpha and beta, alpha reaching beta's taberna 10 through a fault proxy. */
  async function proxied(betaConfig = fastConfig((b) => b.tabernaAcceptQueueSize(64))) {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta', { config: betaConfig });
    const seen = acceptAll(await beta.taberna(10n, codec));
    proxy = await mesh.proxy('beta', 10n);
    await alpha.send(codec, 10n, { n: 0 }); // connected
    return { alpha, beta, seen, proxy };
  }

  it('a message in flight when the receiver lowers maxPayloadLen fails at once with EncodeFailure, the callis stays up', async () => {
    const { alpha, beta, seen, proxy } = await proxied();
    const betaErrors: AureliaError[] = [];
    beta.reporting.errors$.subscribe((e) => betaErrors.push(e));
    const alphaEvents: DomusReportingEvent[] = [];
    alpha.reporting.events$.subscribe((e) => alphaEvents.push(e));
    proxy.pause(); // the big message leaves alpha under the old limit and waits in the proxy
    const big = alpha.send(codec, 10n, { n: 1, pad: 'z'.repeat(2 * 1024 * 1024) });
    await eventually(() => alpha.reporting.snapshot().messagesSent === 2, 'the big message sent');
    beta.config.update({ maxPayloadLen: 64 * 1024 });
    proxy.forward();
    const err = await rejection(big);
    expect(err.kind).toBe(ErrorId.EncodeFailure);
    expect(err.message).toMatch(
      /^message \d+ from spiffe:\/\/aurelia.local\/alpha carries 2097\d{3} payload bytes/,
    );
    expect(err.message).toContain("over the receiving domus's maxPayloadLen 65536");
    // The same callis carries the next message: no violation, no redial, no replay.
    await alpha.send(codec, 10n, { n: 2 });
    expect(seen.map((m) => m.n)).toEqual([0, 2]);
    for (const domus of [alpha, beta]) {
      expect(domus.reporting.snapshot()).toMatchObject({ protocolViolations: 0, callisOpened: 1 });
    }
    expect(alpha.reporting.snapshot()).toMatchObject({ dialAttempts: 1, sendsFailed: 1 });
    expect(proxy.accepted).toBe(1);
    expect(alphaEvents.filter((e) => e.type === 'PrimaryCallisDisconnected')).toEqual([]);
    await eventually(() => betaErrors.length > 0, "the refusal on beta's error feed");
    expect(betaErrors[0]!.kind).toBe(ErrorId.EncodeFailure);
  });

  it('a shorter keepalive interval applies to a live callis at once: a stalled link is found half-open', async () => {
    const { alpha, proxy } = await proxied();
    expect(alpha.config.snapshot().keepaliveIntervalMs).toBe(15_000);
    const halfOpen = firstMatch(
      alpha.reporting.events$,
      (e: DomusReportingEvent) => e.type === 'PrimaryCallisDisconnected',
      'the dialed callis declared half-open',
      // Far below the 45 s the timer armed with the old 15 s interval would take.
      5000,
    );
    proxy.stall();
    alpha.config.update({ keepaliveIntervalMs: 100 });
    const event = await halfOpen;
    expect(event).toMatchObject({
      direction: 'outbound',
      reason: expect.stringContaining('half-open'),
    });
  });

  it('a live sendTimeoutMs bounds the next send', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    await beta.taberna(10n, codec); // never asks for its requests
    mesh.route(10n, 'beta');
    expect(alpha.config.snapshot().sendTimeoutMs).toBe(5000);
    alpha.config.update({ sendTimeoutMs: 300, callisConnectTimeoutMs: 300 });
    const started = Date.now();
    const err = await rejection(alpha.send(codec, 10n, { n: 1 }));
    expect(err.kind).toBe(ErrorId.SendTimeout);
    expectElapsedBetween(started, 300, 4000); // not the 5000 ms in force before
  });

  it('live acceptTimeoutMs and tabernaAcceptQueueSize: a second request finds the queue full and is refused early', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta', {
      config: fastConfig((b) => b.tabernaAcceptQueueSize(64).acceptTimeoutMs(20_000)),
    });
    const taberna = await beta.taberna(10n, codec); // asks for nothing until the end
    mesh.route(10n, 'beta');
    beta.config.update({ tabernaAcceptQueueSize: 1, acceptTimeoutMs: 300 });
    const first = alpha.send(codec, 10n, { n: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const started = Date.now();
    const err = await rejection(alpha.send(codec, 10n, { n: 2 }));
    expect(err.kind).toBe(ErrorId.TabernaBusy); // with 64 places it would simply be queued
    expect(err.message).toContain('had no room for 300 ms');
    expectElapsedBetween(started, 300, 4000); // long before alpha's 5 s deadline
    (await taberna.next(1000)).accept(); // the queued one is still there
    expect(await first).toBeUndefined();
  });

  it('a new blob callis proposes the blob window in force when it opens', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    const taberna = await beta.taberna(10n, codec);
    const opened: DomusReportingEvent[] = [];
    beta.reporting.events$.subscribe((e) => e.type === 'BlobCallisConnected' && opened.push(e));
    const blobOnce = async () => {
      expect(await blobRoundTrip(alpha, taberna, Buffer.alloc(40_000, 1))).toBe(40_000);
    };
    mesh.route(10n, 'beta');
    await blobOnce();
    alpha.config.update({ tcpBlobWindow: { chunkSize: 8192, ackWindow: 4 } });
    // Through another address alpha has another outbound peer, whose blob callis is new.
    proxy = await mesh.proxy('beta', 10n);
    await blobOnce();
    await eventually(() => opened.length === 2, 'two blob callis on beta');
    expect(opened.map((e) => (e as { blobWindow?: unknown }).blobWindow)).toEqual([
      {
        chunkSize: DEFAULT_BLOB_WINDOWS.tcp.chunkSize,
        ackWindow: DEFAULT_BLOB_WINDOWS.tcp.ackWindow,
      },
      { chunkSize: 8192, ackWindow: 4 },
    ]);
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
    const proxy = await mesh.proxy('beta', 10n);
    try {
      await alpha.send(codec, 10n, { n: 0 }); // connected
      // 16 MiB wait behind the paused proxy: give them a deadline a busy machine still meets.
      alpha.config.update({ sendTimeoutMs: 30_000 });
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
      expect(outcomes.filter((o) => o !== 'sent')).toEqual([]);
    } finally {
      await proxy.close();
    }
  });
});

describe('reporting counters', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('counts a local send as received, so accepted plus rejected never exceed received', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const taberna = await alpha.taberna(10n, codec);
    void (async () => {
      for await (const request of taberna) {
        if (request.message.n % 2 === 0) request.accept();
        else request.reject();
      }
    })().catch(() => {});
    await alpha.send(codec, 10n, { n: 0 });
    await rejection(alpha.send(codec, 10n, { n: 1 }));
    await alpha.send(codec, 10n, { n: 2 });
    expect(alpha.reporting.snapshot()).toMatchObject({
      messagesSent: 3,
      messagesReceived: 3,
      messagesAccepted: 2,
      messagesRejected: 1,
      sendsAccepted: 2,
      sendsFailed: 1,
    });
  });

  it('counts an identity mismatch and the send it failed', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    await beta.taberna(10n, codec);
    const message = {
      priority: MessagePriorityClass.A3,
      msgType: A3_MESSAGE_TYPE_BASE,
      payload: Buffer.from('{}'),
      to: 10n,
      address: beta.localAddr,
    } as const;
    const err = await rejection(
      alpha.dispatch({ ...message, expectedIdentity: 'spiffe://aurelia.local/gamma' }),
    );
    expect(err.kind).toBe(ErrorId.AddressMismatch);
    expect(err.message).toContain('spiffe://aurelia.local/beta');
    const metrics = alpha.reporting.snapshot();
    expect(metrics.identityMismatches).toBe(1);
    expect(metrics.sendsFailed).toBe(1);
    // The check runs where the message would be written, on the callis beta answered: the dial
    // itself succeeded, and beta's taberna never saw the message.
    expect(metrics.dialFailures).toBe(0);
    expect(beta.reporting.snapshot().messagesReceived).toBe(0);
  });

  it('counts an A2 lane overrun apart from the A3 lane', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', { config: fastConfig((b) => b.sendQueueSize(2)) });
    const beta = await mesh.add('beta', { config: fastConfig((b) => b.tabernaAcceptQueueSize(8)) });
    await beta.taberna(10n, codec); // decides nothing: every message stays admitted
    mesh.route(10n, 'beta');
    const a2 = (n: number) =>
      alpha.dispatch({
        priority: MessagePriorityClass.A2,
        msgType: A2_MESSAGE_TYPE_BASE + 1,
        payload: Buffer.from(String(n)),
        to: 10n,
      });
    const held = [a2(1), a2(2)].map((p) => p.catch(() => undefined));
    const err = await rejection(a2(3));
    expect(err.kind).toBe(ErrorId.LocalQueueFull);
    expect(alpha.reporting.snapshot()).toMatchObject({ queueOverrunsA2: 1, queueOverrunsA3: 0 });
    await mesh.close();
    await Promise.all(held);
  });

  it('gauges the blob callis a blob send opens, on both ends', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    const taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
    expect(await blobRoundTrip(alpha, taberna, Buffer.alloc(100_000, 3))).toBe(100_000);
    for (const domus of [alpha, beta]) {
      expect(domus.reporting.snapshot()).toMatchObject({
        currentPrimaryCallis: 1,
        currentBlobCallis: 1,
        peakBlobCallis: 1,
        callisOpened: 2,
      });
      expect(domus.reporting.connectedPeers()).toEqual([
        expect.objectContaining({ primaryCallis: 1, blobCallis: 1 }),
      ]);
    }
    expect(beta.reporting.snapshot().blobBytesIn).toBe(100_000);
    expect(alpha.reporting.snapshot().blobBytesOut).toBe(100_000);
  });
});

describe('logging and feeds of a running domus', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  async function withLogger(name: string, config: DomusConfig): Promise<[Domus, LogCapture]> {
    const logger = new LogCapture();
    const node = await mesh.pki.node(name);
    const domus = await mesh.aurelia
      .domusBuilder(config, DomusAddr.tcp('127.0.0.1', 0), node.auth(), mesh.resolver)
      .logger(logger)
      .build();
    return [domus, logger];
  }

  it('writes a repeated warning once per limitedLogIntervalMs, and follows a live change of it', async () => {
    mesh = await TestMesh.create();
    const [alpha, logger] = await withLogger(
      'alpha',
      fastConfig((b) => b.sendTimeoutMs(60_000).reconnectBackoffMs([5]).limitedLogIntervalMs(150)),
    );
    let failures = 0;
    alpha.reporting.events$.subscribe((e) => e.type === 'PeerDialFailed' && failures++);
    const dialWarnings = () =>
      logger.lines.filter((l) => l.level === 'warn' && /ECONNREFUSED/.test(l.message));
    mesh.resolver.insert(11n, DomusAddr.tcp('127.0.0.1', 1)); // nothing listens: dials fail fast
    const pending = alpha.send(codec, 11n, { n: 0 }).catch((e: unknown) => e);

    await eventually(() => dialWarnings().length >= 3, 'three dial-failure warnings', 10_000);
    const written = dialWarnings();
    for (let i = 1; i < written.length; i++) {
      // Less 2 ms: the capture's Date.now() and the limiter's clock tick apart.
      expect(written[i]!.at - written[i - 1]!.at).toBeGreaterThanOrEqual(148);
    }
    // Lines after the first summarise the repeats they stand for (the default 120 s would allow one).
    expect(written[2]!.message).toMatch(/\(\d+ similar suppressed\)$/);
    expect(failures).toBeGreaterThan(written.length);

    alpha.config.update({ limitedLogIntervalMs: 3_600_000 });
    const before = dialWarnings().length;
    const failuresAtUpdate = failures;
    await eventually(() => failures >= failuresAtUpdate + 20, 'twenty more dial failures', 10_000);
    expect(dialWarnings().length).toBe(before);

    alpha.config.update({ limitedLogIntervalMs: 50 });
    await eventually(() => dialWarnings().length > before, 'a warning under the shorter interval');
    expect(dialWarnings().at(-1)!.message).toMatch(/\(\d+ similar suppressed\)$/);
    await mesh.close();
    expect(AureliaError.is(await pending, ErrorId.DomusClosed)).toBe(true);
  });

  it('completes events$, errors$ and metrics$ at shutdown, after ShutdownComplete', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const events = lastValueFrom(alpha.reporting.events$.pipe(toArray()));
    const errors = lastValueFrom(alpha.reporting.errors$.pipe(toArray()));
    const metrics = lastValueFrom(alpha.reporting.metrics$(3_600_000).pipe(toArray()));
    const order: string[] = [];
    alpha.reporting.events$.subscribe({
      next: (e) => order.push(e.type),
      complete: () => order.push('events complete'),
    });
    alpha.reporting.metrics$(10).subscribe({ complete: () => order.push('metrics complete') });
    await alpha.shutdown();
    expect((await events).map((e) => e.type)).toEqual([
      'ShutdownStarted',
      'DrainStarted',
      'DrainComplete',
      'ShutdownComplete',
    ]);
    expect(await errors).toEqual([]);
    expect(await metrics).toEqual([]);
    expect(order.slice(-3)).toEqual(['ShutdownComplete', 'events complete', 'metrics complete']);
  });

  it('keeps sends completing while a subscriber takes 1 ms per event of a 4000-event backlog', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', { config: fastConfig((b) => b.sendQueueSize(256)) });
    const beta = await mesh.add('beta', {
      config: fastConfig((b) => b.tabernaAcceptQueueSize(256)),
    });
    const seen = acceptAll(await beta.taberna(10n, codec));
    mesh.route(10n, 'beta');
    // Events handed to the subscriber since a send last completed, and the most ever: counted in
    // events rather than time, so a busy machine slows both sides alike and cannot fail the test.
    let sinceSend = 0;
    let longestRun = 0;
    /** Sends `count` messages, 100 in flight at a time. */
    const run = async (count: number): Promise<void> => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          while (next < count) {
            await alpha.send(codec, 10n, { n: next++ });
            sinceSend = 0;
          }
        }),
      );
    };
    await run(500); // warm up

    let delivered = 0;
    const slow = alpha.reporting.events$.subscribe(() => {
      const started = performance.now();
      while (performance.now() - started < 1); // blocks the thread ~1 ms per event
      delivered++;
      longestRun = Math.max(longestRun, ++sinceSend);
    });
    // A backlog of 4000 events: 4 s of subscriber work if it were handed over in one go.
    for (let i = 0; i < 4000; i++) alpha.config.update({ limitedLogIntervalMs: 1000 + i });
    try {
      await run(2000);
    } finally {
      slow.unsubscribe();
    }
    expect(seen).toHaveLength(2500);
    expect(delivered).toBeGreaterThan(0);
    // Handed over in one turn, all 4000 events would run before the next send completed.
    expect(longestRun).toBeLessThan(1000);
  });

  it('a subscriber that throws is logged; the process, the feeds and the mesh go on', async () => {
    mesh = await TestMesh.create();
    const [alpha, logger] = await withLogger('alpha', fastConfig());
    const beta = await mesh.add('beta');
    const seen = acceptAll(await beta.taberna(10n, codec));
    mesh.route(10n, 'beta');
    const unhandled: unknown[] = [];
    const previous = rxjsConfig.onUnhandledError;
    rxjsConfig.onUnhandledError = (err) => unhandled.push(err);
    try {
      alpha.reporting.events$.subscribe((e) => {
        throw new Error(`cannot handle ${e.type}`);
      });
      alpha.reporting.events$
        .pipe(
          map((e) =>
            e.type.toLowerCase().replace('connected', () => {
              throw new Error('bad map');
            }),
          ),
        )
        .subscribe(() => {});
      const connected = firstMatch(
        alpha.reporting.events$,
        (e: DomusReportingEvent) => e.type === 'PeerConnected',
        'PeerConnected after the throws',
      );
      await alpha.send(codec, 10n, { n: 1 });
      await connected;
      await eventually(
        () => logger.lines.some((l) => l.message.includes('bad map')),
        'the operator failure logged',
      );
      const thrown = logger.lines.filter((l) => l.level === 'error');
      expect(thrown.map((l) => l.message)).toEqual(
        expect.arrayContaining([
          'a reporting subscriber threw (the feed goes on): cannot handle PeerConnected',
          'a reporting subscriber threw (the feed goes on): bad map',
        ]),
      );
      await alpha.send(codec, 10n, { n: 2 });
      expect(seen.map((m) => m.n)).toEqual([1, 2]);
      // rxjs reports unhandled errors on a later timer: one scheduled now runs after any of them.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      expect(unhandled).toEqual([]);
    } finally {
      rxjsConfig.onUnhandledError = previous;
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
    const proxy = await mesh.proxy('beta', 10n);
    try {
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
      expect(new Set(seen.map((m) => m.n)).size).toBe(n);
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

  it('after a rotation the dialer presents its new certificate on the callis it opens next', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    const seen = acceptAll(await beta.taberna(10n, codec));
    const proxy = await mesh.proxy('beta', 10n);
    try {
      await alpha.send(codec, 10n, { n: 1 });
      const oldAlpha = await mesh.pki.node('alpha');
      expect(inboundPeerCertificates(beta).map((c) => c.fingerprint256)).toEqual([
        new X509Certificate(oldAlpha.certPem).fingerprint256,
      ]);

      const next = await makeTestPki({ commonName: 'Aurelia Rotated CA' });
      const newAlpha = await next.node('alpha');
      // Beta trusts both roots; alpha switches to its new certificate (still trusting the old root).
      await beta.reloadAuth((await mesh.pki.node('beta')).auth(next.ca.certPem));
      await alpha.reloadAuth(newAlpha.auth(mesh.pki.ca.certPem));
      await alpha.send(codec, 10n, { n: 2 }); // the live callis carries on with the old one
      expect(inboundPeerCertificates(beta)[0]!.issuer.CN).toBe(mesh.pki.ca.commonName);

      const reconnected = firstMatch(
        beta.reporting.events$,
        (e: DomusReportingEvent) => e.type === 'PrimaryCallisConnected',
        "alpha's new inbound callis",
      );
      proxy.cut(); // alpha must dial again, with the material in force now
      await alpha.send(codec, 10n, { n: 3 });
      await reconnected;
      const [presented] = inboundPeerCertificates(beta);
      expect(presented!.issuer.CN).toBe('Aurelia Rotated CA');
      expect(presented!.fingerprint256).toBe(new X509Certificate(newAlpha.certPem).fingerprint256);
      expect(seen.map((m) => m.n)).toEqual([1, 2, 3]);
      expect(proxy.accepted).toBe(2);
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
    expect(seen.map((m) => m.n)).toEqual([1]);
  });
});

describe('DNS SRV discovery', () => {
  const SERVICE = '_beta._tcp.mesh.test';
  const dns = new TestDns();
  let mesh: TestMesh;
  let resolver: DnsSrvResolver | undefined;
  beforeAll(() => dns.start());
  afterAll(() => dns.stop());
  afterEach(async () => {
    resolver?.close();
    resolver = undefined;
    await mesh.close();
    dns.reset();
  });

  it('after a dial failure at the preferred endpoint, later sends re-resolve and reach the live one', async () => {
    mesh = await TestMesh.create();
    const beta = await mesh.add('beta');
    const seen = acceptAll(await beta.taberna(7n, codec));
    dns.zone.set(SERVICE, {
      srv: [
        { priority: 10, weight: 1, port: await unusedPort(), target: 'dead.mesh.test' },
        { priority: 20, weight: 1, port: beta.localAddr.port as number, target: 'live.mesh.test' },
      ],
    });
    dns.zone.set('dead.mesh.test', { a: [{ address: '127.0.0.1', ttl: 300 }] });
    dns.zone.set('live.mesh.test', { a: [{ address: '127.0.0.1', ttl: 300 }] });
    resolver = new DnsSrvResolver({
      services: new Map([[7n, SERVICE]]),
      servers: [dns.address],
      timeoutMs: 2000,
    });
    const node = await mesh.pki.node('alpha');
    const alpha = await mesh.aurelia
      .domusBuilder(
        fastConfig((b) => b.sendTimeoutMs(1500).callisConnectTimeoutMs(1000)),
        DomusAddr.tcp('127.0.0.1', 0),
        node.auth(),
        resolver,
      )
      .build();
    const dialFailed = firstMatch(
      alpha.reporting.events$,
      (e: DomusReportingEvent) => e.type === 'PeerDialFailed',
      'the dial to the priority-10 endpoint failing',
    );
    const first = alpha.send(codec, 7n, { n: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await dialFailed;
    await alpha.send(codec, 7n, { n: 2 });
    expect(seen.map((m) => m.n)).toEqual([2]);
    expect(dns.count(`SRV ${SERVICE}`)).toBeGreaterThanOrEqual(2);
    // The first send stays with the peer it was queued on, the dead address, until its deadline.
    expect(AureliaError.is(await first, ErrorId.SendTimeout)).toBe(true);
    expect(seen.map((m) => m.n)).toEqual([2]);
  });
});
