// Safe failover between replicas: what no application saw moves to another replica within its
// deadline; what may have run fails with OutcomeUnknown and is never sent again.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AureliaError,
  ErrorId,
  JsonCodec,
  ReplicaSet,
  type Domus,
  type Taberna,
  type TabernaRequest,
} from '../../lib/index.js';
import { FaultProxy } from '../support/proxy.js';
import { TestMesh, eventually, fastConfig } from '../support/mesh.js';
import { within } from '../support/transport.js';

interface Job {
  n: number;
}
const codec = new JsonCodec<Job>();
const JOBS = 10n;

/** A replica's application: records each job handed to it, decides after `paceMs` or holds it. */
function serve(
  taberna: Taberna<Job>,
  mode: { paceMs?: number; hold?: boolean },
): { seen: number[]; held: TabernaRequest<Job>[]; done: Promise<void> } {
  const seen: number[] = [];
  const held: TabernaRequest<Job>[] = [];
  const done = (async () => {
    try {
      for await (const request of taberna) {
        seen.push(request.message.n);
        if (mode.hold) held.push(request);
        else if (mode.paceMs) await sleep(mode.paceMs).then(() => request.accept());
        else request.accept();
      }
    } catch (err) {
      if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
    }
  })();
  return { seen, held, done };
}

/** Settles `promise` into its failure's kind, or `'ok'`. */
function outcome(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'ok',
    (err: unknown) => (AureliaError.is(err) ? err.kindName : String(err)),
  );
}

describe('failover between replicas', () => {
  let mesh: TestMesh;
  let caller: Domus;
  const served: Promise<void>[] = [];

  beforeEach(async () => {
    mesh = await TestMesh.create();
    caller = await mesh.add('caller', { config: fastConfig((b) => b.sendTimeoutMs(5000)) });
  });
  afterEach(async () => {
    await mesh.close();
    await Promise.all(served.splice(0));
  });

  it('sends a message refused with TabernaBusy by one replica to another, delivering it once', async () => {
    const busy = await mesh.add('billing-1', {
      config: fastConfig((b) => b.tabernaAcceptQueueSize(1).acceptTimeoutMs(300)),
    });
    const idle = await mesh.add('billing-2');
    const slow = serve(await busy.taberna(JOBS, codec), { paceMs: 50 });
    const fast = serve(await idle.taberna(JOBS, codec), {});
    served.push(slow.done, fast.done);
    mesh.resolver.insert(JOBS, ReplicaSet.of([busy.localAddr, idle.localAddr], 'round-robin'));

    const outcomes = await within(
      Promise.all(Array.from({ length: 30 }, (_, n) => outcome(caller.send(codec, JOBS, { n })))),
      5000,
      'every send to settle',
    );
    expect(outcomes).toEqual(Array(30).fill('ok'));
    const all = [...slow.seen, ...fast.seen].sort((a, b) => a - b);
    expect(all).toEqual([...Array(30).keys()]);
    expect(caller.reporting.snapshot().sendsFailedOver).toBeGreaterThan(0);
  });

  it('sends a message a replica does not serve yet to one that does, and fails one nobody serves once each replica said so', async () => {
    const starting = await mesh.add('billing-1'); // its handlers are not registered yet
    const ready = await mesh.add('billing-2');
    const served2 = serve(await ready.taberna(JOBS, codec), {});
    served.push(served2.done);
    mesh.resolver.insert(JOBS, ReplicaSet.of([starting.localAddr, ready.localAddr], 'round-robin'));
    const outcomes = await within(
      Promise.all(Array.from({ length: 20 }, (_, n) => outcome(caller.send(codec, JOBS, { n })))),
      5000,
      'every send to settle',
    );
    expect(outcomes).toEqual(Array(20).fill('ok'));
    expect([...served2.seen].sort((a, b) => a - b)).toEqual([...Array(20).keys()]);

    const NOWHERE = 11n;
    mesh.resolver.insert(NOWHERE, ReplicaSet.of([starting.localAddr, ready.localAddr]));
    const before = caller.reporting.snapshot().sendsFailedOver;
    expect(await outcome(caller.send(codec, NOWHERE, { n: 0 }))).toBe('UnknownTaberna');
    expect(caller.reporting.snapshot().sendsFailedOver - before).toBeLessThanOrEqual(2);
  });

  it('fails what a replica that went away may have run with OutcomeUnknown, never repeating it, and sends the rest to the others', async () => {
    const gone = await mesh.add('billing-1');
    const alive = await mesh.add('billing-2');
    const held = serve(await gone.taberna(JOBS, codec), { hold: true });
    const fast = serve(await alive.taberna(JOBS, codec), {});
    served.push(held.done, fast.done);
    const proxy = await FaultProxy.start(gone.localAddr, { listen: 'tcp' });
    try {
      mesh.resolver.insert(JOBS, ReplicaSet.of([proxy.addr, alive.localAddr], 'round-robin'));
      const first = Array.from({ length: 20 }, (_, n) => outcome(caller.send(codec, JOBS, { n })));
      await eventually(
        () => held.seen.length + fast.seen.length === 20,
        'the first sends to reach both replicas',
      );
      expect(held.seen.length).toBeGreaterThan(0);

      // The link dies and the address refuses every new connection: a process that is gone.
      proxy.refuse();
      proxy.reset();
      const outcomes = await within(Promise.all(first), 3000, 'the first sends to settle');
      const failed = outcomes.flatMap((o, n) => (o === 'ok' ? [] : [n]));
      expect(failed.sort((a, b) => a - b)).toEqual([...held.seen].sort((a, b) => a - b));
      expect(new Set(outcomes.filter((o) => o !== 'ok'))).toEqual(new Set(['OutcomeUnknown']));

      const later = await within(
        Promise.all(
          Array.from({ length: 30 }, (_, i) => outcome(caller.send(codec, JOBS, { n: 100 + i }))),
        ),
        3000,
        'the sends after the loss',
      );
      expect(later).toEqual(Array(30).fill('ok'));
      // Nothing the lost replica was sent ran anywhere else.
      for (const n of held.seen) expect(fast.seen).not.toContain(n);
      expect(fast.seen.filter((n) => n >= 100)).toHaveLength(30);
    } finally {
      await proxy.close();
    }
  });
});
