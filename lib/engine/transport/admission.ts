// Admission control for connections not yet established: how many may wait at once, in total and per source, and which one a newcomer may cut.

/** Limits on concurrent connections that are not yet established, read again at every admission. */
export interface AdmissionLimits {
  /** Connections waiting across all sources (`inboundHandshakeLimitTotal`). */
  readonly total: number;
  /** Connections waiting from one source (`inboundHandshakeLimitPerPeer`). */
  readonly perSource: number;
}

/**
 * Proof that one connection holds a slot. Give it back with `HandshakeAdmission.release` exactly
 * when the connection is established or ends; releasing twice is harmless.
 */
export interface AdmissionTicket {
  /** The source this slot was counted against. */
  readonly source: string;
  /** When the slot was taken (the `now` given to `tryAdmit`). */
  readonly admittedAt: number;
}

/** Why `tryAdmit` said no: which limit was reached, its value and how many slots are taken. */
export interface AdmissionRefusal {
  readonly admitted: false;
  /** `'total'` for the overall limit, `'perSource'` for the per-source one. */
  readonly limit: 'total' | 'perSource';
  /** The limit in force when the connection was refused. */
  readonly max: number;
  /** Slots taken (overall, or by this source) when the connection was refused. */
  readonly inFlight: number;
}

/**
 * A newcomer was admitted. When `cut` is set, its slot was taken from that waiting connection
 * (already released here): the caller must close it now.
 */
export interface AdmissionGrant {
  readonly admitted: true;
  readonly ticket: AdmissionTicket;
  readonly cut: AdmissionTicket | undefined;
}

/** The outcome of `HandshakeAdmission.tryAdmit`. */
export type AdmissionDecision = AdmissionGrant | AdmissionRefusal;

/**
 * Counts connections that are not yet established (TLS handshake, then the first protocol frame),
 * overall and per source, against limits read live from a function (so a configuration change
 * applies to the next admission; slots already taken are kept when a limit shrinks). Owns no
 * sockets and no timers: the listener asks before any TLS work and releases when the connection
 * is established or gone.
 *
 * When a limit is full, a newcomer is not simply refused: if a waiting connection is cuttable
 * (the owner's `cuttable` says so, typically because it stayed silent), the newcomer takes its
 * slot. For the per-source limit the oldest cuttable connection of that source goes; for the
 * total limit, the oldest cuttable connection of the source holding the most slots, so one
 * source's crowd is thinned before anyone else's. Only when nothing is cuttable is the newcomer
 * refused. A source is any string: the listener uses the peer IP for TCP and a fresh name per
 * connection on a Unix socket (whose peers have no address to tell them apart).
 */
export class HandshakeAdmission {
  readonly #limits: () => AdmissionLimits;
  readonly #cuttable: (ticket: AdmissionTicket, now: number) => boolean;
  readonly #bySource = new Map<string, Set<AdmissionTicket>>();
  readonly #live = new Set<AdmissionTicket>();

  /**
   * `limits` is called at every `tryAdmit`; `cuttable` tells whether a waiting connection may be
   * cut for a newcomer. Neither may throw.
   */
  constructor(
    limits: () => AdmissionLimits,
    cuttable: (ticket: AdmissionTicket, now: number) => boolean = () => false,
  ) {
    this.#limits = limits;
    this.#cuttable = cuttable;
  }

  /** Connections holding a slot now. */
  get inFlight(): number {
    return this.#live.size;
  }

  /** Connections from `source` holding a slot now. */
  inFlightFrom(source: string): number {
    return this.#bySource.get(source)?.size ?? 0;
  }

  /**
   * Takes a slot for a connection from `source` at time `now` (ms). When a limit is full, cuts a
   * cuttable waiting connection (see the class) and hands its slot over, or returns which limit
   * was reached (the total limit is named first). Never throws.
   */
  tryAdmit(source: string, now: number = Date.now()): AdmissionDecision {
    const { total, perSource } = this.#limits();
    const fromSource = this.#bySource.get(source);
    const sourceFull = (fromSource?.size ?? 0) >= perSource;
    const totalFull = this.#live.size >= total;
    let cut: AdmissionTicket | undefined;
    if (sourceFull || totalFull) {
      // Cutting one of the newcomer's own source frees a slot under both limits at once.
      cut = sourceFull ? this.#oldestCuttable(fromSource!, now) : this.#victim(now);
      if (cut === undefined) {
        return totalFull
          ? { admitted: false, limit: 'total', max: total, inFlight: this.#live.size }
          : { admitted: false, limit: 'perSource', max: perSource, inFlight: fromSource!.size };
      }
      this.release(cut);
    }
    const ticket: AdmissionTicket = Object.freeze({ source, admittedAt: now });
    this.#live.add(ticket);
    let tickets = this.#bySource.get(source);
    if (tickets === undefined) {
      tickets = new Set();
      this.#bySource.set(source, tickets);
    }
    tickets.add(ticket);
    return { admitted: true, ticket, cut };
  }

  /**
   * Gives the ticket's slot back. Returns false (and changes nothing) when the ticket was already
   * released or was not issued by this instance. Never throws.
   */
  release(ticket: AdmissionTicket): boolean {
    if (!this.#live.delete(ticket)) return false;
    const tickets = this.#bySource.get(ticket.source);
    tickets?.delete(ticket);
    if (tickets?.size === 0) this.#bySource.delete(ticket.source);
    return true;
  }

  // Sets iterate in insertion order, so the first cuttable ticket is the oldest.
  #oldestCuttable(tickets: Set<AdmissionTicket>, now: number): AdmissionTicket | undefined {
    for (const ticket of tickets) if (this.#cuttable(ticket, now)) return ticket;
    return undefined;
  }

  // The oldest cuttable ticket of the source holding the most slots (among sources that have one).
  #victim(now: number): AdmissionTicket | undefined {
    let best: AdmissionTicket | undefined;
    let bestCount = 0;
    for (const tickets of this.#bySource.values()) {
      if (tickets.size < bestCount) continue;
      const candidate = this.#oldestCuttable(tickets, now);
      if (candidate === undefined) continue;
      if (
        tickets.size > bestCount ||
        (best !== undefined && candidate.admittedAt < best.admittedAt)
      ) {
        best = candidate;
        bestCount = tickets.size;
      }
    }
    return best;
  }
}
