// Graceful drain: a domus tells its senders, finishes what it accepted, refuses what comes later
// with Draining, and its senders move their work to other replicas.
import {
  AureliaError,
  ErrorId,
  JsonCodec,
  ReplicaSet,
  type Domus,
  type DomusReportingEvent,
  type Taberna,
  type TabernaRequest,
} from '../../lib/index.js';
import { ControlType } from '../../lib/engine/wire/frame.js';
import { decodeError } from '../../lib/engine/wire/control.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';
import { Cleanup, dialAs, within } from '../support/transport.js';
import { HostilePeer, appMessage } from '../support/hostile-peer.js';
import { FaultProxy } from '../support/proxy.js';

interface Job {
  n: number;
}
const codec = new JsonCodec<Job>();
const JOBS = 10n;

/**
 * The application of one replica: records every job handed to it; accepts at once, or holds
 * each job until `release()` while `holding`.
 */
class Replica {
  readonly seen: number[] = [];
  holding = false;
  private readonly held: TabernaRequest<Job>[] = [];
  readonly done: Promise<void>;

  constructor(taberna: Taberna<Job>) {
    this.done = (async () => {
      try {
        for await (const request of taberna) {
          this.seen.push(request.message.n);
          if (this.holding) this.held.push(request);
          else request.accept();
        }
      } catch (err) {
        if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
      }
    })();
  }

  get heldCount(): number {
    return this.held.length;
  }

  release(): void {
    this.holding = false;
    for (const request of this.held.splice(0)) request.accept();
  }
}

