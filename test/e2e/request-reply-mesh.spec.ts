import { Observable, lastValueFrom, take, toArray } from 'rxjs';
import {
  AureliaError,
  DomusAddr,
  ErrorId,
  type Domus,
  type DomusReportingEvent,
} from '../../lib/index.js';
import {
  RemoteRequestError,
  RequestReplyClient,
  RequestReplyServer,
} from '../../lib/engine/services/request-reply.js';
import { FaultProxy } from '../support/proxy.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';
import { expectElapsedBetween } from '../support/expect.js';

const ECHO = 101n;
const text = (b: Buffer): string => b.toString('utf8');

async function failure(source: Observable<unknown>): Promise<AureliaError> {
  const outcome = await lastValueFrom(source).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(outcome instanceof AureliaError))
    throw new Error(`expected an AureliaError, got ${String(outcome)}`);
  return outcome;
}

/** Replies with `count` numbered values of the request body, then completes. */
function counting(count: number) {
  return (req: { body: Buffer }) =>
    new Observable<Buffer>((s) => {
      for (let i = 0; i < count; i++) s.next(Buffer.from(`${text(req.body)}-${i}`));
      s.complete();
    });
}

describe('A2 request/reply between two domus', () => {
  let mesh: TestMesh;
  let caller: Domus;
  let handler: Domus;

  beforeEach(async () => {
    mesh = await TestMesh.create();
    caller = await mesh.add('caller');
    handler = await mesh.add('handler');
    mesh.route(ECHO, 'handler');
  });
  afterEach(() => mesh.close());

  it('streams every reply value in order, then completes', async () => {
    await RequestReplyServer.serve(handler, ECHO, counting(50));
    const client = await RequestReplyClient.for(caller);
    const replies = await lastValueFrom(client.request(ECHO, Buffer.from('v')).pipe(toArray()));
    expect(replies.map(text)).toEqual(Array.from({ length: 50 }, (_, i) => `v-${i}`));
    expect(client.inFlight).toBe(0);
  });

  it('streams many calls at once, each complete and in order, whatever the handler domus lanes hold', async () => {
    // Replies travel back as control frames on the request's own callis: the handler domus's
    // tiny outbound lanes (4) play no part, and eight streams of 100 values all arrive whole.
    const small = await mesh.add('small-lane', { config: fastConfig((b) => b.sendQueueSize(4)) });
    await RequestReplyServer.serve(small, 103n, counting(100));
    mesh.route(103n, 'small-lane');
    const client = await RequestReplyClient.for(caller);
    const calls = Array.from({ length: 8 }, (_, c) =>
      lastValueFrom(client.request(103n, Buffer.from(`c${c}`)).pipe(toArray())),
    );
    const results = await Promise.all(calls);
    results.forEach((replies, c) =>
      expect(replies.map(text)).toEqual(Array.from({ length: 100 }, (_, i) => `c${c}-${i}`)),
    );
    expect(small.reporting.snapshot().queueOverrunsA2).toBe(0);
  });

  it('answers a plain value and a promise as one reply', async () => {
    await RequestReplyServer.serve(handler, ECHO, (req) => Promise.resolve(req.body));
    await RequestReplyServer.serve(handler, 102n, () => Buffer.from('sync'));
    mesh.route(102n, 'handler');
    const client = await RequestReplyClient.for(caller);
    expect(text(await lastValueFrom(client.request(ECHO, Buffer.from('p'))))).toBe('p');
    expect(text(await lastValueFrom(client.request(102n, Buffer.alloc(0))))).toBe('sync');
  });

  it('fails with RemoteRequestError carrying the handler error after the values sent before it', async () => {
    await RequestReplyServer.serve(
      handler,
      ECHO,
      () =>
        new Observable<Buffer>((s) => {
          s.next(Buffer.from('first'));
          s.error(new Error('boom'));
        }),
    );
    const client = await RequestReplyClient.for(caller);
    const seen: string[] = [];
    const err = await failure(
      new Observable<Buffer>((s) =>
        client.request(ECHO, Buffer.alloc(0)).subscribe({
          next: (b) => {
            seen.push(text(b));
            s.next(b);
          },
          error: (e: unknown) => s.error(e),
          complete: () => s.complete(),
        }),
      ),
    );
    expect(seen).toEqual(['first']);
    expect(err).toBeInstanceOf(RemoteRequestError);
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(text((err as RemoteRequestError).body!)).toBe('boom');
  });

  it('fails with SendTimeout at the deadline when the handler never finishes', async () => {
    let aborted: unknown;
    await RequestReplyServer.serve(handler, ECHO, (_req, signal) => {
      signal.addEventListener('abort', () => (aborted = signal.reason));
      return new Observable<Buffer>(() => undefined);
    });
    const client = await RequestReplyClient.for(caller);
    const started = Date.now();
    const err = await failure(client.request(ECHO, Buffer.alloc(0), { timeoutMs: 300 }));
    expect(err.kind).toBe(ErrorId.SendTimeout);
    expectElapsedBetween(started, 300, 4000); // the domus's own deadline is 5 s
    await eventually(() => aborted !== undefined, 'the handler to be stopped at the deadline');
    expect(AureliaError.is(aborted, ErrorId.SendTimeout)).toBe(true);
  });

  it('gives a one-parameter handler the abort signal as request.signal', async () => {
    let aborted: unknown;
    await RequestReplyServer.serve(handler, ECHO, (req) => {
      req.signal.addEventListener('abort', () => (aborted = req.signal.reason));
      return new Promise<Buffer>(() => undefined);
    });
    const client = await RequestReplyClient.for(caller);
    const err = await failure(client.request(ECHO, Buffer.alloc(0), { timeoutMs: 300 }));
    expect(err.kind).toBe(ErrorId.SendTimeout);
    await eventually(() => aborted !== undefined, 'request.signal to abort at the deadline');
    expect(AureliaError.is(aborted, ErrorId.SendTimeout)).toBe(true);
  });

  it('stops the handler when the caller unsubscribes', async () => {
    let stopped = false;
    await RequestReplyServer.serve(
      handler,
      ECHO,
      () =>
        new Observable<Buffer>((s) => {
          let i = 0;
          const timer = setInterval(() => s.next(Buffer.from(String(i++))), 5);
          return () => {
            clearInterval(timer);
            stopped = true;
          };
        }),
    );
    const client = await RequestReplyClient.for(caller);
    const first = await lastValueFrom(
      client.request(ECHO, Buffer.alloc(0)).pipe(take(3), toArray()),
    );
    expect(first.map(text)).toEqual(['0', '1', '2']);
    await eventually(() => stopped, 'the handler stream to be unsubscribed');
    expect(client.inFlight).toBe(0);
  });

  it('fails with UnknownTaberna when nobody serves the id', async () => {
    mesh.route(999n, 'handler');
    const client = await RequestReplyClient.for(caller);
    expect((await failure(client.request(999n, Buffer.alloc(0)))).kind).toBe(
      ErrorId.UnknownTaberna,
    );
  });

  it('refuses an invalid deadline with InvalidConfig', async () => {
    const client = await RequestReplyClient.for(caller);
    const err = await failure(client.request(ECHO, Buffer.alloc(0), { timeoutMs: 0 }));
    expect(err.kind).toBe(ErrorId.InvalidConfig);
    expect(err.message).toContain('timeoutMs');
  });

  it('serves a caller on the same domus without the network', async () => {
    await RequestReplyServer.serve(caller, 103n, counting(3));
    const client = await RequestReplyClient.for(caller);
    const replies = await lastValueFrom(client.request(103n, Buffer.from('l')).pipe(toArray()));
    expect(replies.map(text)).toEqual(['l-0', 'l-1', 'l-2']);
  });

  it('fails the call when the handler stops serving', async () => {
    let started = false;
    const server = await RequestReplyServer.serve(handler, ECHO, () => {
      started = true;
      return new Observable<Buffer>(() => undefined);
    });
    const client = await RequestReplyClient.for(caller);
    const pending = failure(client.request(ECHO, Buffer.alloc(0)));
    await eventually(() => started, 'the handler to start');
    await server.close();
    const err = await pending;
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain('closed');
  });
});

