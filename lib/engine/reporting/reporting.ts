// Observability of one domus: metrics snapshots, connected peers, and live event/error feeds.
import {
  Observable,
  type Observer,
  type Operator,
  Subject,
  Subscriber,
  type Subscription,
  type TeardownLogic,
} from 'rxjs';
import { AureliaError, ErrorId } from '../errors.js';
import type { MessagePriorityClass } from '../ids.js';
import type { ReplicaReport } from '../balancer/balancer.js';
import type { DomusMetrics, DomusMetricsDelta, MetricsRecorder } from './metrics.js';
import { SecurityReport } from './security.js';

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

/**
 * This domus began draining (`drain()` or the start of `shutdown()`: its senders were told, new
 * messages are refused with `Draining`), or its drain ended: `finished` is false when
 * `drainTimeoutMs` ran out with accepted work still undecided.
 */
export interface DrainEvent extends EventBase {
  readonly type: 'DrainStarted' | 'DrainComplete';
  /** `DrainComplete`: whether everything accepted before the drain was finished in time. */
  readonly finished?: boolean;
}

/**
 * A domus this one sends to announced that it is draining: nothing new is written to it; sends
 * queued for it that a balanced route can place elsewhere moved (`moved`), others wait for the
 * address to come back within their deadline.
 */
export interface PeerDrainingEvent extends EventBase {
  readonly type: 'PeerDraining';
  readonly identity: string;
  readonly address: string;
  /** Queued sends handed to other replicas. */
  readonly moved: number;
}

/**
 * A balancer decision about one replica of a route (see `ReplicaBalancer`): `ReplicaEjected` when
 * it failed `failuresToEject` sends in a row, could not be dialled, or failed its probe;
 * `ReplicaProbed` when its ejection ended and one send goes there to test it; `ReplicaReadmitted`
 * when that probe succeeded.
 */
export interface ReplicaEvent extends EventBase {
  readonly type: 'ReplicaEjected' | 'ReplicaProbed' | 'ReplicaReadmitted';
  /** The replica's address. */
  readonly address: string;
  /** `ReplicaEjected`: consecutive failures that led to it (dial failures included). */
  readonly failures?: number;
  /** `ReplicaEjected`: ejections in a row, 1 for the first (each doubles the backoff). */
  readonly ejections?: number;
  /** `ReplicaEjected`: when (`Date.now()`) the replica will be probed. */
  readonly until?: number;
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
  | ReplicaEvent
  | ShutdownEvent
  | DrainEvent
  | PeerDrainingEvent;

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
/** Most items handed to subscribers in one event-loop turn. */
const SLICE_ITEMS = 512;
/** Most time spent handing items to subscribers in one turn, in ms. */
const SLICE_MS = 2;

/** Where a subscriber's exception goes instead of becoming an uncaught exception. */
export type SubscriberErrorSink = (err: unknown) => void;

/**
 * An Observable whose subscribers' exceptions are contained: a `next`, `error` or `complete`
 * callback that throws (or an operator in a `pipe` of it that throws, for a subscriber without
 * an `error` callback) is passed to `report` instead of reaching rxjs' default handler, which
 * rethrows it as an uncaught exception and would end the process. Operators applied with `pipe`
 * yield contained Observables too.
 */
class ContainedObservable<T> extends Observable<T> {
  constructor(
    subscribe: ((subscriber: Subscriber<T>) => TeardownLogic) | undefined,
    private readonly report: SubscriberErrorSink,
  ) {
    super(subscribe);
  }

  override lift<R>(operator: Operator<T, R>): Observable<R> {
    const lifted = new ContainedObservable<R>(undefined, this.report);
    // The two fields rxjs' own lift sets; kept so that `pipe` stays contained.
    lifted.source = this;
    lifted.operator = operator;
    return lifted;
  }

