// Faults between domus, judged by ledgers kept on both sides: partitions, half-open links, slow
// and undecided applications, and shutdowns racing thousands of sends.
import { jest } from '@jest/globals';
import {
  AureliaError,
  ErrorId,
  type Domus,
  type DomusConfig,
  type LatencySummary,
  type Taberna,
} from '../../lib/index.js';
import { DeliveryLedger, type LedgerReport } from '../../lib/cli/soak/ledger.js';
import { OutboundPeer } from '../../lib/engine/peer/peer.js';
import {
  keyedCodec as codec,
  settledBySender,
  tracked,
  type KeyedNote as Note,
} from '../support/ledger.js';
import { FaultProxy } from '../support/proxy.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';
import { within } from '../support/transport.js';

const TABERNA = 10n;
/** How late past its deadline a send may settle: timers fire late on a loaded CI machine. */
const LATE_SLACK_MS = 1500;

/**
 * The receiving application: takes every request of `taberna` and accepts it, recording each
 * accept that took effect in `ledger`. `pace` runs before each decision (a slow application).
 */
function serve(
  taberna: Taberna<Note>,
  ledger: DeliveryLedger,
  pace?: () => Promise<void>,
): Promise<void> {
  return (async () => {
    try {
      for await (const request of taberna) {
        if (pace) await pace();
        if (request.accept()) ledger.accept(request.message.key);
      }
    } catch (err) {
      if (
        !AureliaError.is(err, ErrorId.DomusClosed) &&
        !AureliaError.is(err, ErrorId.TabernaShutdown)
      )
        throw err;
    }
  })();
}

