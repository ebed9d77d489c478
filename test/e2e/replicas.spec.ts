import {
  AureliaError,
  ErrorId,
  JsonCodec,
  ReplicaSet,
  type Domus,
  type DomusReportingEvent,
  type Taberna,
} from '../../lib/index.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';

interface Job {
  n: number;
}
const codec = new JsonCodec<Job>();
const JOBS = 40n;
const REPLICAS = ['billing-1', 'billing-2', 'billing-3'];

/** Accepts every job of `taberna` after `delayMs`, counting them, until the taberna closes. */
function serve(taberna: Taberna<Job>, delayMs = 0): { count: () => number; done: Promise<void> } {
  let count = 0;
  const done = (async () => {
    try {
      for await (const request of taberna) {
        count++;
        if (delayMs === 0) request.accept();
        else setTimeout(() => request.accept(), delayMs);
      }
    } catch (err) {
      if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
    }
  })();
  return { count: () => count, done };
}

/** Sends `total` jobs from `concurrency` loops; resolves with how many failed, by error kind. */
async function sendJobs(
  caller: Domus,
  total: number,
  concurrency: number,
): Promise<Map<string, number>> {
  const failures = new Map<string, number>();
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < total) {
      const n = next++;
      try {
        await caller.send(codec, JOBS, { n });
      } catch (err) {
        const kind = AureliaError.is(err) ? ErrorId[err.kind] : String(err);
        failures.set(kind, (failures.get(kind) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return failures;
}

describe('replicas behind one route', () => {
  let mesh: TestMesh;
  let caller: Domus;
  const served = new Map<string, ReturnType<typeof serve>>();

  async function startReplicas(delays: readonly number[] = [0, 0, 0]): Promise<void> {
    for (const [i, name] of REPLICAS.entries()) {
      const domus = await mesh.add(name);
      served.set(name, serve(await domus.taberna(JOBS, codec), delays[i]));
    }
    mesh.resolver.insert(
      JOBS,
      REPLICAS.map((name) => mesh.get(name).localAddr),
    );
  }

  beforeEach(async () => {
    mesh = await TestMesh.create();
    caller = await mesh.add('caller', {
      config: fastConfig((b) => b.sendTimeoutMs(3000)),
    });
    served.clear();
  });

  afterEach(async () => {
    await mesh.close();
    await Promise.all([...served.values()].map((s) => s.done));
  });

  it('spreads sends over every replica', async () => {
    await startReplicas();
    const failures = await sendJobs(caller, 600, 12);
    expect(failures.size).toBe(0);
    const counts = REPLICAS.map((name) => served.get(name)!.count());
    expect(counts.reduce((a, b) => a + b)).toBe(600);
    for (const count of counts) expect(count).toBeGreaterThan(60);
    const replicas = caller.reporting.replicas();
    expect(replicas.map((r) => r.replica).sort()).toEqual(
      REPLICAS.map((name) => mesh.get(name).localAddr.key).sort(),
    );
    for (const r of replicas) expect(r.outstanding).toBe(0);
  });

  it('gives a replica ten times slower a small share', async () => {
    await startReplicas([2, 2, 40]);
    const failures = await sendJobs(caller, 600, 12);
    expect(failures.size).toBe(0);
    const slow = served.get('billing-3')!.count();
    // An even spread would give it 200.
    expect(slow).toBeLessThan(90);
  });

  it('ejects a replica that went away and sends the next calls to the others', async () => {
    await startReplicas();
    const events: DomusReportingEvent[] = [];
    const sub = caller.reporting.events$.subscribe((e) => events.push(e));
    try {
      expect((await sendJobs(caller, 60, 6)).size).toBe(0);
      const gone = mesh.get('billing-3');
      const goneAddr = gone.localAddr.key;
      const ejected = firstMatch(
        caller.reporting.events$,
        (e) => e.type === 'ReplicaEjected' && e.address === goneAddr,
        'the ejection of the stopped replica',
      );
      await gone.shutdown();
      // Sends keep flowing; those that reach the stopped replica before its ejection fail.
      const during = sendJobs(caller, 200, 6);
      await ejected;
      await during;
      const before = REPLICAS.map((name) => served.get(name)!.count());
      const after = await sendJobs(caller, 300, 6);
      expect(after.size).toBe(0);
      expect(served.get('billing-3')!.count()).toBe(before[2]);
      expect(served.get('billing-1')!.count() + served.get('billing-2')!.count()).toBe(
        before[0] + before[1] + 300,
      );
      expect(caller.reporting.snapshot().replicaEjections).toBeGreaterThanOrEqual(1);
      expect(caller.reporting.replicas().find((r) => r.replica === goneAddr)?.ejected).toBe(true);
    } finally {
      sub.unsubscribe();
    }
  });

  it('probes a replica back in after its ejection once it is reachable again', async () => {
    await startReplicas();
    const third = mesh.get('billing-3');
    const addr = third.localAddr;
    const ejected = firstMatch(
      caller.reporting.events$,
      (e) => e.type === 'ReplicaEjected' && e.address === addr.key,
      'the ejection',
    );
    await third.shutdown();
    await Promise.all([sendJobs(caller, 60, 6), ejected]);
    // The same address comes back (a restarted replica), with a fresh certificate identity.
    const back = await mesh.add('billing-3b', { addr });
    const backServed = serve(await back.taberna(JOBS, codec));
    served.set('billing-3b', backServed);
    const readmitted = firstMatch(
      caller.reporting.events$,
      (e) => e.type === 'ReplicaReadmitted' && e.address === addr.key,
      'the readmission',
      8000,
    );
    // Keep sending until the probe got through.
    let stop = false;
    const traffic = (async () => {
      while (!stop) await sendJobs(caller, 30, 3);
    })();
    await readmitted;
    // Readmitted by a probe; the traffic goes on until a job reaches it (bounded).
    await eventually(() => backServed.count() > 0, 'the readmitted replica to serve a job', 8000);
    stop = true;
    await traffic;
    const before = backServed.count();
    await sendJobs(caller, 300, 6);
    expect(backServed.count()).toBeGreaterThan(before + 30);
  });

  it('keeps a hash-balanced route on one replica', async () => {
    await startReplicas();
    mesh.resolver.insert(
      JOBS,
      ReplicaSet.of(
        REPLICAS.map((name) => mesh.get(name).localAddr),
        'hash',
      ),
    );
    expect((await sendJobs(caller, 90, 3)).size).toBe(0);
    const counts = REPLICAS.map((name) => served.get(name)!.count()).sort((a, b) => a - b);
    expect(counts).toEqual([0, 0, 90]);
  });
});
