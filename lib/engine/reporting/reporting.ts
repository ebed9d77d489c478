// Observability of one domus: metrics snapshots, connected peers, and live event/error feeds.
import { Observable, Subject, interval, map } from 'rxjs';
import { AureliaError, ErrorId } from '../errors.js';
import type { MessagePriorityClass } from '../ids.js';
import type { DomusMetrics, DomusMetricsDelta, MetricsRecorder } from './metrics.js';

/** Which way a callis was opened, seen from this domus. */
export type CallisDirection = 'outbound' | 'inbound';

/** Fields every event carries. */
interface EventBase {
  /** When the event happened (`Date.now()`). */
  readonly at: number;
}

/** A peer identity's link state changes. */
export interface PeerLinkEvent extends EventBase {
  readonly type: 'PeerConnected' | 'PeerDisconnected';
  readonly identity: string;
  readonly address: string;
}

/** Dialing a peer failed. */
export interface PeerDialFailedEvent extends EventBase {
  readonly type: 'PeerDialFailed';
  readonly address: string;
  readonly error: AureliaError;
  /** Consecutive failures so far; the next attempt waits per `reconnectBackoffMs`. */
  readonly attempt: number;
}

/** A primary or blob callis opened or closed. */
export interface CallisEvent extends EventBase {
  readonly type:
    | 'PrimaryCallisConnected'
    | 'PrimaryCallisDisconnected'
    | 'BlobCallisConnected'
    | 'BlobCallisDisconnected';
  readonly identity: string;
  readonly address: string;
  readonly direction: CallisDirection;
  /** Why a callis closed (absent on connect). */
  readonly reason?: string;
  /** The blob window agreed on a blob callis. */
  readonly blobWindow?: { readonly chunkSize: number; readonly ackWindow: number };
}

/** A dialed peer answered with a new session epoch: it restarted. */
export interface PeerSessionRestartedEvent extends EventBase {
  readonly type: 'PeerSessionRestarted';
  readonly identity: string;
  readonly address: string;
  /** Messages failed with `PeerRestarted` because the old session may have seen them. */
  readonly failedMessages: number;
}

/** A callis's socket buffer filled up: messages wait until it drains. */
export interface BackpressureEvent extends EventBase {
  readonly type: 'BackpressureTriggered';
  readonly identity: string;
  readonly address: string;
}

/** A send was refused with `LocalQueueFull`. */
export interface OutboundQueueOverrunEvent extends EventBase {
  readonly type: 'OutboundQueueOverrun';
  readonly address: string;
  readonly priority: MessagePriorityClass;
  readonly capacity: number;
}

/** The live configuration changed. */
export interface ConfigReloadedEvent extends EventBase {
  readonly type: 'ConfigReloaded';
  /** Names of the fields whose value changed. */
  readonly changed: readonly string[];
}

/** New authentication material is in use for new handshakes. */
export interface AuthReloadedEvent extends EventBase {
  readonly type: 'AuthReloaded';
  readonly identity: string;
}

/** Shutdown began or finished. */
export interface ShutdownEvent extends EventBase {
  readonly type: 'ShutdownStarted' | 'ShutdownComplete';
}

/** Everything the event feed carries. Match on `type`. */
export type DomusReportingEvent =
  | PeerLinkEvent
  | PeerDialFailedEvent
  | CallisEvent
  | PeerSessionRestartedEvent
  | BackpressureEvent
  | OutboundQueueOverrunEvent
  | ConfigReloadedEvent
  | AuthReloadedEvent
  | ShutdownEvent;

/** A connected peer as `connectedPeers()` lists it. */
export interface PeerIdentityReport {
  /** Certificate identity of the peer. */
  readonly identity: string;
  /** Addresses of its live callis (dialed address for outbound, remote address for inbound). */
  readonly addresses: readonly string[];
  readonly primaryCallis: number;
  readonly blobCallis: number;
}