function expectClean(report: LedgerReport): void {
  expect(report.mismatches).toEqual([]);
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('partitions through a fault proxy', () => {
  let mesh: TestMesh;
  let proxy: FaultProxy;
  let alpha: Domus;
  let beta: Domus;
  let ledger: DeliveryLedger;
  let served: Promise<void>;

  async function setup(config: DomusConfig): Promise<void> {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { config });
    beta = await mesh.add('beta', { config });
    proxy = await mesh.proxy('beta', TABERNA);
    ledger = new DeliveryLedger(LATE_SLACK_MS);
    served = serve(await beta.taberna(TABERNA, codec), ledger);
  }
  afterEach(async () => {
    await mesh.close();
    await served;
  });

  /** Drops every byte in both directions and refuses new connections, like a severed link. */
  function partition(): void {
    proxy.refuse();
    proxy.stall();
  }

  it('delivers everything exactly once across a partition shorter than the send timeout', async () => {
    await setup(
      fastConfig((b) =>
        b
          .sendTimeoutMs(5000)
          .keepaliveIntervalMs(150)
          .sendQueueSize(512)
          .tabernaAcceptQueueSize(256),
      ),
    );
    const sends: Promise<void>[] = [];
    for (let n = 0; n < 100; n++) sends.push(tracked(ledger, alpha, TABERNA, `before-${n}`));
    await eventually(() => ledger.acceptedCount('before-50') === 1, 'traffic to flow');
    const detected = firstMatch(
      alpha.reporting.events$,
      (e) => e.type === 'PrimaryCallisDisconnected',
      'the partition to be detected as a half-open callis',
      3000,
    );
    partition();
    for (let n = 0; n < 100; n++) sends.push(tracked(ledger, alpha, TABERNA, `during-${n}`));
    await detected;
    proxy.forward();
    for (let n = 0; n < 100; n++) sends.push(tracked(ledger, alpha, TABERNA, `after-${n}`));
    await within(Promise.all(sends), 6000, 'every send to settle');
    const report = ledger.compare();
    expectClean(report);
    expect(report).toMatchObject({ sends: 300, succeeded: 300, delivered: 300 });
    expect(settledBySender(alpha)).toEqual({ accepted: 300, failed: 0 });
    expect(proxy.accepted).toBeGreaterThanOrEqual(2);
  });

  it('fails every send by its deadline across a partition longer than the send timeout, none twice', async () => {
    await setup(
      fastConfig((b) =>
        b
          .sendTimeoutMs(1000)
          .callisConnectTimeoutMs(500)
          .acceptTimeoutMs(500)
          .keepaliveIntervalMs(150)
          .tabernaAcceptQueueSize(256),
      ),
    );
    const baseline = Array.from({ length: 20 }, (_, n) =>
      tracked(ledger, alpha, TABERNA, `baseline-${n}`),
    );
    await within(Promise.all(baseline), 3000, 'the baseline sends');
    // Sends racing the cut: some are accepted but their acks are lost, some never arrive.
    const racing = Array.from({ length: 30 }, (_, n) =>
      tracked(ledger, alpha, TABERNA, `racing-${n}`),
    );
    partition();
    const during = Array.from({ length: 50 }, (_, n) =>
      tracked(ledger, alpha, TABERNA, `during-${n}`),
    );
    await within(Promise.all([...racing, ...during]), 2500, 'the partitioned sends to settle');
    for (let n = 0; n < 50; n++) {
      expect(ledger.outcome(`during-${n}`)).toMatchObject({ ok: false, kind: ErrorId.SendTimeout });
    }
    proxy.forward();
    await within(tracked(ledger, alpha, TABERNA, 'healed'), 3000, 'a send after the partition');
    const report = ledger.compare();
    expectClean(report);
    expect(report.succeeded).toBeGreaterThanOrEqual(21);
    expect(report.failed.SendTimeout).toBeGreaterThanOrEqual(50);
    expect(ledger.outcome('healed')).toMatchObject({ ok: true });
    expect(settledBySender(alpha)).toEqual({
      accepted: report.succeeded,
      failed: report.sends - report.succeeded,
    });
  });

  it('replays what a half-open link swallowed once the link is detected dead', async () => {
    await setup(fastConfig((b) => b.keepaliveIntervalMs(100)));
    await tracked(ledger, alpha, TABERNA, 'warm-up');
    const lost = firstMatch(
      alpha.reporting.events$,
      (e) => e.type === 'PrimaryCallisDisconnected',
      'the half-open callis to be dropped',
      3000,
    );
    proxy.stall();
    const sends = Array.from({ length: 40 }, (_, n) =>
      tracked(ledger, alpha, TABERNA, `stalled-${n}`),
    );
    await lost;
    proxy.forward();
    await within(Promise.all(sends), 4000, 'the swallowed sends to be replayed');
    const report = ledger.compare();
    expectClean(report);
    expect(report).toMatchObject({ sends: 41, succeeded: 41, delivered: 41 });
  });
  // After a cut an outbound peer with nothing pending goes idle and the domus housekeeping
  // forgets it; the next send creates a new peer object for the address, with message ids from 1.
  // It dials with a new epoch, so the receiver never re-acks them as replays of decided messages.
  it('delivers sends made after the sender forgot its idle peer following a cut', async () => {
    await setup(fastConfig());
    // The housekeeping closes an outbound peer when it forgets it; before shutdown nothing else does.
    const forgotten = jest.spyOn(OutboundPeer.prototype, 'close');
    try {
      await within(
        Promise.all(
          Array.from({ length: 5 }, (_, n) => tracked(ledger, alpha, TABERNA, `first-${n}`)),
        ),
        3000,
        'the first sends',
      );
      const cut = firstMatch(
        alpha.reporting.events$,
        (e) => e.type === 'PrimaryCallisDisconnected',
        'the cut to be seen',
        3000,
      );
      proxy.cut();
      await cut;
      expect(forgotten).not.toHaveBeenCalled();
      await eventually(() => forgotten.mock.calls.length > 0, 'the idle peer to be forgotten');
      expect(forgotten).toHaveBeenCalledTimes(1);
      const dialsBefore = alpha.reporting.snapshot().dialAttempts;
      await within(
        Promise.all(
          Array.from({ length: 5 }, (_, n) => tracked(ledger, alpha, TABERNA, `later-${n}`)),
        ),
        6000,
        'the later sends',
      );
      // A new peer object dialed for them: the forgotten one is closed for good.
      expect(alpha.reporting.snapshot().dialAttempts).toBeGreaterThan(dialsBefore);
      const report = ledger.compare();
      expectClean(report);
      expect(report).toMatchObject({ sends: 10, succeeded: 10, delivered: 10 });
    } finally {
      forgotten.mockRestore();
    }
  });
});