describe('A2 request/reply safety', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('answers on the connection the request came by: the handler domus dials nobody', async () => {
    mesh = await TestMesh.create();
    const caller = await mesh.add('caller');
    const handler = await mesh.add('handler');
    mesh.route(ECHO, 'handler');
    await RequestReplyServer.serve(handler, ECHO, counting(40));
    const client = await RequestReplyClient.for(caller);
    const replies = await Promise.all(
      ['a', 'b', 'c'].map((tag) =>
        lastValueFrom(client.request(ECHO, Buffer.from(tag)).pipe(toArray())),
      ),
    );
    expect(replies.map((r) => r.length)).toEqual([40, 40, 40]);
    // Nothing a request says can make the handler's domus connect anywhere.
    expect(handler.reporting.snapshot().dialAttempts).toBe(0);
    expect(caller.reporting.snapshot().callisOpened).toBe(1);
    expect(handler.reporting.snapshot().callisOpened).toBe(1);
  });

  it('fails with AddressMismatch, running no handler, when another identity serves the route', async () => {
    mesh = await TestMesh.create();
    const caller = await mesh.add('caller');
    const impostor = await mesh.add('impostor');
    let ran = 0;
    await RequestReplyServer.serve(impostor, ECHO, (req) => {
      ran++;
      return req.body;
    });
    mesh.route(ECHO, 'impostor');
    const client = await RequestReplyClient.for(caller);
    const err = await failure(
      client.request(ECHO, Buffer.from('x'), {
        expectedIdentity: 'spiffe://aurelia.local/handler',
        timeoutMs: 2000,
      }),
    );
    expect(err.kind).toBe(ErrorId.AddressMismatch);
    expect(err.message).toContain('spiffe://aurelia.local/impostor');
    expect(ran).toBe(0);
    // The same route still serves calls that expect whoever is there.
    expect(text(await lastValueFrom(client.request(ECHO, Buffer.from('y'))))).toBe('y');
  });
});

