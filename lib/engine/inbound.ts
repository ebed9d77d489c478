// Inbound admission: accepted callis, their hello, the sessions they join and their slots.
import { AureliaError, ErrorId, domusClosedError } from './errors.js';
import type { DomusConfig } from './config.js';
import type { TabernaId } from './ids.js';
import { Callis, type CallisSettings, isPeerViolation } from './peer/callis.js';
import { listenerHello } from './peer/handshake.js';
import { InboundSession, type SessionHost } from './peer/session.js';
import { type HelloBlobWindow, encodeHelloResponse } from './wire/control.js';
import type { Delivery } from './taberna/request.js';
import type { MetricsRecorder } from './reporting/metrics.js';
import type { DomusReporting } from './reporting/reporting.js';
import type { LinkBook } from './links.js';
import type { BlobBudget } from './blob/budget.js';
import { DomusBudget } from './peer/inbound-budget.js';
import type { AuthenticatedConnection } from './transport/connection.js';

/** What inbound admission needs from its domus. */
export interface InboundHost {
  readonly sessionEpoch: bigint;
  readonly metrics: MetricsRecorder;
  readonly reporting: DomusReporting;
  readonly links: LinkBook;
  readonly blobBudget: BlobBudget;
  readonly callisSettings: CallisSettings;
  config(): DomusConfig;
  isClosed(): boolean;
  /** True while the domus drains: sessions refuse new messages and tell their senders. */
  isDraining(): boolean;
  /** Routes a delivery to a taberna (or refuses it). */
  deliver(dst: TabernaId, delivery: Delivery): void;
}

/**
 * Owns every inbound callis from its acceptance to its close and every remote sender session:
 * runs the listener side of the hello, opens or resumes the session a primary hello names, attaches
 * blob callis to their session, counts each session's callis against `maxParallelCallisPerPeer`,
 * and drops sessions that hold nothing.
 *
 * A session is keyed by the sender's identity, the fingerprint of the certificate that opened it
 * and the epoch of its hello: a callis presenting another certificate (a replica with a
 * certificate of its own, or anyone else) can never join it, and replicas sharing one certificate
 * are told apart by their random epochs. Nothing is counted per identity: a thousand replicas of
 * one caller are a thousand sessions, each with its slots and budgets; what all sessions hold
 * together in undecided messages is bounded by the domus-wide `DomusBudget`.
 */
export class InboundAdmission {
  private readonly sessions = new Map<string, InboundSession>();
  /** The SHA-256 fingerprint of the certificate that opened each session. */
  private readonly certificateOf = new WeakMap<InboundSession, string>();
  private readonly handshaking = new Set<Callis>();
  /** Callis open per session key, each released when its socket closes. */
  private readonly slots = new Map<string, number>();
  /** What all sessions hold together (see `DomusBudget`). */
  private readonly domusBudget: DomusBudget;

  constructor(private readonly host: InboundHost) {
    this.domusBudget = new DomusBudget(() => host.config());
    this.sessionHost = this.makeSessionHost();
  }

