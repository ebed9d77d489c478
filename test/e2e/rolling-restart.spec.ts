// Three replicas of a Nest service in their own processes behind one route: a rolling restart
// under load fails nothing and runs every emit once, a SIGKILL fails only what may have run on
// the killed replica, and a slow replica gets a small share of the calls.
import type { INestApplicationContext } from '@nestjs/common';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { requireBuild } from '../support/built.js';
import { eventually } from '../support/mesh.js';
import { makeTestPki, writeTestNodeFiles, type TestPkiFiles } from '../support/pki.js';
import { unusedPort } from '../support/ports.js';
import { ReplicaLedger, ReplicaProcess, Traffic, tally } from '../support/replicas.js';
import { callerApp, serviceOptions, FAST } from '../nest/fixtures.js';

requireBuild();

const NAMES = ['r1', 'r2', 'r3'];
/** The replicas' own settings: a drain long enough for any call in flight on a busy machine. */
const REPLICA_CONFIG = { drainTimeoutMs: 10_000, reconnectBackoffMs: [20, 50, 100] };
const KEEPALIVE_MS = 1000;

describe('replicas in child processes behind one route', () => {
  let files: TestPkiFiles;
  let ledger: ReplicaLedger;
  let caller: INestApplicationContext | undefined;
  let addresses: string[];
  const processes: ReplicaProcess[] = [];
  let pki: Awaited<ReturnType<typeof makeTestPki>>;

  beforeAll(async () => {
    pki = await makeTestPki();
    files = await writeTestNodeFiles(await pki.node('billing'));
  });
  afterAll(() => files?.cleanup());

  beforeEach(async () => {
    ledger = new ReplicaLedger();
    addresses = [];
    for (let i = 0; i < NAMES.length; i++) addresses.push(`tls://127.0.0.1:${await unusedPort()}`);
  });
  afterEach(async () => {
    await caller?.close();
    caller = undefined;
    for (const p of processes.splice(0)) p.kill();
  });

  async function start(i: number, delayMs = 0): Promise<ReplicaProcess> {
    const replica = await ReplicaProcess.start(NAMES[i], addresses[i], files, ledger, {
      delayMs,
      config: REPLICA_CONFIG,
    });
    processes.push(replica);
    return replica;
  }

  async function client(): Promise<ClientAurelia> {
    caller = await callerApp(
      await serviceOptions(pki, 'orders', {
        routes: { 'billing.*': addresses },
        requestTimeoutMs: 15_000,
        config: { ...FAST, sendTimeoutMs: 15_000, keepaliveIntervalMs: KEEPALIVE_MS },
      }),
    );
    return caller.get(ClientAurelia);
  }

  it('restarts every replica in turn under send() and emit() with no failed call and every emit run once', async () => {
    const replicas = [await start(0), await start(1), await start(2)];
    const traffic = new Traffic(await client(), 16);
    await eventually(() => traffic.outcomes.length >= 300, 'traffic to flow', 20_000);

    for (let i = 0; i < replicas.length; i++) {
      const old = replicas[i];
      expect(await old.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(old.stopped).toBe(true);
      replicas[i] = await start(i);
      // The restarted replica is back in rotation before the next one stops.
      const servedBefore = ledger.servedBy(NAMES[i]);
      await eventually(
        () => ledger.servedBy(NAMES[i]) >= servedBefore + 50,
        `replica ${NAMES[i]} to serve again`,
        20_000,
      );
    }
    const total = traffic.outcomes.length;
    await eventually(() => traffic.outcomes.length >= total + 300, 'traffic after the restarts');
    await traffic.stop();

    const outcomes = traffic.outcomes;
    expect(tally(outcomes)).toEqual({ ok: outcomes.length });
    // A replica's line may reach us just after the answer did.
    await eventually(
      () => ledger.events.size + ledger.calls.size >= outcomes.length,
      'every replica to report what it ran',
    );
    expect(ledger.duplicates()).toEqual([]);
    // Every call ran on exactly one replica, and answered from there.
    for (const o of outcomes) {
      const ran = (o.kind === 'call' ? ledger.calls : ledger.events).get(o.key);
      expect({ key: o.key, ran }).toEqual({ key: o.key, ran: [o.replica ?? ran?.[0]] });
    }
    expect(ledger.events.size + ledger.calls.size).toBe(outcomes.length);
    for (const r of replicas) expect(r.unexpected).toEqual([]);
  });

  it('after a SIGKILL fails only what may have run on the killed replica, with OutcomeUnknown, and sends new calls to the others', async () => {
    const replicas = [await start(0, 20), await start(1, 20), await start(2, 20)];
    const traffic = new Traffic(await client(), 16);
    await eventually(() => ledger.servedBy('r2') >= 30, 'r2 to serve', 20_000);
    const killedAt = Date.now();
    await replicas[1].stop('SIGKILL');
    const settled = (): boolean =>
      traffic.outcomes.filter((o) => o.startedAt > killedAt + KEEPALIVE_MS).length >= 200;
    await eventually(settled, 'traffic one keepalive interval after the kill', 20_000);
    await traffic.stop();

    const failed = traffic.failed;
    expect(new Set(failed.map((o) => o.result))).toEqual(
      new Set(failed.length > 0 ? ['OutcomeUnknown'] : []),
    );
    for (const o of failed) {
      // Started before the caller could know of the kill; never run elsewhere (never repeated).
      expect(o.startedAt).toBeLessThanOrEqual(killedAt + KEEPALIVE_MS);
      const ran = (o.kind === 'call' ? ledger.calls : ledger.events).get(o.key) ?? [];
      expect(ran.filter((r) => r !== 'r2')).toEqual([]);
    }
    // At most the calls in flight at the kill could fail.
    expect(failed.length).toBeLessThanOrEqual(16);
    // Everything started one keepalive interval after the kill succeeded, on the others.
    const later = traffic.outcomes.filter((o) => o.startedAt > killedAt + KEEPALIVE_MS);
    expect(later.length).toBeGreaterThan(100);
    expect(tally(later)).toEqual({ ok: later.length });
    expect(later.filter((o) => o.replica === 'r2')).toEqual([]);
    expect(ledger.duplicates()).toEqual([]);
  });

  it('gives a replica ten times slower a small share of the calls', async () => {
    await start(0, 5);
    await start(1, 5);
    await start(2, 50);
    const traffic = new Traffic(await client(), 16);
    await eventually(() => traffic.outcomes.length >= 1500, '1 500 calls and emits', 60_000);
    await traffic.stop();
    expect(traffic.failed).toEqual([]);
    const served = NAMES.map((name) => ledger.servedBy(name));
    const share = served[2] / served.reduce((a, b) => a + b, 0);
    // An even spread (a balancer blind to load) would give it a third; a busy machine slows the
    // fast replicas too (0.15 was once exceeded at 0.154 under load 10), so the bound is 0.2.
    expect(share).toBeLessThan(0.2);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
  });
});
