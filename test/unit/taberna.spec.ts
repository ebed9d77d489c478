import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import { JsonCodec } from '../../lib/engine/codec.js';
import { a3MessageType } from '../../lib/engine/ids.js';
import {
  type Decision,
  type DecisionSink,
  Delivery,
  type PeerInfo,
} from '../../lib/engine/taberna/request.js';
import { TabernaRegistry } from '../../lib/engine/taberna/registry.js';

const PEER: PeerInfo = { identity: 'spiffe://aurelia.local/alpha', local: false };
const codec = new JsonCodec<{ n: number }>();

/** Collects decisions per token and lets a test await the decision for one token. */
class RecordingSink implements DecisionSink {
  readonly decisions = new Map<number, Decision>();
  overflowShareFull?: () => void;
  overflowShareFreed?: () => void;
  private readonly waiting = new Map<number, (d: Decision) => void>();

  decide(token: number, decision: Decision): void {
    if (this.decisions.has(token)) throw new Error(`token ${token} decided twice`);
    this.decisions.set(token, decision);
    this.waiting.get(token)?.(decision);
  }

  decisionOf(token: number, withinMs = 2000): Promise<Decision> {
    const known = this.decisions.get(token);
    if (known) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no decision for ${token}`)), withinMs);
      this.waiting.set(token, (d) => {
        clearTimeout(timer);
        resolve(d);
      });
    });
  }
}

function setup(opts: { queueSize?: number; acceptTimeoutMs?: number; overflow?: number } = {}) {
  const sink = new RecordingSink();
  const decided: Decision[] = [];
  const registry = new TabernaRegistry({
    queueSize: () => opts.queueSize ?? 2,
    acceptTimeoutMs: () => opts.acceptTimeoutMs ?? 5000,
    overflowPerPeer: () => opts.overflow ?? 1024,
    onDecided: (_id, _d, decision) => decided.push(decision),
  });
  let token = 0;
  const send = (dst: bigint, message: unknown, msgType = a3MessageType(0)): number => {
    const t = ++token;
    const payload = Buffer.from(JSON.stringify(message));
    registry.deliver(dst, new Delivery(msgType, payload, PEER, sink, t));
    return t;
  };
  return { sink, registry, send, decided };
}

async function expectAurelia(p: Promise<unknown>, kind: ErrorId): Promise<AureliaError> {
  const err = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AureliaError);
  expect((err as AureliaError).kind).toBe(kind);
  return err as AureliaError;
}

describe('taberna registry', () => {
  it('refuses a second taberna with the same id with TabernaAlreadyRegistered', () => {
    const { registry } = setup();
    const t = registry.register(7n, codec);
    expect(() => registry.register(7n, codec)).toThrow(/already registered/);
    try {
      registry.register(7n, codec);
    } catch (err) {
      expect((err as AureliaError).kind).toBe(ErrorId.TabernaAlreadyRegistered);
    }
    t.close();
    expect(registry.register(7n, codec).id).toBe(7n);
    registry.shutdown();
  });

  it('refuses an id that is not a u64 bigint with InvalidConfig', () => {
    const { registry } = setup();
    expect(() => registry.register(-1n, codec)).toThrow(AureliaError);
    expect(() => registry.register(1 as unknown as bigint, codec)).toThrow(/bigint/);
  });

  it('answers UnknownTaberna for a message to an id nobody registered', async () => {
    const { send, sink } = setup();
    const decision = await sink.decisionOf(send(99n, { n: 1 }));
    expect(decision).toMatchObject({ accepted: false, errorId: ErrorId.UnknownTaberna });
  });
});

describe('taberna', () => {
  it('hands queued messages to next() in arrival order and reports accept and reject', async () => {
    const { registry, send, sink } = setup();
    const taberna = registry.register(1n, codec);
    const a = send(1n, { n: 1 });
    const b = send(1n, { n: 2 });
    const first = await taberna.next();
    const second = await taberna.next();
    expect(first.message).toEqual({ n: 1 });
    expect(second.message).toEqual({ n: 2 });
    expect(first.peer.identity).toBe(PEER.identity);
    expect(first.accept()).toBe(true);
    expect(second.reject('not today')).toBe(true);
    expect(await sink.decisionOf(a)).toEqual({ accepted: true });
    expect(await sink.decisionOf(b)).toEqual({
      accepted: false,
      errorId: ErrorId.RemoteTabernaRejected,
      message: 'not today',
    });
    expect(first.accept()).toBe(false);
    expect(first.decided).toBe(true);
    registry.shutdown();
  });

  it('wakes a waiting next() as soon as a message arrives', async () => {
    const { registry, send } = setup();
    const taberna = registry.register(1n, codec);
    const pending = taberna.next(2000);
    send(1n, { n: 5 });
    const request = await pending;
    expect(request.message).toEqual({ n: 5 });
    request.accept();
    registry.shutdown();
  });

  it('rejects next() with ReceiveTimeout when nothing arrives in time', async () => {
    const { registry } = setup();
    const taberna = registry.register(1n, codec);
    const err = await expectAurelia(taberna.next(30), ErrorId.ReceiveTimeout);
    expect(err.message).toContain('30 ms');
    registry.shutdown();
  });

  it('rejects an invalid next() timeout with InvalidConfig', async () => {
    const { registry } = setup();
    const taberna = registry.register(1n, codec);
    await expectAurelia(taberna.next(-5), ErrorId.InvalidConfig);
    registry.shutdown();
  });

  it('refuses a message its codec cannot decode with DecodeFailure', async () => {
    const { registry, sink } = setup();
    registry.register(1n, codec);
    const bad = new Delivery(a3MessageType(0), Buffer.from('{not json'), PEER, sink, 42);
    registry.deliver(1n, bad);
    expect(await sink.decisionOf(42)).toMatchObject({
      accepted: false,
      errorId: ErrorId.DecodeFailure,
    });
    registry.shutdown();
  });

  it('lets a message wait for room in a full queue, then answers TabernaBusy', async () => {
    const { registry, send, sink } = setup({ queueSize: 1, acceptTimeoutMs: 60 });
    const taberna = registry.register(1n, codec);
    const queued = send(1n, { n: 1 });
    const waitsAndGetsIn = send(1n, { n: 2 });
    // The queue holds one: taking it makes room for the waiting one before its deadline.
    const r1 = await taberna.next();
    r1.accept();
    const r2 = await taberna.next();
    expect(r2.message).toEqual({ n: 2 });
    r2.accept();
    expect(await sink.decisionOf(queued)).toEqual({ accepted: true });
    expect(await sink.decisionOf(waitsAndGetsIn)).toEqual({ accepted: true });

    send(1n, { n: 3 });
    const busy = send(1n, { n: 4 });
    expect(await sink.decisionOf(busy)).toMatchObject({
      accepted: false,
      errorId: ErrorId.TabernaBusy,
    });
    registry.shutdown();
  });

  it("tells a remote peer's sink once its maxTabernaOverflowPerPeer share of a full taberna is waiting, and again when it has room", async () => {
    const { registry, send, sink } = setup({ queueSize: 1, acceptTimeoutMs: 5000, overflow: 2 });
    const taberna = registry.register(1n, codec);
    const signals: string[] = [];
    sink.overflowShareFull = () => signals.push('full');
    sink.overflowShareFreed = () => signals.push('freed');
    const other = new RecordingSink();
    other.overflowShareFull = () => signals.push('other full');
    const otherPeer: PeerInfo = { identity: 'spiffe://aurelia.local/beta', local: false };
    const local = new RecordingSink();
    local.overflowShareFull = () => signals.push('local full');
    const localPeer: PeerInfo = { identity: 'spiffe://aurelia.local/self', local: true };
    const deliver = (to: RecordingSink, peer: PeerInfo, token: number) =>
      registry.deliver(1n, new Delivery(a3MessageType(0), Buffer.from('{}'), peer, to, token));
    send(1n, { n: 0 }); // fills the queue
    send(1n, { n: 1 });
    expect(signals).toEqual([]);
    send(1n, { n: 2 });
    expect(signals).toEqual(['full']);
    // Another peer has a share of its own; local sends are not counted.
    deliver(other, otherPeer, 1);
    for (let token = 1; token <= 3; token++) deliver(local, localPeer, token);
    expect(signals).toEqual(['full']);
    // Nothing was refused: everything waits for room.
    expect(sink.decisions.size + other.decisions.size + local.decisions.size).toBe(0);
    // Taking from the queue moves the first waiting message in, which frees a place in the share.
    (await taberna.next()).accept();
    expect(signals).toEqual(['full', 'freed']);
    send(1n, { n: 3 });
    expect(signals).toEqual(['full', 'freed', 'full']);
    // A shutdown frees every share it reported full.
    registry.shutdown();
    expect(signals).toEqual(['full', 'freed', 'full', 'freed']);
  });

  it('rejects a request the application leaves undecided past the accept timeout', async () => {
    const { registry, send, sink } = setup({ acceptTimeoutMs: 40 });
    const taberna = registry.register(1n, codec);
    const t = send(1n, { n: 1 });
    const request = await taberna.next();
    const decision = await sink.decisionOf(t);
    expect(decision).toMatchObject({ accepted: false, errorId: ErrorId.RemoteTabernaRejected });
    expect((decision as { message: string }).message).toContain('did not decide within 40 ms');
    expect(request.accept()).toBe(false);
    registry.shutdown();
  });

  it('splits a request into parts whose completion decides it', async () => {
    const { registry, send, sink } = setup();
    const taberna = registry.register(1n, codec);
    const t = send(1n, { n: 9 });
    const { message, blobReceiver, completion } = (await taberna.next()).intoParts();
    expect(message).toEqual({ n: 9 });
    expect(blobReceiver).toBeUndefined();
    expect(completion.decided).toBe(false);
    expect(completion.accept()).toBe(true);
    expect(completion.reject()).toBe(false);
    expect(await sink.decisionOf(t)).toEqual({ accepted: true });
    registry.shutdown();
  });

  it('never lets a full taberna delay another', async () => {
    const { registry, send, sink } = setup({ queueSize: 1, acceptTimeoutMs: 5000 });
    registry.register(1n, codec); // nobody reads this one
    const fast = registry.register(2n, codec);
    for (let i = 0; i < 20; i++) send(1n, { n: i });
    const t = send(2n, { n: 100 });
    const request = await fast.next(100);
    request.accept();
    expect(await sink.decisionOf(t, 100)).toEqual({ accepted: true });
    registry.shutdown();
  });

  it('close() fails what is queued with TabernaShutdown and frees the id', async () => {
    const { registry, send, sink } = setup();
    const taberna = registry.register(1n, codec);
    const queued = send(1n, { n: 1 });
    taberna.close();
    expect(await sink.decisionOf(queued)).toMatchObject({
      accepted: false,
      errorId: ErrorId.TabernaShutdown,
    });
    await expectAurelia(taberna.next(), ErrorId.TabernaShutdown);
    const after = send(1n, { n: 2 });
    expect(await sink.decisionOf(after)).toMatchObject({ errorId: ErrorId.UnknownTaberna });
  });

  it('shutdown fails pending next() and queued messages with DomusClosed', async () => {
    const { registry, send, sink } = setup();
    const a = registry.register(1n, codec);
    const b = registry.register(2n, codec);
    const pending = a.next(5000);
    const queued = send(2n, { n: 1 });
    registry.shutdown();
    await expectAurelia(pending, ErrorId.DomusClosed);
    expect(await sink.decisionOf(queued)).toMatchObject({ errorId: ErrorId.DomusClosed });
    await expectAurelia(b.next(), ErrorId.DomusClosed);
    expect(() => registry.register(3n, codec)).toThrow(/shut down/);
  });

  it('async iteration yields requests until the taberna is closed', async () => {
    const { registry, send } = setup({ queueSize: 8 });
    const taberna = registry.register(1n, codec);
    for (let i = 0; i < 3; i++) send(1n, { n: i });
    const seen: number[] = [];
    for await (const request of taberna) {
      seen.push(request.message.n);
      request.accept();
      if (seen.length === 3) taberna.close();
    }
    expect(seen).toEqual([0, 1, 2]);
  });

  it('serveEach hands queued requests first, then each new one in the turn it arrives', async () => {
    const { registry, send, sink } = setup({ queueSize: 8 });
    const taberna = registry.register(1n, codec);
    for (let i = 0; i < 3; i++) send(1n, { n: i });
    const seen: number[] = [];
    const served = taberna.serveEach((request) => {
      seen.push(request.message.n);
      if (request.message.n === 4) throw new Error('handler broke');
      request.accept();
    });
    expect(seen).toEqual([0, 1, 2]);
    send(1n, { n: 3 });
    expect(seen).toEqual([0, 1, 2, 3]);
    const broken = send(1n, { n: 4 });
    expect(await sink.decisionOf(broken)).toMatchObject({
      accepted: false,
      errorId: ErrorId.RemoteTabernaRejected,
      message: 'handler broke',
    });
    await expectAurelia(
      taberna.serveEach(() => undefined),
      ErrorId.InvalidConfig,
    );
    taberna.close();
    await expect(served).resolves.toBeUndefined();
  });

  it('serveEach rejects with DomusClosed when the domus shuts down', async () => {
    const { registry } = setup();
    const taberna = registry.register(1n, codec);
    const served = taberna.serveEach(() => undefined);
    registry.shutdown();
    await expectAurelia(served, ErrorId.DomusClosed);
  });

  it('counts every decision exactly once', async () => {
    const { registry, send, sink, decided } = setup({ acceptTimeoutMs: 30 });
    const taberna = registry.register(1n, codec);
    const tokens = [send(1n, { n: 1 }), send(1n, { n: 2 }), send(5n, { n: 3 })];
    (await taberna.next()).accept();
    await taberna.next(); // left undecided: the accept timeout rejects it
    await Promise.all(tokens.map((t) => sink.decisionOf(t)));
    expect(decided).toHaveLength(3);
    registry.shutdown();
  });
});