  /** A connection passed TLS: run the hello and attach it to its session. */
  async onConnection(conn: AuthenticatedConnection): Promise<void> {
    const host = this.host;
    const config = host.config();
    if (host.isClosed()) {
      conn.socket.destroy();
      return;
    }
    const callis = new Callis(conn, host.callisSettings, 'inbound');
    this.handshaking.add(callis);
    const timeoutMs =
      conn.transport === 'tcp' ? config.tcpHandshakeTimeoutMs : config.socketHandshakeTimeoutMs;
    let hello;
    try {
      hello = await listenerHello(callis, timeoutMs);
    } catch (err) {
      this.handshaking.delete(callis);
      if (AureliaError.is(err)) {
        if (isPeerViolation(err)) host.metrics.protocolViolations++;
        if (err.kind !== ErrorId.DomusClosed) host.reporting.error(err);
      }
      return;
    }
    this.handshaking.delete(callis);
    // The peer spoke: its handshake admission slot goes back.
    conn.markEstablished?.();
    if (host.isClosed() || callis.closed) {
      callis.close(domusClosedError(), true);
      return;
    }
    const fingerprint = conn.certificate.fingerprint256;
    const key = sessionKey(conn.identity, fingerprint, hello.sessionEpoch);
    if (!this.takeSlot(key, callis, config.maxParallelCallisPerPeer)) return;
    let session = this.sessions.get(key);
    if (hello.blobWindow) {
      this.acceptBlobCallis(callis, session, hello.blobWindow, conn.transport);
      return;
    }
    if (!session) {
      this.endOrphanedBlobs(conn.identity, fingerprint);
      session = new InboundSession(
        conn.identity,
        hello.sessionEpoch,
        conn.remoteAddress,
        this.sessionHost,
      );
      this.sessions.set(key, session);
      this.certificateOf.set(session, fingerprint);
    }
    callis.sendControl(encodeHelloResponse({ sessionEpoch: host.sessionEpoch }));
    session.attach(callis);
    host.links.up(conn.identity, conn.remoteAddress, 'primary');
    host.reporting.emit({
      type: 'PrimaryCallisConnected',
      at: Date.now(),
      identity: conn.identity,
      address: conn.remoteAddress,
      direction: 'inbound',
    });
  }

  /**
   * Counts `callis` against its session's `maxParallelCallisPerPeer` until its socket closes
   * (whatever closes it: the peer, a replacing reconnect, a violation, shutdown). Refuses the
   * callis, telling the peer why, when the session already holds that many; returns false then.
   */
  private takeSlot(key: string, callis: Callis, max: number): boolean {
    const open = this.slots.get(key) ?? 0;
    if (open >= max) {
      const err = new AureliaError(
        ErrorId.PeerUnavailable,
        `${callis.describe()}: its session already holds ${open} callis (maxParallelCallisPerPeer ${max}); refusing another`,
      );
      this.host.reporting.error(err);
      callis.abort(err);
      return false;
    }
    this.slots.set(key, open + 1);
    callis.connection.socket.once('close', () => {
      const left = (this.slots.get(key) ?? 1) - 1;
      if (left <= 0) this.slots.delete(key);
      else this.slots.set(key, left);
    });
    return true;
  }

  /**
   * A new session of `identity` opened with the certificate `fingerprint`: sessions of that same
   * certificate that have no primary callis belong to a sender that is likely gone (restarted), so
   * their blob streams end with `PeerRestarted`, and each sender still alive is told so on its
   * blob callis. Sessions with a live primary callis are other replicas and are left alone; other
   * certificates are never touched.
   */
  private endOrphanedBlobs(identity: string, fingerprint: string): void {
    for (const old of this.sessions.values()) {
      if (this.certificateOf.get(old) !== fingerprint || old.identity !== identity) continue;
      if (old.current !== undefined) continue;
      old.failBlobs(
        new AureliaError(
          ErrorId.PeerRestarted,
          `a new session of ${identity} opened with the same certificate while this one had no connection; its blob streams were ended`,
        ),
      );
    }
  }

  /** @internal Bytes of answers every session's primary callis holds unsent. */
  unsentBytes(): number {
    let bytes = 0;
    for (const session of this.sessions.values()) bytes += session.unsentBytes;
    return bytes;
  }

  /** Drops sessions that hold nothing and fails idle blob streams. */
  tidy(now: number, blobIdleMs: number): void {
    for (const [key, session] of this.sessions) {
      if (session.expire(now, blobIdleMs)) this.sessions.delete(key);
    }
  }

  /** The domus began draining: every connected sender is told to write nothing new. */
  announceDrain(): void {
    for (const session of this.sessions.values()) session.announceDrain();
  }