describe('one domus reachable at two addresses', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  // Two addresses of one domus (two DNS names, a NAT or load-balancer address and a direct one)
  // mean two outbound peer objects with their own message ids. Each dials with its own epoch,
  // so the receiver keeps a session per peer object and never confuses their ids.
  it('delivers every send to tabernae of one domus resolved at two addresses', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const served: Promise<void>[] = [];
    for (const id of [TABERNA, TABERNA + 1n]) {
      await mesh.proxy('beta', id);
      served.push(serve(await beta.taberna(id, codec), ledger));
    }
    const sends: Promise<void>[] = [];
    for (let n = 0; n < 50; n++) {
      sends.push(tracked(ledger, alpha, TABERNA, `first-${n}`));
      sends.push(tracked(ledger, alpha, TABERNA + 1n, `second-${n}`));
    }
    await within(Promise.all(sends), 8000, 'every send to settle');
    const report = ledger.compare();
    await beta.shutdown();
    await Promise.all(served);
    expectClean(report);
    expect(report).toMatchObject({ sends: 100, succeeded: 100, delivered: 100 });
  });
});

describe('slow and undecided applications', () => {
  let mesh: TestMesh;
  let alpha: Domus;
  let beta: Domus;
  let proxy: FaultProxy;
  afterEach(() => mesh.close());

  async function setup(config = fastConfig((b) => b.sendTimeoutMs(5000))): Promise<void> {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { config });
    beta = await mesh.add('beta', { config });
    proxy = await mesh.proxy('beta', TABERNA, TABERNA + 1n);
  }

  it('a stuck application behind a slow link sheds load with TabernaBusy and never delays another taberna', async () => {
    await setup();
    proxy.delayMs = 5;
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const slow = await beta.taberna(TABERNA, codec, { queueSize: 4, acceptTimeoutMs: 200 });
    const fast = await beta.taberna(TABERNA + 1n, codec);
    // The slow application is stuck on its first request until the gate opens.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    const slowServed = serve(slow, ledger, () => gate);
    const fastServed = serve(fast, ledger);
    const burst = Array.from({ length: 80 }, (_, n) =>
      tracked(ledger, alpha, TABERNA, `slow-${n}`),
    );
    // Sent behind the burst on the same callis, and all answered while the slow taberna is stuck.
    for (let n = 0; n < 10; n++) {
      await within(
        tracked(ledger, alpha, TABERNA + 1n, `fast-${n}`),
        3000,
        'a send to the fast taberna while the slow one is stuck',
      );
      expect(ledger.outcome(`fast-${n}`)).toMatchObject({ ok: true });
    }
    await eventually(
      () =>
        Array.from({ length: 80 }, (_, n) => ledger.outcome(`slow-${n}`)).some(
          (o) => o?.ok === false && o.kind === ErrorId.TabernaBusy,
        ),
      'the stuck taberna to shed load with TabernaBusy',
    );
    openGate();
    await within(Promise.all(burst), 6000, 'the burst to settle');
    const report = ledger.compare();
    expectClean(report);
    expect(report.failed.TabernaBusy).toBeGreaterThan(0);
    expect(report.sends).toBe(90);
    await beta.shutdown();
    await Promise.all([slowServed, fastServed]);
  });

  // The receiving domus stops reading its socket (the proxy stops reading, so TCP flow control
  // pushes back to the sender) and reads again later: the same callis carries on, and every send
  // settles once.
  it('a receiver that stops reading its socket for a while holds the sender back, then delivers everything once', async () => {
    await setup(
      // Deadlines far beyond the pause: every send must get through, none may time out.
      fastConfig((b) => b.sendTimeoutMs(40_000).sendQueueSize(4096).tabernaAcceptQueueSize(1024)),
    );
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const served = serve(await beta.taberna(TABERNA, codec), ledger);
    const pad = 'x'.repeat(32 * 1024);
    await within(
      Promise.all(
        Array.from({ length: 10 }, (_, n) => tracked(ledger, alpha, TABERNA, `warm-${n}`)),
      ),
      3000,
      'the warm-up sends',
    );
    let blocked = false;
    const backpressure = firstMatch(
      alpha.reporting.events$,
      (e) => e.type === 'BackpressureTriggered',
      'the sender to feel the backpressure',
      5000,
    ).then(() => {
      blocked = true;
    });
    proxy.pause();
    // Kernel buffers on loopback hold megabytes: keep sending until the sender's socket is full.
    const during: string[] = [];
    const sends: Promise<void>[] = [];
    while (!blocked && during.length < 1500) {
      for (let i = 0; i < 20; i++) {
        const key = `during-${during.length}`;
        during.push(key);
        sends.push(tracked(ledger, alpha, TABERNA, key, pad));
      }
      await nextTurn();
    }
    await backpressure;
    // Nothing sent since the pause got through while the receiver did not read.
    expect(during.filter((key) => ledger.acceptedCount(key) > 0)).toEqual([]);
    expect(during.filter((key) => ledger.outcome(key) !== undefined)).toEqual([]);
    proxy.forward();
    for (let n = 0; n < 10; n++) sends.push(tracked(ledger, alpha, TABERNA, `after-${n}`));
    await within(Promise.all(sends), 30_000, 'every send to settle once the receiver reads');
    const report = ledger.compare();
    expectClean(report);
    const all = during.length + 20;
    expect(report).toMatchObject({ sends: all, succeeded: all, delivered: all });
    expect(settledBySender(alpha)).toEqual({ accepted: all, failed: 0 });
    // Flow control, not a reconnect: one connection carried it all.
    expect(proxy.accepted).toBe(1);
    await beta.shutdown();
    await served;
  }, 60_000);

  it('an application that never decides fails each send at the accept timeout, and a late accept changes nothing', async () => {
    await setup();
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const taberna = await beta.taberna(TABERNA, codec, { acceptTimeoutMs: 300 });
    const sends = Array.from({ length: 10 }, (_, n) =>
      tracked(ledger, alpha, TABERNA, `undecided-${n}`),
    );
    const held = [];
    for (let n = 0; n < 10; n++) held.push(await taberna.next(3000));
    // Rejected by the accept timeout: the 5 s send timeout would fail them with SendTimeout.
    await within(Promise.all(sends), 4000, 'the undecided sends to fail');
    for (let n = 0; n < 10; n++) {
      expect(ledger.outcome(`undecided-${n}`)).toMatchObject({
        ok: false,
        kind: ErrorId.RemoteTabernaRejected,
      });
    }
    for (const request of held) {
      expect(request.accept()).toBe(false);
      if (request.accept()) ledger.accept(request.message.key);
    }
    const report = ledger.compare();
    expectClean(report);
    expect(report.delivered).toBe(0);
    expect(beta.reporting.snapshot().messagesRejected).toBe(10);
  });
});