describe('draining a domus', () => {
  let mesh: TestMesh;
  let caller: Domus;
  let cleanup: Cleanup;
  const replicas = new Map<string, Replica>();

  async function startReplica(name: string, drainTimeoutMs = 10_000): Promise<Domus> {
    const domus = await mesh.add(name, {
      config: fastConfig((b) => b.drainTimeoutMs(drainTimeoutMs).tabernaAcceptQueueSize(64)),
    });
    replicas.set(name, new Replica(await domus.taberna(JOBS, codec)));
    return domus;
  }

  beforeEach(async () => {
    mesh = await TestMesh.create();
    cleanup = new Cleanup();
    caller = await mesh.add('caller', { config: fastConfig((b) => b.sendTimeoutMs(5000)) });
    replicas.clear();
  });
  afterEach(async () => {
    await cleanup.run();
    await mesh.close();
    await Promise.all([...replicas.values()].map((r) => r.done));
  });

  it('tells a connected sender it drains and refuses what arrives afterwards with Draining, unseen by any handler', async () => {
    const billing = await startReplica('billing');
    const conn = await dialAs(cleanup, billing.localAddr, await mesh.pki.node('orders'));
    const peer = new HostilePeer(conn);
    await peer.hello(1n);
    peer.write([appMessage(1, 1)]);
    await eventually(() => replicas.get('billing')!.seen.length === 1, 'the first job to arrive');

    await within(billing.drain(), 3000, 'a drain with nothing in flight');
    let frame = await peer.next();
    while (frame.msgType === ControlType.Ack) frame = await peer.next();
    expect(frame.msgType).toBe(ControlType.Drain);
    peer.write([appMessage(2, 2)]);
    expect(await peer.error()).toMatchObject({ errorId: ErrorId.Draining, peerMsgId: 2 });
    // A replay of the refused message gets the same answer; the handler never saw either.
    peer.write([appMessage(2, 2)]);
    let again = await peer.next();
    while (again.msgType !== ControlType.Error) again = await peer.next();
    expect(decodeError(again)).toMatchObject({ errorId: ErrorId.Draining, peerMsgId: 2 });
    expect(replicas.get('billing')!.seen).toEqual([1]);

    // A sender that connects during the drain hears it right after the hello.
    const late = new HostilePeer(
      await dialAs(cleanup, billing.localAddr, await mesh.pki.node('orders')),
    );
    await late.hello(2n);
    expect((await late.next()).msgType).toBe(ControlType.Drain);
  });

  it('finishes the work it accepted while new sends go to the other replica, each delivered once', async () => {
    const one = await startReplica('billing-1');
    const two = await startReplica('billing-2');
    mesh.resolver.insert(JOBS, [one.localAddr, two.localAddr]);
    const first = replicas.get('billing-1')!;
    first.holding = true;

    const early = Array.from({ length: 40 }, (_, n) => caller.send(codec, JOBS, { n }));
    await eventually(() => first.heldCount > 0, 'billing-1 to hold some jobs');
    await eventually(
      () => first.heldCount + replicas.get('billing-2')!.seen.length === 40,
      'every early job to arrive',
    );
    const heldAtDrain = first.heldCount;
    const drainEvents: DomusReportingEvent[] = [];
    one.reporting.events$.subscribe((e) => drainEvents.push(e));
    let drainEnded = false;
    const drained = one.drain().then(() => {
      drainEnded = true;
    });
    const draining = await firstMatch(
      caller.reporting.events$,
      (e) => e.type === 'PeerDraining',
      'the caller to hear billing-1 drain',
    );
    expect(draining).toMatchObject({ address: one.localAddr.key });

    const late = Array.from({ length: 60 }, (_, i) => caller.send(codec, JOBS, { n: 100 + i }));
    await within(Promise.all(late), 5000, 'the sends made during the drain');
    // Nothing new reached the draining replica; the held work is still open there.
    expect(first.seen.length).toBe(heldAtDrain);
    expect(drainEnded).toBe(false);

    first.release();
    await within(Promise.all(early), 5000, 'the held sends to succeed');
    await within(drained, 3000, 'the drain to end once its work is done');
    const all = [...first.seen, ...replicas.get('billing-2')!.seen].sort((a, b) => a - b);
    const expected = [...Array(40).keys(), ...Array.from({ length: 60 }, (_, i) => 100 + i)];
    expect(all).toEqual(expected);
    await eventually(
      () => drainEvents.some((e) => e.type === 'DrainComplete'),
      'DrainComplete on the feed',
    );
    expect(drainEvents.find((e) => e.type === 'DrainComplete')).toMatchObject({ finished: true });
    expect(caller.reporting.snapshot().sendsFailedOver).toBe(0);
  });

  it('moves sends queued for a replica when it drains to the other replica, each delivered once', async () => {
    const one = await startReplica('billing-1');
    const two = await startReplica('billing-2');
    // billing-1's incoming bytes stall in a proxy that stops reading: what the caller sends
    // there backs up in its socket and then in its queue, unwritten. Its answers still flow.
    const proxy = await FaultProxy.start(one.localAddr, { listen: 'tcp' });
    cleanup.add(proxy, (p) => p.close());
    mesh.resolver.insert(JOBS, ReplicaSet.of([proxy.addr, two.localAddr], 'round-robin'));
    await caller.send(codec, JOBS, { n: -1 });
    await caller.send(codec, JOBS, { n: -2 });
    proxy.pause();
    const padding = 'x'.repeat(64 * 1024);
    const sends = Array.from({ length: 120 }, (_, n) =>
      caller.send(new JsonCodec<Job & { pad: string }>(), JOBS, { n, pad: padding }),
    );
    const draining = firstMatch(
      caller.reporting.events$,
      (e) => e.type === 'PeerDraining',
      'the caller to hear billing-1 drain',
    );
    const drained = one.drain();
    const event = await draining;
    expect(event.type === 'PeerDraining' && event.moved).toBeGreaterThan(0);
    proxy.forward();
    await within(Promise.all(sends), 10_000, 'every send to succeed');
    await within(drained, 5000, 'the drain');
    const all = [...replicas.get('billing-1')!.seen, ...replicas.get('billing-2')!.seen];
    expect(all.filter((n) => n >= 0).sort((a, b) => a - b)).toEqual([...Array(120).keys()]);
    expect(caller.reporting.snapshot().sendsFailedOver).toBeGreaterThan(0);
  });

  it('keeps sends to a single address that drains queued and delivers them to the process that comes back there', async () => {
    const billing = await startReplica('billing');
    mesh.route(JOBS, 'billing');
    const first = replicas.get('billing')!;
    first.holding = true;
    const held = caller.send(codec, JOBS, { n: 1 });
    await eventually(() => first.heldCount === 1, 'the first job to be held');
    const draining = firstMatch(
      caller.reporting.events$,
      (e) => e.type === 'PeerDraining',
      'the caller to hear billing drain',
    );
    const shutdown = billing.shutdown();
    await draining;
    // Nowhere else to go: these wait for the address instead of failing.
    const queued = [2, 3, 4].map((n) => caller.send(codec, JOBS, { n }));
    first.release();
    await within(Promise.all([held, shutdown]), 5000, 'the held job and the shutdown');
    expect(first.seen).toEqual([1]);

    // The same address comes back (a restarted process): the queued sends reach it, once each.
    const again = await mesh.add('billing-again', {
      addr: billing.localAddr,
      certificate: 'billing',
      config: fastConfig((b) => b.tabernaAcceptQueueSize(64)),
    });
    const second = new Replica(await again.taberna(JOBS, codec));
    replicas.set('billing-again', second);
    await within(Promise.all(queued), 5000, 'the queued sends to reach the new process');
    expect(second.seen.sort((a, b) => a - b)).toEqual([2, 3, 4]);
  });

  it('ends a drain at drainTimeoutMs: the shutdown then fails what is still undecided with DomusClosed', async () => {
    const billing = await startReplica('billing', 300);
    mesh.route(JOBS, 'billing');
    const replica = replicas.get('billing')!;
    replica.holding = true;
    const events: DomusReportingEvent[] = [];
    billing.reporting.events$.subscribe((e) => events.push(e));
    const held = caller.send(codec, JOBS, { n: 1 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    await eventually(() => replica.heldCount === 1, 'the job to be held');
    const startedAt = Date.now();
    await within(billing.shutdown(), 5000, 'the shutdown');
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
    expect(await held).toMatchObject({ kind: ErrorId.DomusClosed });
    await eventually(() => events.some((e) => e.type === 'DrainComplete'), 'DrainComplete');
    expect(events.map((e) => e.type)).toEqual(
      expect.arrayContaining(['ShutdownStarted', 'DrainStarted', 'DrainComplete']),
    );
    expect(events.find((e) => e.type === 'DrainComplete')).toMatchObject({ finished: false });
  });
});
