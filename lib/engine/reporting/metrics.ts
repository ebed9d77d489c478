// The counters and gauges one domus keeps, and their snapshot and delta forms.
import type { ReplicaReport } from '../balancer/balancer.js';
import { LatencyHistogram, type LatencySummary } from './histogram.js';

/** Cumulative counters of a domus since it was built (see `DomusReporting.snapshot`). */
export interface DomusMetrics {
  /** Distinct peer identities with at least one live callis, now and at most so far. */
  readonly currentPeers: number;
  readonly peakPeers: number;
  readonly currentPrimaryCallis: number;
  readonly peakPrimaryCallis: number;
  readonly currentBlobCallis: number;
  readonly peakBlobCallis: number;
  readonly callisOpened: number;
  readonly callisClosed: number;
  readonly dialAttempts: number;
  readonly dialFailures: number;
  readonly identityMismatches: number;
  readonly protocolViolations: number;
  readonly handshakesRefused: number;
  /**
   * Times a peer's callis stopped being read: the peer exhausted a per-peer budget, or left our
   * answers unread.
   */
  readonly peerReadPauses: number;
  /** Sends refused with `LocalQueueFull`, per priority lane. */
  readonly queueOverrunsA2: number;
  readonly queueOverrunsA3: number;
  /** Messages this domus sent (remote and local) and how they ended. */
  readonly messagesSent: number;
  readonly sendsAccepted: number;
  readonly sendsFailed: number;
  /** Messages delivered to this domus's tabernae and how the application decided. */
  readonly messagesReceived: number;
  readonly messagesAccepted: number;
  readonly messagesRejected: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly blobBytesIn: number;
  readonly blobBytesOut: number;
  /** Replicas of balanced routes taken out of rotation (failure accrual, failed dial or probe). */
  readonly replicaEjections: number;
  /**
   * Sends that no application had seen moved to another replica of their route (their replica
   * drained, could not be reached, or refused them as draining or busy).
   */
  readonly sendsFailedOver: number;
  /** Round trip of accepted sends: from `send` to the remote application's accept. */
  readonly sendLatency: LatencySummary;
}

/**
 * Counter increments since the previous `snapshotAndReset` (or since build), with the gauges'
 * current values and their peaks over the interval.
 */
export type DomusMetricsDelta = DomusMetrics & {
  /** Length of the interval the deltas cover, in milliseconds. */
  readonly intervalMs: number;
};

type Counter = Exclude<
  keyof DomusMetrics,
  | 'currentPeers'
  | 'peakPeers'
  | 'currentPrimaryCallis'
  | 'peakPrimaryCallis'
  | 'currentBlobCallis'
  | 'peakBlobCallis'
  | 'sendLatency'
>;

const COUNTERS: readonly Counter[] = [
  'callisOpened',
  'callisClosed',
  'dialAttempts',
  'dialFailures',
  'identityMismatches',
  'protocolViolations',
  'handshakesRefused',
  'peerReadPauses',
  'queueOverrunsA2',
  'queueOverrunsA3',
  'messagesSent',
  'sendsAccepted',
  'sendsFailed',
  'messagesReceived',
  'messagesAccepted',
  'messagesRejected',
  'bytesIn',
  'bytesOut',
  'blobBytesIn',
  'blobBytesOut',
  'replicaEjections',
  'sendsFailedOver',
];

/**
 * One interval over which deltas are taken: the counters' values at its start, the gauges' peaks
 * and the send latencies since then. `snapshotAndReset` has one; each `metrics$` subscription
 * opens its own, so readers never reset each other's interval.
 */
export class MetricsWindow {
  /** @internal */
  baseline: Record<Counter, number>;
  /** @internal */
  startedAt: number;
  /** @internal */
  peakPeers: number;
  /** @internal */
  peakPrimary: number;
  /** @internal */
  peakBlob: number;
  /** @internal */
  readonly latency = new LatencyHistogram();

  /** Not for applications: opened by `MetricsRecorder.openWindow`. */
  constructor(
    private readonly recorder: MetricsRecorder,
    now: number,
  ) {
    this.baseline = recorder.counters();
    this.startedAt = now;
    const gauges = recorder.gauges();
    this.peakPeers = gauges.peers;
    this.peakPrimary = gauges.primary;
    this.peakBlob = gauges.blob;
  }

  /** Counter increments since the window's start (or last sample), gauges, peaks; restarts it. */
  sample(now = Date.now()): DomusMetricsDelta {
    return this.recorder.sampleWindow(this, now);
  }

  /** Stops tracking this window (its owner unsubscribed). Idempotent. */
  close(): void {
    this.recorder.closeWindow(this);
  }
}

/**
 * The mutable metrics of one domus. The engine bumps the public fields directly (a field
 * increment is the cheapest thing a hot path can do); readers take snapshots, or deltas over a
 * `MetricsWindow` of their own.
 */