describe('A2 request/reply deadlines a server allows', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it("ends a handler at the server's maxRequestDeadlineMs when its caller asked for 300 s, and keeps a shorter caller deadline", async () => {
    mesh = await TestMesh.create();
    const caller = await mesh.add('caller');
    const handler = await mesh.add('handler', {
      config: fastConfig((b) => b.maxRequestDeadlineMs(400)),
    });
    mesh.route(ECHO, 'handler');
    const served: { lentMs: number; stopped?: unknown }[] = [];
    await RequestReplyServer.serve(handler, ECHO, (req, signal) => {
      const entry: { lentMs: number; stopped?: unknown } = { lentMs: req.deadline - Date.now() };
      served.push(entry);
      signal.addEventListener('abort', () => (entry.stopped = signal.reason));
      return new Observable<Buffer>(() => undefined);
    });
    const client = await RequestReplyClient.for(caller);

    const started = Date.now();
    const err = await failure(client.request(ECHO, Buffer.alloc(0), { timeoutMs: 300_000 }));
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain("the serving domus's maxRequestDeadlineMs (400 ms)");
    expectElapsedBetween(started, 400, 4000);
    expect(served[0].lentMs).toBeGreaterThan(300);
    expect(served[0].lentMs).toBeLessThanOrEqual(400);
    expect(AureliaError.is(served[0].stopped, ErrorId.SendTimeout)).toBe(true);

    // A caller asking for less keeps its own deadline.
    const short = await failure(client.request(ECHO, Buffer.alloc(0), { timeoutMs: 200 }));
    expect(short.kind).toBe(ErrorId.SendTimeout);
    expect(served[1].lentMs).toBeLessThanOrEqual(200);

    // The cap is read at each request: raised live, a later call is lent more.
    handler.config.update({ maxRequestDeadlineMs: 250_000 });
    const long = client.request(ECHO, Buffer.alloc(0), { timeoutMs: 300_000 }).subscribe({
      error: () => undefined,
    });
    await eventually(() => served.length === 3, 'the third request to reach its handler');
    expect(served[2].lentMs).toBeGreaterThan(200_000);
    long.unsubscribe();
  });
});