describe('shutdown racing thousands of sends', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  const receivers = ['beta', 'gamma', 'delta'] as const;

  /**
   * A sender and three receivers. Each receiving application decides only while `gate` is open
   * (it starts open): closed, a backlog of received but undecided requests builds up.
   */
  async function setup(sendTimeoutMs = 4000): Promise<{
    alpha: Domus;
    ledger: DeliveryLedger;
    served: Promise<void>[];
    gate: { close(): void; open(): void };
  }> {
    mesh = await TestMesh.create();
    const config = fastConfig((b) =>
      b
        .sendTimeoutMs(sendTimeoutMs)
        .acceptTimeoutMs(sendTimeoutMs)
        .sendQueueSize(4096)
        .tabernaAcceptQueueSize(1024),
    );
    const alpha = await mesh.add('alpha', { config });
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    let closed: Promise<void> | undefined;
    let reopen = (): void => undefined;
    const gate = {
      close(): void {
        closed = new Promise<void>((resolve) => {
          reopen = resolve;
        });
      },
      open(): void {
        closed = undefined;
        reopen();
      },
    };
    const served: Promise<void>[] = [];
    for (const [i, name] of receivers.entries()) {
      const domus = await mesh.add(name, { config });
      const id = TABERNA + BigInt(i);
      served.push(serve(await domus.taberna(id, codec), ledger, async () => closed));
      mesh.route(id, name);
    }
    return { alpha, ledger, served, gate };
  }

  const received = () =>
    receivers.reduce((sum, name) => sum + mesh.get(name).reporting.snapshot().messagesReceived, 0);

  it('10 000 sends around the sender shutdown: the undecided backlog finishes after it, every later send fails with DomusClosed', async () => {
    const { alpha, ledger, gate } = await setup(8000);
    const to = (n: number) => TABERNA + BigInt(n % 3);
    const keys = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) => `m${from + i}`);
    // 1 000 sends settle, then 3 000 reach the receivers and wait undecided.
    const decided = keys(0, 1000);
    await within(
      Promise.all(decided.map((key, n) => tracked(ledger, alpha, to(n), key))),
      8000,
      'the first 1 000 sends',
    );
    gate.close();
    const backlog = keys(1000, 3000);
    const sends = backlog.map((key, n) => tracked(ledger, alpha, to(n), key));
    await eventually(() => received() >= 4000, 'the backlog to reach the receivers', 8000);
    const shutdownAt = Date.now();
    const shutdown = alpha.shutdown();
    const inFlightAtShutdown = backlog.filter((key) => ledger.outcome(key) === undefined);
    const afterShutdown = keys(4000, 6000);
    for (const [n, key] of afterShutdown.entries()) {
      sends.push(tracked(ledger, alpha, to(n), key));
      if (n % 500 === 499) await nextTurn();
    }
    gate.open();
    await within(Promise.all(sends), 10_000, 'all 10 000 sends to settle');
    await within(shutdown, 10_000, 'the shutdown to finish');

    const report = ledger.compare();
    expectClean(report);
    expect(report.sends).toBe(10_000);
    for (const key of decided) expect(ledger.outcome(key)).toMatchObject({ ok: true });
    // The backlog was in flight when shutdown() was called; it settled afterwards, once the
    // receivers decided: shutdown lets sends already on a live connection finish.
    expect(inFlightAtShutdown).toEqual(backlog);
    for (const key of inFlightAtShutdown) {
      const outcome = ledger.outcome(key)!;
      expect(outcome.at).toBeGreaterThanOrEqual(shutdownAt);
      expect(outcome).toMatchObject({ ok: true });
    }
    for (const key of afterShutdown) {
      expect(ledger.outcome(key)).toMatchObject({ ok: false, kind: ErrorId.DomusClosed });
    }
    expect(report.succeeded).toBe(4000);
    expect(report.failed).toEqual({ DomusClosed: 6000 });
    expect(report.delivered).toBe(4000);
    // Refused before admission, the 6 000 late sends never reach the send path's counters.
    expect(settledBySender(alpha)).toEqual({ accepted: report.succeeded, failed: 0 });
    const snapshot = alpha.reporting.snapshot();
    const latency: LatencySummary = snapshot.sendLatency;
    expect(latency.count).toBe(report.succeeded);
  });

  it('3 000 sends racing a receiver shutdown each settle once, consistent with the receivers', async () => {
    const { alpha, ledger } = await setup();
    const beta = mesh.get('beta');
    const sends: Promise<void>[] = [];
    let shutdown: Promise<void> | undefined;
    for (let n = 0; n < 3000; n++) {
      sends.push(tracked(ledger, alpha, TABERNA, `m${n}`));
      if (n % 200 === 199) await nextTurn();
      if (n === 1000) {
        await eventually(() => ledger.acceptedCount('m100') === 1, 'traffic to reach beta');
        shutdown = beta.shutdown();
      }
    }
    await within(Promise.all(sends), 8000, 'all 3 000 sends to settle');
    await within(shutdown!, 8000, 'the receiver shutdown to finish');
    const report = ledger.compare();
    expectClean(report);
    expect(report.sends).toBe(3000);
    expect(report.succeeded).toBeGreaterThan(0);
    expect(report.succeeded).toBeLessThan(3000);
    expect(settledBySender(alpha)).toEqual({
      accepted: report.succeeded,
      failed: report.sends - report.succeeded,
    });
  });
});
