// Admission control for unauthenticated handshakes: how many may run at once, in total and per source.

/** Limits on concurrent unauthenticated handshakes, read again at every admission. */
export interface AdmissionLimits {
  /** Handshakes in progress across all sources (`inboundHandshakeLimitTotal`). */
  readonly total: number;
  /** Handshakes in progress from one source (`inboundHandshakeLimitPerPeer`). */
  readonly perSource: number;
}

/**
 * Proof that one handshake holds a slot. Give it back with `HandshakeAdmission.release` exactly
 * when the handshake ends (completed, refused, timed out or closed); releasing twice is harmless.
 */
export interface AdmissionTicket {
  /** The source this slot was counted against. */
  readonly source: string;
}

/** Why `tryAdmit` said no: which limit was reached, its value and how many slots are taken. */
export interface AdmissionRefusal {
  readonly admitted: false;
  /** `'total'` for the overall limit, `'perSource'` for the per-source one. */
  readonly limit: 'total' | 'perSource';
  /** The limit in force when the handshake was refused. */
  readonly max: number;
  /** Slots taken (overall, or by this source) when the handshake was refused. */
  readonly inFlight: number;
}

/** The outcome of `HandshakeAdmission.tryAdmit`. */
export type AdmissionDecision =
  { readonly admitted: true; readonly ticket: AdmissionTicket } | AdmissionRefusal;

/**
 * Counts handshakes in progress, overall and per source, against limits read live from a
 * function (so a configuration change applies to the next admission; handshakes already admitted
 * keep their slot even when a limit shrinks below the current count). Owns no sockets and no
 * timers: the listener asks before any TLS work and releases when the handshake ends.
 * A source is any string: the listener uses the peer IP for TCP and a fresh name per connection
 * on a Unix socket (whose peers have no address to tell them apart).
 */
export class HandshakeAdmission {
  readonly #limits: () => AdmissionLimits;
  readonly #bySource = new Map<string, number>();
  readonly #live = new Set<AdmissionTicket>();

  /** `limits` is called at every `tryAdmit`; it must not throw. */
  constructor(limits: () => AdmissionLimits) {
    this.#limits = limits;
  }

  /** Handshakes holding a slot now. */
  get inFlight(): number {
    return this.#live.size;
  }

  /** Handshakes from `source` holding a slot now. */
  inFlightFrom(source: string): number {
    return this.#bySource.get(source) ?? 0;
  }

  /**
   * Takes a slot for a handshake from `source` when both limits allow one more, and returns its
   * ticket; otherwise returns which limit was reached (the total limit is checked first). Never
   * throws.
   */
  tryAdmit(source: string): AdmissionDecision {
    const { total, perSource } = this.#limits();
    if (this.#live.size >= total) {
      return { admitted: false, limit: 'total', max: total, inFlight: this.#live.size };
    }
    const fromSource = this.#bySource.get(source) ?? 0;
    if (fromSource >= perSource) {
      return { admitted: false, limit: 'perSource', max: perSource, inFlight: fromSource };
    }
    const ticket: AdmissionTicket = Object.freeze({ source });
    this.#live.add(ticket);
    this.#bySource.set(source, fromSource + 1);
    return { admitted: true, ticket };
  }

  /**
   * Gives the ticket's slot back. Returns false (and changes nothing) when the ticket was already
   * released or was not issued by this instance. Never throws.
   */
  release(ticket: AdmissionTicket): boolean {
    if (!this.#live.delete(ticket)) return false;
    const fromSource = (this.#bySource.get(ticket.source) ?? 1) - 1;
    if (fromSource <= 0) this.#bySource.delete(ticket.source);
    else this.#bySource.set(ticket.source, fromSource);
    return true;
  }
}
