// The counters and gauges one domus keeps, and their snapshot and delta forms.
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
];

/**
 * The mutable metrics of one domus. The engine bumps the public fields directly (a field
 * increment is the cheapest thing a hot path can do); readers take snapshots.
 */
export class MetricsRecorder {
  callisOpened = 0;
  callisClosed = 0;
  dialAttempts = 0;
  dialFailures = 0;
  identityMismatches = 0;
  protocolViolations = 0;
  handshakesRefused = 0;
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

  private peers = 0;
  private primary = 0;
  private blob = 0;
  private peakPeersEver = 0;
  private peakPrimaryEver = 0;
  private peakBlobEver = 0;
  private peakPeersInterval = 0;
  private peakPrimaryInterval = 0;
  private peakBlobInterval = 0;
  private readonly latencyEver = new LatencyHistogram();
  private readonly latencyInterval = new LatencyHistogram();
  private baseline: Record<Counter, number> = zeroCounters();
  private intervalStart = Date.now();

  /** Records the round trip of one accepted send. */
  recordSendLatency(ms: number): void {
    this.latencyEver.record(ms);
    this.latencyInterval.record(ms);
  }

  /** Adjusts the live peer gauge by +1 / -1. */
  peerDelta(delta: 1 | -1): void {
    this.peers += delta;
    if (this.peers > this.peakPeersEver) this.peakPeersEver = this.peers;
    if (this.peers > this.peakPeersInterval) this.peakPeersInterval = this.peers;
  }

  /** Adjusts the live callis gauge of a kind by +1 / -1 (and the opened/closed totals). */
  callisDelta(kind: 'primary' | 'blob', delta: 1 | -1): void {
    if (delta > 0) this.callisOpened++;
    else this.callisClosed++;
    if (kind === 'primary') {
      this.primary += delta;
      if (this.primary > this.peakPrimaryEver) this.peakPrimaryEver = this.primary;
      if (this.primary > this.peakPrimaryInterval) this.peakPrimaryInterval = this.primary;
    } else {
      this.blob += delta;
      if (this.blob > this.peakBlobEver) this.peakBlobEver = this.blob;
      if (this.blob > this.peakBlobInterval) this.peakBlobInterval = this.blob;
    }
  }

  /** Cumulative values since build. */
  snapshot(): DomusMetrics {
    const counters = {} as Record<Counter, number>;
    for (const name of COUNTERS) counters[name] = this[name];
    return Object.freeze({
      ...counters,
      currentPeers: this.peers,
      peakPeers: this.peakPeersEver,
      currentPrimaryCallis: this.primary,
      peakPrimaryCallis: this.peakPrimaryEver,
      currentBlobCallis: this.blob,
      peakBlobCallis: this.peakBlobEver,
      sendLatency: this.latencyEver.summary(),
    });
  }

  /** Increments since the previous call, current gauges and peaks over the interval; resets. */
  snapshotAndReset(): DomusMetricsDelta {
    const now = Date.now();
    const counters = {} as Record<Counter, number>;
    const next = zeroCounters();
    for (const name of COUNTERS) {
      counters[name] = this[name] - this.baseline[name];
      next[name] = this[name];
    }
    const delta: DomusMetricsDelta = Object.freeze({
      ...counters,
      currentPeers: this.peers,
      peakPeers: this.peakPeersInterval,
      currentPrimaryCallis: this.primary,
      peakPrimaryCallis: this.peakPrimaryInterval,
      currentBlobCallis: this.blob,
      peakBlobCallis: this.peakBlobInterval,
      sendLatency: this.latencyInterval.summary(),
      intervalMs: now - this.intervalStart,
    });
    this.baseline = next;
    this.intervalStart = now;
    this.peakPeersInterval = this.peers;
    this.peakPrimaryInterval = this.primary;
    this.peakBlobInterval = this.blob;
    this.latencyInterval.reset();
    return delta;
  }
}

function zeroCounters(): Record<Counter, number> {
  const out = {} as Record<Counter, number>;
  for (const name of COUNTERS) out[name] = 0;
  return out;
}
