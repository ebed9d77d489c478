// What the sample services say to each other: patterns and payload shapes, shared like a contracts package.

/** The services of the sample mesh, each its own process with its own certificate. */
export const SERVICES = ['orders', 'billing', 'audit'] as const;

/** A service of the sample mesh. */
export type ServiceName = (typeof SERVICES)[number];

/**
 * The processes the sample runs: one per service, and billing twice. `billing-2` is a second
 * replica of billing: the same code and the same certificate identity, its own address.
 */
export const PROCESSES = ['orders', 'billing', 'billing-2', 'audit'] as const;

/** A process of the sample mesh. */
export type ProcessName = (typeof PROCESSES)[number];

/** The service a process runs. */
export function serviceOf(process: ProcessName): ServiceName {
  return process === 'billing-2' ? 'billing' : process;
}

/**
 * The certificate identity of a service: the URI SAN `aurelia-mesh certs` puts in node
 * certificates. Mutual TLS proves it on every connection, so handlers may authorize on it.
 */
export function identityOf(service: ServiceName): string {
  return `spiffe://aurelia.local/${service}`;
}

/** The patterns the services serve; each becomes a taberna whose id is the pattern's hash. */
export const Patterns = {
  /** billing, `@MessagePattern`: charge an order, reply with a `ChargeResult`. Orders only. */
  charge: 'billing.charge',
  /** billing, `@MessagePattern`: a customer's statement, streamed as `StatementLine`s. */
  statement: 'billing.statement',
  /**
   * billing, `@MessagePattern`: price an order with tax, reply with a `Quote`. Stateless, so
   * served by both billing replicas (charges and statements keep a ledger in memory, so they
   * stay on the first).
   */
  quote: 'billing.quote',
  /** audit, `@EventPattern`: append an `AuditRecord`; invalid records are rejected. */
  record: 'audit.record',
  /** audit, `@EventPattern` with a blob: archive a file, described by `ArchiveFile`. */
  archive: 'audit.archive',
} as const;

/** Asks billing to charge an order. */
export interface ChargeRequest {
  readonly orderId: number;
  readonly customer: string;
  readonly amountCents: number;
}

/** Billing's answer to a `ChargeRequest`. */
export interface ChargeResult {
  readonly orderId: number;
  readonly status: 'approved' | 'declined';
  readonly chargeId: string;
}

/** Asks billing for a customer's statement. */
export interface StatementRequest {
  readonly customer: string;
}

/** One line of a statement; billing streams them one reply at a time. */
export interface StatementLine {
  readonly line: number;
  readonly of: number;
  readonly text: string;
}

/** An entry of the audit trail. */
export interface AuditRecord {
  readonly orderId: number;
  readonly action: 'created' | 'charged' | 'shipped';
  readonly actor: string;
}

/** Describes a file sent to audit's archive; the bytes travel as the event's blob. */
export interface ArchiveFile {
  readonly name: string;
  readonly bytes: number;
}

/** Asks billing to price an order. */
export interface QuoteRequest {
  readonly orderId: number;
  readonly amountCents: number;
}

/** Billing's price for a `QuoteRequest`, and which replica answered. */
export interface Quote {
  readonly orderId: number;
  readonly totalCents: number;
  readonly replica: ProcessName;
}