  /** True while any session holds work to finish (see `InboundSession.busy`). */
  busy(): boolean {
    for (const session of this.sessions.values()) if (session.busy) return true;
    return false;
  }

  /** The per-peer limits changed live: sessions pause or resume reading accordingly. */
  applyLimits(): void {
    for (const session of this.sessions.values()) session.applyLimits();
  }

  /** Shutdown, first step: cuts callis still in their hello. */
  stopHandshakes(reason: AureliaError): void {
    for (const callis of this.handshaking) callis.close(reason);
    this.handshaking.clear();
  }

  /** Shutdown: closes every session (after writing their pending decisions). */
  close(reason: AureliaError): Promise<void>[] {
    const goodbyes: Promise<void>[] = [];
    for (const session of this.sessions.values()) goodbyes.push(session.close(reason));
    this.sessions.clear();
    return goodbyes;
  }

  /** A blob hello: joins the sender's existing session with the agreed window. */
  private acceptBlobCallis(
    callis: Callis,
    session: InboundSession | undefined,
    proposed: HelloBlobWindow,
    transport: 'tcp' | 'socket',
  ): void {
    const host = this.host;
    const identity = callis.identity;
    if (!session) {
      host.metrics.protocolViolations++;
      callis.abort(
        new AureliaError(
          ErrorId.BlobCallisWithoutPrimary,
          `${callis.describe()} opened a blob callis for a session with no primary callis`,
        ),
      );
      return;
    }
    const config = host.config();
    const own = transport === 'tcp' ? config.tcpBlobWindow : config.socketBlobWindow;
    const agreed = {
      chunkSize: Math.min(proposed.chunkSize, own.chunkSize),
      ackWindow: Math.min(proposed.ackWindow, own.ackWindow),
    };
    callis.sendControl(
      encodeHelloResponse({ sessionEpoch: host.sessionEpoch, blobWindow: agreed }),
    );
    session.attachBlob(callis, agreed);
    const address = callis.connection.remoteAddress;
    host.links.up(identity, address, 'blob');
    host.reporting.emit({
      type: 'BlobCallisConnected',
      at: Date.now(),
      identity,
      address,
      direction: 'inbound',
      blobWindow: agreed,
    });
  }

  private callisClosed(
    session: InboundSession,
    callis: Callis,
    reason: AureliaError,
    kind: 'primary' | 'blob',
  ): void {
    const host = this.host;
    if (isPeerViolation(reason)) host.metrics.protocolViolations++;
    const address = callis.connection.remoteAddress;
    host.links.down(session.identity, address, kind);
    host.reporting.emit({
      type: kind === 'primary' ? 'PrimaryCallisDisconnected' : 'BlobCallisDisconnected',
      at: Date.now(),
      identity: session.identity,
      address,
      direction: 'inbound',
      reason: reason.message,
    });
  }

  private readonly sessionHost: SessionHost;

  private makeSessionHost(): SessionHost {
    return {
      metrics: this.host.metrics,
      deliver: (dst, delivery) => this.host.deliver(dst, delivery),
      dedupeRetentionMs: () => 2 * this.host.config().sendTimeoutMs,
      admitBlob: (session) => this.host.blobBudget.reserve('inbound', session.budget),
      limits: () => this.host.config(),
      domusBudget: this.domusBudget,
      onBlobCallisClosed: (session, callis, reason) =>
        this.callisClosed(session, callis, reason, 'blob'),
      onOversizeRefused: (_session, err) => this.host.reporting.error(err),
      onCallisClosed: (session, callis, reason) =>
        this.callisClosed(session, callis, reason, 'primary'),
      draining: () => this.host.isDraining(),
    };
  }
}

/**
 * The key of a sender session: identity, certificate fingerprint and epoch. The identity is
 * implied by the certificate; it stays in the key so that keys read well in a debugger.
 */
function sessionKey(identity: string, fingerprint: string, epoch: bigint): string {
  return `${identity}\u0000${fingerprint}\u0000${epoch}`;
}