  override subscribe(
    observerOrNext?: Partial<Observer<T>> | ((value: T) => void) | null,
    error?: ((err: unknown) => void) | null,
    complete?: (() => void) | null,
  ): Subscription {
    // Operators and firstValueFrom subscribe with a Subscriber of their own, which already routes
    // what throws inside it to the final subscriber, the one wrapped here.
    if (observerOrNext instanceof Subscriber) return super.subscribe(observerOrNext);
    const observer: Partial<Observer<T>> =
      typeof observerOrNext === 'function' || observerOrNext == null
        ? {
            next: observerOrNext ?? undefined,
            error: error ?? undefined,
            complete: complete ?? undefined,
          }
        : observerOrNext;
    const report = this.report;
    return super.subscribe({
      next(value) {
        try {
          observer.next?.call(observer, value);
        } catch (err) {
          report(err);
        }
      },
      error(err) {
        if (typeof observer.error !== 'function') {
          report(err);
          return;
        }
        try {
          observer.error.call(observer, err);
        } catch (thrown) {
          report(thrown);
        }
      },
      complete() {
        try {
          observer.complete?.call(observer);
        } catch (err) {
          report(err);
        }
      },
    });
  }
}

/**
 * Hands items to subscribers on later event-loop turns, so a subscriber never runs inside the
 * engine: at most `SLICE_ITEMS` items or `SLICE_MS` of subscriber time per turn, and after a
 * slice that used up its time the next waits as long as that slice took, so a slow subscriber
 * gets at most about half of the thread and timers and I/O keep running between slices. Past
 * `FEED_BUFFER` pending items the oldest are dropped (and counted).
 */
class DetachedFeed<T> {
  private readonly subject = new Subject<T>();
  private queue: T[] = [];
  private head = 0;
  private scheduled = false;
  private completing = false;
  private onDone: (() => void) | undefined;
  dropped = 0;
  readonly observable: Observable<T>;

  constructor(report: SubscriberErrorSink) {
    const subject = this.subject;
    this.observable = new ContainedObservable<T>(
      (subscriber) => subject.subscribe(subscriber),
      report,
    );
  }

  /** Items waiting for delivery. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  push(item: T): void {
    if (this.completing || !this.subject.observed) return;
    if (this.queue.length - this.head >= FEED_BUFFER) {
      this.queue[this.head++] = undefined as T;
      this.dropped++;
    }
    this.queue.push(item);
    this.schedule(0);
  }

  /** Delivers what is pending (in slices, as ever), then completes and calls `onDone`. */
  complete(onDone: () => void): void {
    if (this.completing) return;
    this.completing = true;
    this.onDone = onDone;
    if (this.pending === 0) this.finish();
  }

  private schedule(pauseMs: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (pauseMs <= 0) setImmediate(this.flush);
    else setTimeout(this.flush, pauseMs);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const started = performance.now();
    let elapsed = 0;
    let delivered = 0;
    while (this.head < this.queue.length && this.subject.observed) {
      const item = this.queue[this.head];
      this.queue[this.head++] = undefined as T;
      this.subject.next(item);
      elapsed = performance.now() - started;
      if (++delivered >= SLICE_ITEMS || elapsed >= SLICE_MS) break;
    }
    if (this.head >= this.queue.length || !this.subject.observed) {
      this.queue = [];
      this.head = 0;
      if (this.completing) this.finish();
      return;
    }
    if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.schedule(elapsed >= SLICE_MS ? Math.ceil(elapsed) : 0);
  };

  private finish(): void {
    this.subject.complete();
    const done = this.onDone;
    this.onDone = undefined;
    done?.();
  }
}

/** A live `metrics$` subscription, completed at shutdown. */
interface MetricsStream {
  complete(): void;
}

/**
 * Observability handle of a running domus (`domus.reporting`): metrics snapshots, the list of
 * connected peers, and rxjs feeds of events, errors and periodic metrics deltas. Subscribers are
 * called asynchronously, in bounded slices per event-loop turn, so a slow subscriber never
 * stalls the mesh; a subscriber that throws is reported to the domus's logger and does not end
 * the process. Every feed completes at shutdown, after `ShutdownComplete` was delivered.
 */
export class DomusReporting {
  /** The certificate in force, reloads refused, and calls refused by authorization policy. */
  readonly security = new SecurityReport();
  private readonly eventFeed: DetachedFeed<DomusReportingEvent>;
  private readonly errorFeed: DetachedFeed<AureliaError>;
  private readonly metricStreams = new Set<MetricsStream>();
  private readonly report: SubscriberErrorSink;
  private closed = false;
  private completed = false;

