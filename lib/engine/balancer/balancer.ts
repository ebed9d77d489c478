// Choosing a replica per send: load- and latency-aware picks, failure accrual and ejection.
import { AureliaError, ErrorId } from '../errors.js';
import { rendezvousPick } from './hash.js';

/**
 * How a route spreads its sends over its replicas:
 * - `'least-loaded'` (default): power of two choices — two replicas drawn at random, the one with
 *   the lower cost wins, cost being (outstanding sends + 1) × a peak latency EWMA that decays
 *   while a replica is not measured (the estimate Linkerd and tower balance on);
 * - `'round-robin'`: each healthy replica in turn;
 * - `'hash'`: rendezvous (highest random weight) hashing of the send's key, so a key sticks to one
 *   replica while it is healthy and adding a replica moves only the keys the new one wins.
 */
export type Balancing = 'least-loaded' | 'round-robin' | 'hash';

/** Every balancing policy, in documentation order. */
export const BALANCINGS: readonly Balancing[] = Object.freeze([
  'least-loaded',
  'round-robin',
  'hash',
]);

/** Tuning of a `ReplicaBalancer`; every duration is in milliseconds. */
export interface ReplicaBalancerOptions {
  /** Consecutive failed sends that eject a replica, 1..1000; default 5. */
  readonly failuresToEject?: number;
  /** How long a first ejection lasts, 1..3600000; default 1000. Doubles per repeated ejection. */
  readonly ejectionMs?: number;
  /** Longest ejection, at least `ejectionMs`, at most 3600000; default 30000. */
  readonly maxEjectionMs?: number;
  /** Time constant of the latency EWMA's decay, 1..600000; default 10000. */
  readonly latencyDecayMs?: number;
  /** Uniform random numbers in [0, 1) for the power-of-two draw; default `Math.random`. */
  readonly random?: () => number;
}

/** What the balancer decided about a replica's health; the caller reports it. */
export type ReplicaDecision =
  | {
      /** The replica is taken out of rotation until `until`. */
      readonly type: 'ReplicaEjected';
      readonly replica: string;
      /** Consecutive failures that led to it (at least `failuresToEject`, or 0 for a dial). */
      readonly failures: number;
      /** Ejections in a row, 1 for the first (the backoff doubles with each). */
      readonly ejections: number;
      /** When the replica may be probed again. */
      readonly until: number;
    }
  | {
      /** The ejection ended: this send is the one probe that decides the replica's fate. */
      readonly type: 'ReplicaProbed';
      readonly replica: string;
    }
  | {
      /** A probe succeeded: the replica is back in rotation. */
      readonly type: 'ReplicaReadmitted';
      readonly replica: string;
    };

/** A replica's state as `ReplicaBalancer.replicas()` reports it. */
export interface ReplicaReport {
  /** The replica's key (its address, as the caller named it). */
  readonly replica: string;
  /** Sends started and not yet settled. */
  readonly outstanding: number;
  /** The latency estimate in ms at the report's time; `undefined` before the first sample. */
  readonly latencyMs: number | undefined;
  /** Consecutive failures. */
  readonly failures: number;
  /** Whether it is out of rotation (ejected, or being probed). */
  readonly ejected: boolean;
  /** Times it was ejected since the balancer first saw it. */
  readonly ejectionsTotal: number;
}

interface ReplicaState {
  outstanding: number;
  /** Peak EWMA of the latency in ms; NaN before the first sample. */
  latency: number;
  sampledAt: number;
  failures: number;
  /** Ejections in a row (the backoff exponent); reset by a successful probe. */
  ejections: number;
  ejectionsTotal: number;
  /** 0 while in rotation; otherwise when the ejection ends. */
  ejectedUntil: number;
  /** A probe is in flight: not a candidate until it settles (or `maxEjectionMs` passed). */
  probing: boolean;
  probeStartedAt: number;
  /** Last time it was picked or settled, for `forgetIdle`. */
  usedAt: number;
}

const DEFAULT_FAILURES_TO_EJECT = 5;
const DEFAULT_EJECTION_MS = 1_000;
const DEFAULT_MAX_EJECTION_MS = 30_000;
const DEFAULT_LATENCY_DECAY_MS = 10_000;
/** Latency assumed when neither candidate of a draw has been measured. */
const UNMEASURED_LATENCY_MS = 1;
/** Floor of a latency estimate, so a replica answering in ~0 ms still counts its queue. */
const LATENCY_FLOOR_MS = 0.01;