describe('A2 request/reply under faults', () => {
  let mesh: TestMesh;
  let proxy: FaultProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await mesh.close();
  });

  it('finishes a streamed reply across a cut connection without losing or repeating values', async () => {
    mesh = await TestMesh.create();
    const caller = await mesh.add('caller');
    const handler = await mesh.add('handler');
    const port = handler.localAddr.port as number;
    proxy = await FaultProxy.start({ host: '127.0.0.1', port });
    mesh.resolver.insert(ECHO, DomusAddr.tcp('127.0.0.1', proxy.port));
    let emit: ((b: Buffer) => void) | undefined;
    let done: (() => void) | undefined;
    await RequestReplyServer.serve(
      handler,
      ECHO,
      () =>
        new Observable<Buffer>((s) => {
          emit = (b) => s.next(b);
          done = () => s.complete();
        }),
    );
    const client = await RequestReplyClient.for(caller);
    const all = lastValueFrom(client.request(ECHO, Buffer.alloc(0)).pipe(toArray()));
    await eventually(() => emit !== undefined, 'the handler to start');
    emit!(Buffer.from('a'));
    await eventually(() => proxy!.connections > 0, 'the request connection');
    proxy.cut();
    emit!(Buffer.from('b'));
    done!();
    expect((await all).map(text)).toEqual(['a', 'b']);
  });

  it('ends a handler its request reached late with SendTimeout as soon as the caller gives up', async () => {
    mesh = await TestMesh.create();
    // A refused first dial is retried after 2 s: the request arrives 2 s into a 3 s call.
    const caller = await mesh.add('caller', {
      config: fastConfig((b) => b.reconnectBackoffMs([2000])),
    });
    const handler = await mesh.add('handler');
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: handler.localAddr.port as number });
    mesh.resolver.insert(ECHO, DomusAddr.tcp('127.0.0.1', proxy.port));
    let startedAt: number | undefined;
    let stopped: { at: number; reason: unknown } | undefined;
    await RequestReplyServer.serve(handler, ECHO, (_req, signal) => {
      startedAt = Date.now();
      signal.addEventListener('abort', () => (stopped = { at: Date.now(), reason: signal.reason }));
      return new Observable<Buffer>(() => undefined);
    });
    proxy.refuse();
    const dialFailed = firstMatch<DomusReportingEvent>(
      caller.reporting.events$,
      (e) => e.type === 'PeerDialFailed',
      'the refused dial',
    );
    const client = await RequestReplyClient.for(caller);
    const outcome = failure(client.request(ECHO, Buffer.alloc(0), { timeoutMs: 3000 }));
    await dialFailed;
    proxy.forward();
    await eventually(() => startedAt !== undefined, 'the late request to start the handler');
    const err = await outcome;
    const failedAt = Date.now();
    expect(err.kind).toBe(ErrorId.SendTimeout);
    // The handler counts 3 s from the request's arrival; the caller's CANCEL stops it first.
    await eventually(() => stopped !== undefined, 'the handler to be stopped');
    // Before the handler's own 3 s from arrival would end it (about 2 s after the caller gave up),
    // and within a bound generous for a busy machine.
    expect(stopped!.at).toBeLessThan(startedAt! + 3000);
    expect(stopped!.at - failedAt).toBeLessThan(2000);
    expect(AureliaError.is(stopped!.reason, ErrorId.SendTimeout)).toBe(true);
  });

  it('fails a streaming call with PeerRestarted when the handler domus restarts', async () => {
    mesh = await TestMesh.create();
    const caller = await mesh.add('caller');
    const first = await mesh.add('handler');
    const port = first.localAddr.port as number;
    proxy = await FaultProxy.start({ host: '127.0.0.1', port });
    mesh.resolver.insert(ECHO, DomusAddr.tcp('127.0.0.1', proxy.port));
    let started = false;
    await RequestReplyServer.serve(first, ECHO, () => {
      started = true;
      return new Observable<Buffer>((s) => s.next(Buffer.from('x')));
    });
    const client = await RequestReplyClient.for(caller);
    const seen: string[] = [];
    const outcome = new Promise<unknown>((resolve) =>
      client.request(ECHO, Buffer.alloc(0), { timeoutMs: 5000 }).subscribe({
        next: (b) => seen.push(text(b)),
        error: resolve,
        complete: () => resolve(undefined),
      }),
    );
    await eventually(() => started && seen.length === 1, 'the first reply');
    // The handler's domus "crashes": its connection drops and a new process answers there.
    const second = await mesh.add('handler-2');
    await RequestReplyServer.serve(second, ECHO, counting(1));
    proxy.retarget({ host: '127.0.0.1', port: second.localAddr.port as number });
    proxy.cut();
    const err = await outcome;
    expect(AureliaError.is(err, ErrorId.PeerRestarted)).toBe(true);
    expect(seen).toEqual(['x']);
  });
});
