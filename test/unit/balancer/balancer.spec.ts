import fc from 'fast-check';
import { type Balancing, ReplicaBalancer } from '../../../lib/engine/balancer/balancer.js';
import { rendezvousPick } from '../../../lib/engine/balancer/hash.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { seeded } from '../../support/random.js';

/**
 * Runs `calls` sends through `balancer` from `concurrency` callers that each send again as soon
 * as their previous send settles; replica i answers after `latencies[i]` ms. Returns how many
 * sends each replica got.
 */
function simulate(
  balancer: ReplicaBalancer,
  replicas: readonly string[],
  latencies: readonly number[],
  concurrency: number,
  calls: number,
  balancing: Balancing = 'least-loaded',
): Map<string, number> {
  const counts = new Map<string, number>(replicas.map((r) => [r, 0]));
  // In-flight sends ordered by completion time (a small array is enough here).
  const inFlight: { at: number; replica: string; latency: number }[] = [];
  let now = 0;
  let sent = 0;
  const start = (): void => {
    const { replica } = balancer.pick(replicas, balancing, now);
    balancer.started(replica);
    const latency = latencies[replicas.indexOf(replica)];
    inFlight.push({ at: now + latency, replica, latency });
    counts.set(replica, counts.get(replica)! + 1);
    sent++;
  };
  for (let i = 0; i < concurrency; i++) start();
  while (inFlight.length > 0) {
    inFlight.sort((a, b) => a.at - b.at);
    const done = inFlight.shift()!;
    now = done.at;
    balancer.settled(done.replica, true, now, done.latency);
    if (sent < calls) start();
  }
  return counts;
}

const THREE = Object.freeze(['tls://10.0.0.1:7000', 'tls://10.0.0.2:7000', 'tls://10.0.0.3:7000']);

describe('ReplicaBalancer least-loaded (power of two choices over a latency EWMA)', () => {
  it('gives a replica ten times slower a small share of the calls', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.integer({ min: 2, max: 32 }),
        (seed, concurrency) => {
          const balancer = new ReplicaBalancer({ random: seeded(seed) });
          const counts = simulate(balancer, THREE, [2, 2, 20], concurrency, 3000);
          const slowShare = counts.get(THREE[2])! / 3000;
          // An even spread would give it a third; it should get well under a tenth.
          expect(slowShare).toBeLessThan(0.1);
          expect(counts.get(THREE[0])! + counts.get(THREE[1])!).toBeGreaterThan(2700);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('spreads calls about evenly over equal replicas', () => {
    const balancer = new ReplicaBalancer({ random: seeded(7) });
    const counts = simulate(balancer, THREE, [5, 5, 5], 12, 6000);
    for (const r of THREE) {
      expect(counts.get(r)!).toBeGreaterThan(1500);
      expect(counts.get(r)!).toBeLessThan(2500);
    }
  });

  it('prefers the replica with fewer outstanding sends when latencies are equal', () => {
    const balancer = new ReplicaBalancer({ random: seeded(3) });
    const two = ['a', 'b'];
    balancer.settled('a', true, 0, 5);
    balancer.started('a');
    balancer.started('a');
    expect(balancer.pick(two, 'least-loaded', 0).replica).toBe('b');
  });

  it('tries a slow replica again once its estimate decayed while it was not measured', () => {
    const balancer = new ReplicaBalancer({ random: seeded(11), latencyDecayMs: 1000 });
    const two = ['fast', 'slow'];
    balancer.started('fast');
    balancer.settled('fast', true, 0, 1);
    balancer.started('slow');
    balancer.settled('slow', true, 0, 100);
    expect(balancer.pick(two, 'least-loaded', 0).replica).toBe('fast');
    // Ten seconds later, without samples, 100 ms has decayed well below the fast one's
    // fresh sample: the slow one is measured again.
    balancer.started('fast');
    balancer.settled('fast', true, 10_000, 1);
    expect(balancer.pick(two, 'least-loaded', 10_000).replica).toBe('slow');
  });
});

describe('ReplicaBalancer round-robin', () => {
  it('gives every healthy replica the same number of picks, in turn', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 20 }), (n, rounds) => {
        const replicas = Array.from({ length: n }, (_, i) => `r${i}`);
        const balancer = new ReplicaBalancer();
        const counts = new Map<string, number>();
        for (let i = 0; i < n * rounds; i++) {
          const { replica } = balancer.pick(replicas, 'round-robin', i);
          counts.set(replica, (counts.get(replica) ?? 0) + 1);
        }
        expect([...counts.values()]).toEqual(replicas.map(() => rounds));
      }),
    );
  });

  it('keeps a separate place per route', () => {
    const balancer = new ReplicaBalancer();
    const a = ['x', 'y'];
    const b = ['x', 'y'];
    const picks: string[] = [];
    for (let i = 0; i < 4; i++) {
      picks.push(balancer.pick(a, 'round-robin', 0).replica);
      picks.push(balancer.pick(b, 'round-robin', 0).replica);
    }
    expect(picks).toEqual(['x', 'x', 'y', 'y', 'x', 'x', 'y', 'y']);
  });

  it('skips an ejected replica', () => {
    const balancer = new ReplicaBalancer({ failuresToEject: 1 });
    const replicas = ['a', 'b', 'c'];
    balancer.started('b');
    balancer.settled('b', false, 0);
    const picks = Array.from(
      { length: 6 },
      () => balancer.pick(replicas, 'round-robin', 10).replica,
    );
    expect(picks).not.toContain('b');
    expect(new Set(picks)).toEqual(new Set(['a', 'c']));
  });
});