export class MetricsRecorder {
  callisOpened = 0;
  callisClosed = 0;
  dialAttempts = 0;
  dialFailures = 0;
  identityMismatches = 0;
  protocolViolations = 0;
  handshakesRefused = 0;
  peerReadPauses = 0;
  queueOverrunsA2 = 0;
  queueOverrunsA3 = 0;
  messagesSent = 0;
  sendsAccepted = 0;
  sendsFailed = 0;
  messagesReceived = 0;
  messagesAccepted = 0;
  messagesRejected = 0;
  bytesIn = 0;
  bytesOut = 0;
  blobBytesIn = 0;
  blobBytesOut = 0;
  replicaEjections = 0;
  sendsFailedOver = 0;
  /** Reports the balanced replicas; set by the domus's router. */
  replicaReports: () => ReplicaReport[] = () => [];

  private peers = 0;
  private primary = 0;
  private blob = 0;
  private peakPeersEver = 0;
  private peakPrimaryEver = 0;
  private peakBlobEver = 0;
  private readonly latencyEver = new LatencyHistogram();
  /** Open windows; the first is `snapshotAndReset`'s. */
  private readonly windows: MetricsWindow[] = [];
  private readonly resetWindow: MetricsWindow;

  constructor() {
    this.resetWindow = this.openWindow();
  }

  /** Records the round trip of one accepted send. */
  recordSendLatency(ms: number): void {
    this.latencyEver.record(ms);
    const windows = this.windows;
    for (let i = 0; i < windows.length; i++) windows[i].latency.record(ms);
  }

  /** Adjusts the live peer gauge by +1 / -1. */
  peerDelta(delta: 1 | -1): void {
    this.peers += delta;
    if (this.peers > this.peakPeersEver) this.peakPeersEver = this.peers;
    for (const w of this.windows) if (this.peers > w.peakPeers) w.peakPeers = this.peers;
  }

  /** Adjusts the live callis gauge of a kind by +1 / -1 (and the opened/closed totals). */
  callisDelta(kind: 'primary' | 'blob', delta: 1 | -1): void {
    if (delta > 0) this.callisOpened++;
    else this.callisClosed++;
    if (kind === 'primary') {
      this.primary += delta;
      if (this.primary > this.peakPrimaryEver) this.peakPrimaryEver = this.primary;
      for (const w of this.windows) if (this.primary > w.peakPrimary) w.peakPrimary = this.primary;
    } else {
      this.blob += delta;
      if (this.blob > this.peakBlobEver) this.peakBlobEver = this.blob;
      for (const w of this.windows) if (this.blob > w.peakBlob) w.peakBlob = this.blob;
    }
  }

  /** Cumulative values since build. */
  snapshot(): DomusMetrics {
    return Object.freeze({
      ...this.counters(),
      currentPeers: this.peers,
      peakPeers: this.peakPeersEver,
      currentPrimaryCallis: this.primary,
      peakPrimaryCallis: this.peakPrimaryEver,
      currentBlobCallis: this.blob,
      peakBlobCallis: this.peakBlobEver,
      sendLatency: this.latencyEver.summary(),
    });
  }

  /**
   * Increments since the previous call (or since build), current gauges and peaks over that
   * interval; starts the next interval. Its interval is its own: `metrics$` subscriptions keep
   * theirs (see `openWindow`).
   */
  snapshotAndReset(): DomusMetricsDelta {
    return this.sampleWindow(this.resetWindow, Date.now());
  }

  /** Opens an interval of its own for one reader, starting now; `close()` it when done. */
  openWindow(now = Date.now()): MetricsWindow {
    const window = new MetricsWindow(this, now);
    this.windows.push(window);
    return window;
  }

  /** Windows being tracked, `snapshotAndReset`'s included. */
  get openWindows(): number {
    return this.windows.length;
  }

  /** @internal */
  counters(): Record<Counter, number> {
    const out = {} as Record<Counter, number>;
    for (const name of COUNTERS) out[name] = this[name];
    return out;
  }

  /** @internal */
  gauges(): { peers: number; primary: number; blob: number } {
    return { peers: this.peers, primary: this.primary, blob: this.blob };
  }

  /** @internal See `MetricsWindow.sample`. */
  sampleWindow(window: MetricsWindow, now: number): DomusMetricsDelta {
    const current = this.counters();
    const counters = {} as Record<Counter, number>;
    for (const name of COUNTERS) counters[name] = current[name] - window.baseline[name];
    const delta: DomusMetricsDelta = Object.freeze({
      ...counters,
      currentPeers: this.peers,
      peakPeers: window.peakPeers,
      currentPrimaryCallis: this.primary,
      peakPrimaryCallis: window.peakPrimary,
      currentBlobCallis: this.blob,
      peakBlobCallis: window.peakBlob,
      sendLatency: window.latency.summary(),
      intervalMs: now - window.startedAt,
    });
    window.baseline = current;
    window.startedAt = now;
    window.peakPeers = this.peers;
    window.peakPrimary = this.primary;
    window.peakBlob = this.blob;
    window.latency.reset();
    return delta;
  }

  /** @internal See `MetricsWindow.close`. */
  closeWindow(window: MetricsWindow): void {
    if (window === this.resetWindow) return;
    const i = this.windows.indexOf(window);
    if (i >= 0) this.windows.splice(i, 1);
  }
}