/**
 * The balancing state of one domus, keyed by replica (an address key): outstanding sends, a
 * latency estimate and failure accrual per replica, and a round-robin cursor per route. Pure:
 * it owns no timer and does no I/O; every method that depends on time takes `now`
 * (`Date.now()`-based ms). The domus calls `pick` per send, `started` when the send is handed to
 * the replica, `settled` when it ends and `connectFailed` when dialling the replica failed, and
 * reports the decisions these return.
 *
 * A replica is ejected after `failuresToEject` consecutive failed sends (or at once when it cannot
 * be dialled); after its ejection (`ejectionMs`, doubling per repeated ejection up to
 * `maxEjectionMs`) the next pick that may choose it sends exactly one probe there: a success
 * readmits it, a failure ejects it again for longer. When every replica of a route is out of
 * rotation, the pick ignores ejections (a send tried beats a send failed without trying).
 */
export class ReplicaBalancer {
  #failuresToEject: number;
  #ejectionMs: number;
  #maxEjectionMs: number;
  readonly #decayMs: number;
  readonly #random: () => number;
  readonly #replicas = new Map<string, ReplicaState>();
  /** Round-robin position per route object (a route's replica list). */
  readonly #cursors = new WeakMap<object, number>();

  /**
   * Creates a balancer. Throws `AureliaError(InvalidConfig)` naming the option when a number is
   * not an integer in its range or `random` is not a function.
   */
  constructor(options: ReplicaBalancerOptions = {}) {
    const limits = checkLimits(options);
    this.#failuresToEject = limits.failuresToEject;
    this.#ejectionMs = limits.ejectionMs;
    this.#maxEjectionMs = limits.maxEjectionMs;
    this.#decayMs = integer(
      'latencyDecayMs',
      options.latencyDecayMs ?? DEFAULT_LATENCY_DECAY_MS,
      1,
      600_000,
    );
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'random must be a function returning numbers in [0, 1)',
      );
    }
    this.#random = options.random ?? Math.random;
  }

  /**
   * Changes the ejection limits (a live configuration update); ejections under way keep their
   * end. Throws `AureliaError(InvalidConfig)` like the constructor, changing nothing.
   */
  tune(
    limits: Pick<ReplicaBalancerOptions, 'failuresToEject' | 'ejectionMs' | 'maxEjectionMs'>,
  ): void {
    const checked = checkLimits(limits);
    this.#failuresToEject = checked.failuresToEject;
    this.#ejectionMs = checked.ejectionMs;
    this.#maxEjectionMs = checked.maxEjectionMs;
  }

  /**
   * Chooses one of `replicas` (keys, non-empty; keep the same array object per route so
   * round-robin keeps its place) by `balancing`; `key` is the hashing key of a `'hash'` pick.
   * Replicas `unavailable` names (draining, or the one a send is moving away from) are chosen
   * only when every replica is unavailable or ejected. Returns the chosen key and, when the pick
   * is the probe of an ejected replica, the `ReplicaProbed` decision. Throws
   * `AureliaError(InvalidConfig)` for an empty list.
   */
  pick(
    replicas: readonly string[],
    balancing: Balancing,
    now: number,
    key = '',
    unavailable?: (replica: string) => boolean,
  ): { readonly replica: string; readonly decision?: ReplicaDecision } {
    const n = replicas.length;
    if (n === 0) {
      throw new AureliaError(ErrorId.InvalidConfig, 'a route must name at least one replica');
    }
    if (n === 1) return this.#chosen(replicas[0], now);
    // A replica whose ejection ended gets its probe first, so it returns to rotation promptly.
    const candidates: string[] = [];
    let available: string[] | undefined;
    for (let i = 0; i < n; i++) {
      const r = replicas[i];
      if (unavailable?.(r) === true) continue;
      (available ??= []).push(r);
      const state = this.#replicas.get(r);
      if (state === undefined || state.ejectedUntil === 0) candidates.push(r);
      else if (now >= state.ejectedUntil && (!state.probing || this.#probeLost(state, now))) {
        return this.#probe(r, state, now);
      }
    }
    const pool =
      candidates.length > 0
        ? candidates
        : unavailable === undefined || available === undefined
          ? replicas
          : available;
    if (pool.length === 1) return this.#chosen(pool[0], now);
    switch (balancing) {
      case 'round-robin':
        return this.#chosen(this.#roundRobin(replicas, pool), now);
      case 'hash':
        return this.#chosen(rendezvousPick(key, pool), now);
      default:
        return this.#chosen(this.#twoChoices(pool, now), now);
    }
  }

  /** Counts a send handed to `replica` as outstanding until `settled`. */
  started(replica: string): void {
    this.#state(replica, NaN).outstanding++;
  }

  /**
   * Ends a send `started` on `replica`: `ok` false counts a failure of the replica (it could not
   * be reached, lost the link, or did not answer in time), true resets its failures and, with
   * `latencyMs`, feeds its latency estimate. Returns the decision this caused: `ReplicaEjected`
   * at the `failuresToEject`-th consecutive failure (or a failed probe), `ReplicaReadmitted` for
   * a successful probe.
   */
  settled(
    replica: string,
    ok: boolean,
    now: number,
    latencyMs?: number,
  ): ReplicaDecision | undefined {
    const state = this.#replicas.get(replica);
    if (state === undefined) return undefined;
    if (state.outstanding > 0) state.outstanding--;
    state.usedAt = now;
    if (ok) {
      if (latencyMs !== undefined && latencyMs >= 0) this.#sample(state, latencyMs, now);
      state.failures = 0;
      if (state.ejectedUntil === 0) return undefined;
      if (!state.probing) return undefined;
      return this.#readmit(replica, state);
    }
    state.failures++;
    if (state.probing || (state.ejectedUntil === 0 && state.failures >= this.#failuresToEject)) {
      return this.#eject(replica, state, now, state.failures);
    }
    return undefined;
  }

  /**
   * Reports that a connection to `replica` came up. When its probe is out (the caller probed by
   * dialling rather than with a send) that readmits it: returns `ReplicaReadmitted`. Otherwise
   * nothing changes: an ejection for failed sends runs its course.
   */
  connected(replica: string, now: number): ReplicaDecision | undefined {
    const state = this.#replicas.get(replica);
    if (state === undefined || !state.probing) return undefined;
    state.usedAt = now;
    return this.#readmit(replica, state);
  }

  /**
   * Reports that dialling `replica` failed: it is ejected at once (a replica that cannot be
   * reached takes no more sends) unless it already is, in which case its ejection is extended
   * only when this ends its probe. Returns the `ReplicaEjected` decision, if any.
   */
  connectFailed(replica: string, now: number): ReplicaDecision | undefined {
    const state = this.#state(replica, now);
    state.usedAt = now;
    state.failures++;
    if (state.ejectedUntil !== 0 && !state.probing && now < state.ejectedUntil) return undefined;
    return this.#eject(replica, state, now, state.failures);
  }

  /**
   * Ends a send `started` on `replica` that says nothing about the replica (refused before it
   * left, or ended by this domus closing): only its outstanding count drops.
   */
  released(replica: string): void {
    const state = this.#replicas.get(replica);
    if (state !== undefined && state.outstanding > 0) state.outstanding--;
  }

  /** Whether the balancer tracks `replica` (it was picked and not forgotten since). */
  tracks(replica: string): boolean {
    return this.#replicas.has(replica);
  }

  /** Sends outstanding on `replica` (0 for one never seen). */
  outstanding(replica: string): number {
    return this.#replicas.get(replica)?.outstanding ?? 0;
  }

  /** Whether `replica` is out of rotation at `now` (ejected, or its probe in flight). */
  isEjected(replica: string, now: number): boolean {
    const state = this.#replicas.get(replica);
    return (
      state !== undefined && state.ejectedUntil !== 0 && (state.probing || now < state.ejectedUntil)
    );
  }

  /** Every replica the balancer knows, with its load, latency estimate at `now` and health. */
  replicas(now: number): ReplicaReport[] {
    const out: ReplicaReport[] = [];
    for (const [replica, s] of this.#replicas) {
      out.push({
        replica,
        outstanding: s.outstanding,
        latencyMs: Number.isNaN(s.latency) ? undefined : this.#estimate(s, now),
        failures: s.failures,
        ejected: this.isEjected(replica, now),
        ejectionsTotal: s.ejectionsTotal,
      });
    }
    return out;
  }

  /**
   * Forgets replicas with nothing outstanding, not ejected, and unused since `now - idleMs`, so
   * addresses that left every route do not accumulate. Returns how many were forgotten.
   */
  forgetIdle(now: number, idleMs: number): number {
    let forgotten = 0;
    for (const [replica, s] of this.#replicas) {
      if (s.outstanding === 0 && s.ejectedUntil === 0 && now - s.usedAt >= idleMs) {
        this.#replicas.delete(replica);
        forgotten++;
      }
    }
    return forgotten;
  }

  #state(replica: string, now: number): ReplicaState {
    let state = this.#replicas.get(replica);
    if (state === undefined) {
      state = {
        outstanding: 0,
        latency: NaN,
        sampledAt: 0,
        failures: 0,
        ejections: 0,
        ejectionsTotal: 0,
        ejectedUntil: 0,
        probing: false,
        probeStartedAt: 0,
        usedAt: now,
      };
      this.#replicas.set(replica, state);
    }
    return state;
  }

  #chosen(replica: string, now: number): { readonly replica: string } {
    this.#state(replica, now).usedAt = now;
    return { replica };
  }

  #probe(
    replica: string,
    state: ReplicaState,
    now: number,
  ): { readonly replica: string; readonly decision: ReplicaDecision } {
    state.probing = true;
    state.probeStartedAt = now;
    state.usedAt = now;
    return { replica, decision: { type: 'ReplicaProbed', replica } };
  }

  /** A probe whose outcome never came (its report was lost) is retried after `maxEjectionMs`. */
  #probeLost(state: ReplicaState, now: number): boolean {
    return now - state.probeStartedAt >= this.#maxEjectionMs;
  }

  #readmit(replica: string, state: ReplicaState): ReplicaDecision {
    state.ejectedUntil = 0;
    state.probing = false;
    state.ejections = 0;
    state.failures = 0;
    return { type: 'ReplicaReadmitted', replica };
  }

  #eject(replica: string, state: ReplicaState, now: number, failures: number): ReplicaDecision {
    state.ejections++;
    state.ejectionsTotal++;
    state.probing = false;
    const backoff = Math.min(
      this.#maxEjectionMs,
      this.#ejectionMs * 2 ** Math.min(state.ejections - 1, 30),
    );
    state.ejectedUntil = now + backoff;
    return {
      type: 'ReplicaEjected',
      replica,
      failures,
      ejections: state.ejections,
      until: state.ejectedUntil,
    };
  }

  #roundRobin(route: readonly string[], pool: readonly string[]): string {
    const cursor = this.#cursors.get(route) ?? 0;
    this.#cursors.set(route, (cursor + 1) % 0x40000000);
    return pool[cursor % pool.length];
  }

  #twoChoices(pool: readonly string[], now: number): string {
    const n = pool.length;
    const i = Math.min(n - 1, Math.floor(this.#random() * n));
    let j = Math.min(n - 2, Math.floor(this.#random() * (n - 1)));
    if (j >= i) j++;
    const a = this.#replicas.get(pool[i]);
    const b = this.#replicas.get(pool[j]);
    const la = a === undefined || Number.isNaN(a.latency) ? NaN : this.#estimate(a, now);
    const lb = b === undefined || Number.isNaN(b.latency) ? NaN : this.#estimate(b, now);
    // An unmeasured replica is assumed as fast as the other, so it is tried and measured.
    const fallback = Number.isNaN(la) ? (Number.isNaN(lb) ? UNMEASURED_LATENCY_MS : lb) : la;
    const costA =
      ((a?.outstanding ?? 0) + 1) * Math.max(LATENCY_FLOOR_MS, Number.isNaN(la) ? fallback : la);
    const costB =
      ((b?.outstanding ?? 0) + 1) * Math.max(LATENCY_FLOOR_MS, Number.isNaN(lb) ? fallback : lb);
    return costB < costA ? pool[j] : pool[i];
  }

  /** The latency estimate decayed toward 0 for the time it has not been measured. */
  #estimate(state: ReplicaState, now: number): number {
    const elapsed = Math.max(0, now - state.sampledAt);
    return state.latency * Math.exp(-elapsed / this.#decayMs);
  }

  /** Peak EWMA: a slower sample is taken at once, a faster one blends in with time. */
  #sample(state: ReplicaState, latencyMs: number, now: number): void {
    const current = Number.isNaN(state.latency) ? NaN : this.#estimate(state, now);
    if (Number.isNaN(current) || latencyMs >= current) {
      state.latency = latencyMs;
    } else {
      const w = Math.exp(-Math.max(0, now - state.sampledAt) / this.#decayMs);
      state.latency = current * w + latencyMs * (1 - w);
    }
    state.sampledAt = now;
  }
}

function checkLimits(options: ReplicaBalancerOptions): {
  failuresToEject: number;
  ejectionMs: number;
  maxEjectionMs: number;
} {
  const failuresToEject = integer(
    'failuresToEject',
    options.failuresToEject ?? DEFAULT_FAILURES_TO_EJECT,
    1,
    1000,
  );
  const ejectionMs = integer('ejectionMs', options.ejectionMs ?? DEFAULT_EJECTION_MS, 1, 3.6e6);
  const maxEjectionMs = integer(
    'maxEjectionMs',
    options.maxEjectionMs ?? Math.max(DEFAULT_MAX_EJECTION_MS, ejectionMs),
    ejectionMs,
    3.6e6,
  );
  return { failuresToEject, ejectionMs, maxEjectionMs };
}

function integer(field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `balancer option ${field} must be an integer in ${min}..${max}, got ${String(value)}`,
    );
  }
  return value;
}