describe('ReplicaBalancer hash', () => {
  const keys = fc.array(fc.string({ minLength: 1, maxLength: 24 }), {
    minLength: 1,
    maxLength: 50,
  });

  it('sends a key to the same replica every time', () => {
    fc.assert(
      fc.property(keys, (ks) => {
        const balancer = new ReplicaBalancer();
        for (const k of ks) {
          const first = balancer.pick(THREE, 'hash', 0, k).replica;
          for (let i = 0; i < 3; i++)
            expect(balancer.pick(THREE, 'hash', i, k).replica).toBe(first);
        }
      }),
    );
  });

  it('moves only keys to the new replica when one is added', () => {
    fc.assert(
      fc.property(keys, fc.integer({ min: 1, max: 8 }), (ks, n) => {
        const before = Array.from({ length: n }, (_, i) => `tls://10.0.1.${i}:7000`);
        const added = 'tls://10.0.2.1:7000';
        const after = [...before, added];
        for (const k of ks) {
          const was = rendezvousPick(k, before);
          const is = rendezvousPick(k, after);
          if (is !== was) expect(is).toBe(added);
        }
      }),
    );
  });

  it('spreads many keys over every replica and moves about a quarter when a fourth is added', () => {
    const ks = Array.from({ length: 4000 }, (_, i) => `user-${i}`);
    const counts = new Map<string, number>();
    for (const k of ks) {
      const r = rendezvousPick(k, THREE);
      counts.set(r, (counts.get(r) ?? 0) + 1);
    }
    for (const r of THREE) expect(counts.get(r)!).toBeGreaterThan(1000);
    const four = [...THREE, 'tls://10.0.0.4:7000'];
    const moved = ks.filter((k) => rendezvousPick(k, THREE) !== rendezvousPick(k, four)).length;
    expect(moved).toBeGreaterThan(700);
    expect(moved).toBeLessThan(1300);
  });

  it('moves the keys of an ejected replica to the others, and back when it is readmitted', () => {
    const balancer = new ReplicaBalancer({ failuresToEject: 1, ejectionMs: 100 });
    const k = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8'].find(
      (key) => balancer.pick(THREE, 'hash', 0, key).replica === THREE[1],
    )!;
    expect(k).toBeDefined();
    balancer.started(THREE[1]);
    balancer.settled(THREE[1], false, 0);
    expect(balancer.pick(THREE, 'hash', 50, k).replica).not.toBe(THREE[1]);
    const probe = balancer.pick(THREE, 'hash', 100, k);
    expect(probe).toEqual({
      replica: THREE[1],
      decision: { type: 'ReplicaProbed', replica: THREE[1] },
    });
    balancer.started(THREE[1]);
    expect(balancer.settled(THREE[1], true, 101, 1)?.type).toBe('ReplicaReadmitted');
    expect(balancer.pick(THREE, 'hash', 102, k).replica).toBe(THREE[1]);
  });
});