  /** Not for applications: the domus creates its reporting (`domus.reporting`). */
  constructor(
    private readonly recorder: MetricsRecorder,
    private readonly peers: () => PeerIdentityReport[],
    private readonly onError: (err: AureliaError) => void = () => {},
    onSubscriberError: SubscriberErrorSink = () => {},
  ) {
    this.report = (err) => {
      try {
        onSubscriberError(err);
      } catch {
        // A logger must not throw; if it does, the subscriber's error is dropped, not rethrown.
      }
    };
    this.eventFeed = new DetachedFeed(this.report);
    this.errorFeed = new DetachedFeed(this.report);
  }

  /** Live events (connections, restarts, overruns, reloads, shutdown). Completes at shutdown. */
  get events$(): Observable<DomusReportingEvent> {
    return this.eventFeed.observable;
  }

  /**
   * Errors the domus met outside any caller's promise (dial failures, protocol violations, …).
   * Completes at shutdown.
   */
  get errors$(): Observable<AureliaError> {
    return this.errorFeed.observable;
  }

  /** Both feeds, as `buildWithReporting` returns them. */
  feeds(): DomusReportingFeeds {
    return { events: this.events$, errors: this.errors$ };
  }

  /**
   * Emits, every `intervalMs` while subscribed, the deltas over that subscription's own last
   * interval (counter increments, current gauges, peaks and send latencies since its previous
   * emission, or since it subscribed). Subscriptions are independent of each other and of
   * `snapshotAndReset()`, so any number of consumers can sample at their own pace. The timer does
   * not keep the process alive; the Observable completes at shutdown. Throws
   * `AureliaError(InvalidConfig)` for an interval that is not an integer in 10..3600000.
   */
  metrics$(intervalMs: number): Observable<DomusMetricsDelta> {
    if (!Number.isInteger(intervalMs) || intervalMs < 10 || intervalMs > 3_600_000) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `metrics interval must be an integer in 10..3600000 ms, got ${intervalMs}`,
      );
    }
    return new ContainedObservable<DomusMetricsDelta>((subscriber) => {
      if (this.completed) {
        subscriber.complete();
        return undefined;
      }
      const window = this.recorder.openWindow();
      const timer = setInterval(() => subscriber.next(window.sample()), intervalMs);
      timer.unref();
      const stream: MetricsStream = { complete: () => subscriber.complete() };
      this.metricStreams.add(stream);
      return () => {
        clearInterval(timer);
        window.close();
        this.metricStreams.delete(stream);
      };
    }, this.report);
  }

  /** Cumulative metrics since the domus was built. */
  snapshot(): DomusMetrics {
    return this.recorder.snapshot();
  }

  /**
   * Counter increments since the previous `snapshotAndReset()` call (or since build), current
   * gauges and peaks over that interval. All callers share this one interval; `metrics$`
   * subscriptions have their own and neither disturbs the other.
   */
  snapshotAndReset(): DomusMetricsDelta {
    return this.recorder.snapshotAndReset();
  }

  /**
   * Every replica of a balanced route this domus sent to recently: its address, sends
   * outstanding, latency estimate, consecutive failures and whether it is ejected.
   */
  replicas(): ReplicaReport[] {
    return this.recorder.replicaReports();
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

  /**
   * @internal Completes every feed: the event and error feeds after delivering what is pending
   * (so `ShutdownComplete` reaches event subscribers first), then the `metrics$` subscriptions.
   * Resolves once every feed completed, or after `boundMs` if subscribers are still being fed
   * (delivery then goes on in the background).
   */
  close(boundMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => {
      const bound = setTimeout(resolve, boundMs);
      let open = 2;
      const oneDone = (): void => {
        if (--open > 0) return;
        this.completed = true;
        for (const stream of [...this.metricStreams]) stream.complete();
        this.metricStreams.clear();
        clearTimeout(bound);
        resolve();
      };
      this.eventFeed.complete(oneDone);
      this.errorFeed.complete(oneDone);
    });
  }
}
