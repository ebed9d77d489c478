// Inbound admission: accepted callis, their hello, the sessions they join and their slots.
import { AureliaError, ErrorId } from './errors.js';
import type { DomusConfig } from './config.js';
import type { TabernaId } from './ids.js';
import {
  Callis,
  type CallisConnection,
  type CallisSettings,
  isPeerViolation,
} from './peer/callis.js';
import { listenerHello } from './peer/handshake.js';
import { InboundSession, type SessionHost } from './peer/session.js';
import { type HelloBlobWindow, encodeHelloResponse } from './wire/control.js';
import type { Delivery } from './taberna/request.js';
import type { MetricsRecorder } from './reporting/metrics.js';
import type { DomusReporting } from './reporting/reporting.js';
import type { LinkBook } from './links.js';
import type { BlobBudget } from './blob/budget.js';
import { IdentityBudget } from './peer/inbound-budget.js';

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
  /** Routes a delivery to a taberna (or refuses it). */
  deliver(dst: TabernaId, delivery: Delivery): void;
}

/**
 * Owns every inbound callis from its acceptance to its close and every remote sender session:
 * counts slots per remote identity, runs the listener side of the hello, opens or resumes the
 * session a primary hello names, attaches blob callis to their session, and drops sessions that
 * hold nothing.
 */
export class InboundAdmission {
  private readonly sessions = new Map<string, InboundSession>();
  private readonly handshaking = new Set<Callis>();
  private readonly inboundCallis = new Map<string, number>();
  /** What all sessions of one identity hold together (see `IdentityBudget`). */
  private readonly identityBudgets = new Map<string, IdentityBudget>();

  constructor(private readonly host: InboundHost) {
    this.sessionHost = this.makeSessionHost();
  }

  /** A connection passed TLS: admit it, run the hello and attach it to its session. */
  async onConnection(conn: CallisConnection): Promise<void> {
    const host = this.host;
    const config = host.config();
    if (host.isClosed()) {
      conn.socket.destroy();
      return;
    }
    const open = this.inboundCallis.get(conn.identity) ?? 0;
    if (open >= config.maxParallelCallisPerPeer) {
      const err = new AureliaError(
        ErrorId.PeerUnavailable,
        `${conn.identity} already holds ${open} callis (maxParallelCallisPerPeer ${config.maxParallelCallisPerPeer}); refusing another`,
      );
      host.reporting.error(err);
      conn.socket.destroy();
      return;
    }
    this.inboundCallis.set(conn.identity, open + 1);
    const callis = new Callis(conn, host.callisSettings, 'inbound');
    this.handshaking.add(callis);
    const timeoutMs =
      conn.transport === 'tcp' ? config.tcpHandshakeTimeoutMs : config.socketHandshakeTimeoutMs;
    let hello;
    try {
      hello = await listenerHello(callis, timeoutMs);
    } catch (err) {
      this.handshaking.delete(callis);
      this.release(conn.identity);
      if (AureliaError.is(err)) {
        if (isPeerViolation(err)) host.metrics.protocolViolations++;
        if (err.kind !== ErrorId.DomusClosed) host.reporting.error(err);
      }
      return;
    }
    this.handshaking.delete(callis);
    if (host.isClosed() || callis.closed) {
      this.release(conn.identity);
      callis.close(closedError(), true);
      return;
    }
    const key = InboundSession.key(conn.identity, hello.sessionEpoch);
    let session = this.sessions.get(key);
    if (hello.blobWindow) {
      this.acceptBlobCallis(callis, session, hello.blobWindow, conn.transport);
      return;
    }
    if (!session) {
      for (const old of this.sessions.values()) {
        if (old.identity === conn.identity && !sameDomusRun(old.epoch, hello.sessionEpoch)) {
          old.failBlobs(
            new AureliaError(
              ErrorId.PeerRestarted,
              `${conn.identity} restarted; blob streams of its previous session were lost`,
            ),
          );
        }
      }
      session = new InboundSession(
        conn.identity,
        hello.sessionEpoch,
        conn.remoteAddress,
        this.sessionHost,
      );
      this.sessions.set(key, session);
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

  /** Drops sessions that hold nothing and fails idle blob streams. */
  tidy(now: number, blobIdleMs: number): void {
    for (const [key, session] of this.sessions) {
      if (session.expire(now, blobIdleMs)) this.sessions.delete(key);
    }
    for (const [identity, budget] of this.identityBudgets) {
      if (budget.members.size === 0) this.identityBudgets.delete(identity);
    }
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
      this.release(identity);
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

  private release(identity: string): void {
    const open = (this.inboundCallis.get(identity) ?? 1) - 1;
    if (open <= 0) this.inboundCallis.delete(identity);
    else this.inboundCallis.set(identity, open);
  }

  private callisClosed(
    session: InboundSession,
    callis: Callis,
    reason: AureliaError,
    kind: 'primary' | 'blob',
  ): void {
    const host = this.host;
    this.release(session.identity);
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
      identityBudget: (identity) => {
        let budget = this.identityBudgets.get(identity);
        if (!budget) {
          budget = new IdentityBudget(() => this.host.config());
          this.identityBudgets.set(identity, budget);
        }
        return budget;
      },
      onBlobCallisClosed: (session, callis, reason) =>
        this.callisClosed(session, callis, reason, 'blob'),
      onOversizeRefused: (_session, err) => this.host.reporting.error(err),
      onCallisClosed: (session, callis, reason) =>
        this.callisClosed(session, callis, reason, 'primary'),
    };
  }
}

/** True when two dialer epochs come from the same run of one domus (same high 32 bits). */
function sameDomusRun(a: bigint, b: bigint): boolean {
  return a >> 32n === b >> 32n;
}

function closedError(): AureliaError {
  return new AureliaError(ErrorId.DomusClosed, 'the domus is shut down');
}