describe('ReplicaBalancer failure accrual', () => {
  it('ejects a replica at the configured number of consecutive failures, not before', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), (threshold) => {
        const balancer = new ReplicaBalancer({ failuresToEject: threshold, ejectionMs: 500 });
        for (let i = 1; i < threshold; i++) {
          balancer.started('a');
          expect(balancer.settled('a', false, i)).toBeUndefined();
        }
        balancer.started('a');
        expect(balancer.settled('a', false, threshold)).toEqual({
          type: 'ReplicaEjected',
          replica: 'a',
          failures: threshold,
          ejections: 1,
          until: threshold + 500,
        });
        expect(balancer.isEjected('a', threshold + 499)).toBe(true);
      }),
    );
  });

  it('forgives failures separated by a success', () => {
    const balancer = new ReplicaBalancer({ failuresToEject: 3 });
    for (let round = 0; round < 10; round++) {
      for (const ok of [false, false, true]) {
        balancer.started('a');
        expect(balancer.settled('a', ok, round, 1)).toBeUndefined();
      }
    }
    expect(balancer.isEjected('a', 10)).toBe(false);
  });

  it('probes an ejected replica with exactly one send after the backoff, doubling it on failure', () => {
    const balancer = new ReplicaBalancer({ ejectionMs: 1000, maxEjectionMs: 3000 });
    const replicas = ['a', 'b'];
    expect(balancer.connectFailed('a', 0)).toMatchObject({ type: 'ReplicaEjected', until: 1000 });
    for (let t = 0; t < 1000; t += 100)
      expect(balancer.pick(replicas, 'least-loaded', t).replica).toBe('b');
    expect(balancer.pick(replicas, 'least-loaded', 1000).decision).toEqual({
      type: 'ReplicaProbed',
      replica: 'a',
    });
    balancer.started('a');
    // While the probe is out, nothing else goes there.
    for (let t = 1000; t < 1100; t += 10)
      expect(balancer.pick(replicas, 'least-loaded', t).replica).toBe('b');
    expect(balancer.settled('a', false, 1100)).toMatchObject({ ejections: 2, until: 3100 });
    expect(balancer.pick(replicas, 'least-loaded', 3000).replica).toBe('b');
    expect(balancer.pick(replicas, 'least-loaded', 3100).decision?.type).toBe('ReplicaProbed');
    balancer.started('a');
    // The third ejection is capped at maxEjectionMs.
    expect(balancer.settled('a', false, 3200)).toMatchObject({ ejections: 3, until: 6200 });
    expect(balancer.pick(replicas, 'least-loaded', 6200).decision?.type).toBe('ReplicaProbed');
    balancer.started('a');
    expect(balancer.settled('a', true, 6201, 1)).toEqual({
      type: 'ReplicaReadmitted',
      replica: 'a',
    });
    expect(balancer.isEjected('a', 6201)).toBe(false);
    // A readmitted replica starts its backoff over.
    expect(balancer.connectFailed('a', 7000)).toMatchObject({ ejections: 1, until: 8000 });
  });

  it('readmits a replica whose probe was a connection that came up', () => {
    const balancer = new ReplicaBalancer({ ejectionMs: 1000 });
    const replicas = ['a', 'b'];
    balancer.pick(replicas, 'round-robin', 0);
    balancer.connectFailed('a', 0);
    // A link coming up during the ejection changes nothing; one during the probe readmits.
    expect(balancer.connected('a', 500)).toBeUndefined();
    expect(balancer.isEjected('a', 500)).toBe(true);
    expect(balancer.pick(replicas, 'round-robin', 1000).decision?.type).toBe('ReplicaProbed');
    expect(balancer.connected('a', 1001)).toEqual({ type: 'ReplicaReadmitted', replica: 'a' });
    expect(balancer.isEjected('a', 1001)).toBe(false);
  });

  it('probes again when a probe never reported back within maxEjectionMs', () => {
    const balancer = new ReplicaBalancer({ ejectionMs: 1000, maxEjectionMs: 4000 });
    const replicas = ['a', 'b'];
    balancer.connectFailed('a', 0);
    expect(balancer.pick(replicas, 'least-loaded', 1000).decision?.type).toBe('ReplicaProbed');
    expect(balancer.pick(replicas, 'least-loaded', 4999).replica).toBe('b');
    expect(balancer.pick(replicas, 'least-loaded', 5000).decision?.type).toBe('ReplicaProbed');
  });

  it('counts a released send as neither success nor failure', () => {
    const balancer = new ReplicaBalancer({ failuresToEject: 2 });
    balancer.started('a');
    balancer.settled('a', false, 0);
    balancer.started('a');
    balancer.released('a');
    expect(balancer.outstanding('a')).toBe(0);
    balancer.started('a');
    expect(balancer.settled('a', false, 1)?.type).toBe('ReplicaEjected');
  });

  it('does not extend an ejection for dial failures while it lasts', () => {
    const balancer = new ReplicaBalancer({ ejectionMs: 1000 });
    expect(balancer.connectFailed('a', 0)?.type).toBe('ReplicaEjected');
    expect(balancer.connectFailed('a', 500)).toBeUndefined();
    expect(balancer.isEjected('a', 999)).toBe(true);
    expect(balancer.isEjected('a', 1000)).toBe(false);
  });

  it('never picks a replica named unavailable (draining) while another is available, ejected or not', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Balancing>('least-loaded', 'round-robin', 'hash'),
        fc.string(),
        fc.boolean(),
        (balancing, key, ejectOthers) => {
          const balancer = new ReplicaBalancer({ ejectionMs: 1000 });
          const draining = (r: string) => r === THREE[0];
          if (ejectOthers) for (const r of THREE.slice(1)) balancer.connectFailed(r, 0);
          for (let i = 0; i < 6; i++) {
            const { replica } = balancer.pick(THREE, balancing, 10, key, draining);
            expect(replica).not.toBe(THREE[0]);
          }
          // With every replica unavailable, the pick still names one of them.
          expect(THREE).toContain(balancer.pick(THREE, balancing, 10, key, () => true).replica);
        },
      ),
    );
  });

  it('still sends somewhere when every replica is ejected', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Balancing>('least-loaded', 'round-robin', 'hash'),
        (balancing) => {
          const balancer = new ReplicaBalancer({ ejectionMs: 1000 });
          for (const r of THREE) balancer.connectFailed(r, 0);
          expect(THREE).toContain(balancer.pick(THREE, balancing, 10, 'k').replica);
        },
      ),
    );
  });

  it('keeps outstanding counts exact under any interleaving of starts and settles', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...THREE), fc.boolean(), fc.boolean()), {
          maxLength: 200,
        }),
        (ops) => {
          const balancer = new ReplicaBalancer({ random: seeded(1) });
          const expected = new Map<string, number>();
          let now = 0;
          for (const [replica, start, ok] of ops) {
            now++;
            const open = expected.get(replica) ?? 0;
            if (start || open === 0) {
              balancer.started(replica);
              expected.set(replica, open + 1);
            } else {
              balancer.settled(replica, ok, now, 1);
              expected.set(replica, open - 1);
            }
          }
          for (const r of THREE) expect(balancer.outstanding(r)).toBe(expected.get(r) ?? 0);
          const reported = new Map(
            balancer.replicas(now).map((rep) => [rep.replica, rep.outstanding]),
          );
          for (const [r, n] of expected) expect(reported.get(r)).toBe(n);
        },
      ),
    );
  });

  it('forgets idle replicas but keeps busy and ejected ones', () => {
    const balancer = new ReplicaBalancer();
    balancer.started('busy');
    balancer.connectFailed('down', 0);
    balancer.started('idle');
    balancer.settled('idle', true, 0, 1);
    expect(balancer.forgetIdle(60_000, 60_000)).toBe(1);
    expect(
      balancer
        .replicas(60_000)
        .map((r) => r.replica)
        .sort(),
    ).toEqual(['busy', 'down']);
  });

  it('applies new ejection limits to later failures, keeping the ejection under way', () => {
    const balancer = new ReplicaBalancer({ failuresToEject: 5, ejectionMs: 1000 });
    balancer.connectFailed('a', 0);
    balancer.tune({ failuresToEject: 1, ejectionMs: 200, maxEjectionMs: 400 });
    expect(balancer.isEjected('a', 999)).toBe(true);
    balancer.started('b');
    expect(balancer.settled('b', false, 0)).toMatchObject({ type: 'ReplicaEjected', until: 200 });
    expect(() => balancer.tune({ ejectionMs: 500, maxEjectionMs: 100 })).toThrow(AureliaError);
    // A refused tuning changes nothing.
    balancer.started('c');
    expect(balancer.settled('c', false, 0)?.type).toBe('ReplicaEjected');
  });

  it('refuses an empty route and bad options with InvalidConfig', () => {
    expect(() => new ReplicaBalancer().pick([], 'least-loaded', 0)).toThrow(AureliaError);
    for (const options of [
      { failuresToEject: 0 },
      { ejectionMs: 1.5 },
      { ejectionMs: 2000, maxEjectionMs: 1000 },
    ]) {
      try {
        new ReplicaBalancer(options);
        throw new Error('accepted');
      } catch (err) {
        expect(AureliaError.is(err, ErrorId.InvalidConfig)).toBe(true);
      }
    }
  });
});