/** The live feeds as returned by `DomusBuilder.buildWithReporting`. */
export interface DomusReportingFeeds {
  readonly events: Observable<DomusReportingEvent>;
  readonly errors: Observable<AureliaError>;
}

/** Events and errors buffered for subscribers before the oldest are dropped. */
const FEED_BUFFER = 10_000;

/**
 * Hands items to subscribers on a later event-loop turn, so a subscriber never runs inside the
 * engine and a slow one never delays it; past `FEED_BUFFER` pending items the oldest are dropped
 * (and counted).
 */
class DetachedFeed<T> {
  private readonly subject = new Subject<T>();
  private pending: T[] = [];
  private scheduled = false;
  dropped = 0;
  readonly observable: Observable<T> = this.subject.asObservable();

  push(item: T): void {
    if (!this.subject.observed) return;
    if (this.pending.length >= FEED_BUFFER) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  complete(): void {
    this.flush();
    this.subject.complete();
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const items = this.pending;
    this.pending = [];
    for (const item of items) this.subject.next(item);
  };
}

/**
 * Observability handle of a running domus (`domus.reporting`): metrics snapshots, the list of
 * connected peers, and rxjs feeds of events, errors and periodic metrics deltas. Subscribers are
 * called asynchronously; a slow subscriber never slows the mesh.
 */
export class DomusReporting {
  private readonly eventFeed = new DetachedFeed<DomusReportingEvent>();
  private readonly errorFeed = new DetachedFeed<AureliaError>();
  private closed = false;

  /** @internal Created by the domus. */
  constructor(
    private readonly recorder: MetricsRecorder,
    private readonly peers: () => PeerIdentityReport[],
    private readonly onError: (err: AureliaError) => void = () => {},
  ) {}

  /** Live events (connections, restarts, overruns, reloads, shutdown). Completes at shutdown. */
  get events$(): Observable<DomusReportingEvent> {
    return this.eventFeed.observable;
  }

  /** Errors the domus met outside any caller's promise (dial failures, protocol violations, …). */
  get errors$(): Observable<AureliaError> {
    return this.errorFeed.observable;
  }

  /** Both feeds, as `buildWithReporting` returns them. */
  feeds(): DomusReportingFeeds {
    return { events: this.events$, errors: this.errors$ };
  }

  /**
   * Emits `snapshotAndReset()`-style deltas every `intervalMs` while subscribed. Note that each
   * subscription resets the shared interval counters when it samples. Throws
   * `AureliaError(InvalidConfig)` for an interval that is not an integer in 10..3600000.
   */
  metrics$(intervalMs: number): Observable<DomusMetricsDelta> {
    if (!Number.isInteger(intervalMs) || intervalMs < 10 || intervalMs > 3_600_000) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `metrics interval must be an integer in 10..3600000 ms, got ${intervalMs}`,
      );
    }
    return interval(intervalMs).pipe(map(() => this.snapshotAndReset()));
  }

  /** Cumulative metrics since the domus was built. */
  snapshot(): DomusMetrics {
    return this.recorder.snapshot();
  }

  /** Counter increments since the previous call, current gauges, peaks over the interval. */
  snapshotAndReset(): DomusMetricsDelta {
    return this.recorder.snapshotAndReset();
  }

  /** Peers with at least one live callis, with their identity and callis counts. */
  connectedPeers(): PeerIdentityReport[] {
    return this.peers();
  }

  /** Items dropped because subscribers fell more than 10 000 items behind. */
  get droppedFeedItems(): number {
    return this.eventFeed.dropped + this.errorFeed.dropped;
  }

  /** @internal */
  emit(event: DomusReportingEvent): void {
    if (!this.closed) this.eventFeed.push(event);
  }

  /** @internal */
  error(err: AureliaError): void {
    if (this.closed) return;
    this.onError(err);
    this.errorFeed.push(err);
  }

  /** @internal Completes both feeds (after delivering what is pending). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.eventFeed.complete();
    this.errorFeed.complete();
  }
}
