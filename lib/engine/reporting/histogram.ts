// A fixed-memory latency histogram with logarithmic buckets (about 3 % relative precision).

const SUB_BUCKETS = 32; // per power of two: bucket width is 1/32 of its octave (~3 %)
const OCTAVES = 40; // 1 µs .. 2^40 µs (12 days): every latency we can see

/** Percentiles of a latency distribution, in milliseconds. */
export interface LatencySummary {
  /** Number of samples. */
  readonly count: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/**
 * Records durations into log-spaced buckets so recording is O(1) without allocation and
 * percentiles are exact to within one bucket (~3 %). Values are microseconds internally.
 */
export class LatencyHistogram {
  private readonly counts = new Uint32Array(OCTAVES * SUB_BUCKETS);
  private total = 0;
  private maxUs = 0;

  /** Records one duration in milliseconds (fractional allowed; negative counts as 0). */
  record(ms: number): void {
    const us = ms > 0 ? ms * 1000 : 0;
    if (us > this.maxUs) this.maxUs = us;
    this.counts[bucketOf(us)]++;
    this.total++;
  }

  /** Number of recorded samples. */
  get count(): number {
    return this.total;
  }

  /** Percentiles of what was recorded. All zero when empty. */
  summary(): LatencySummary {
    if (this.total === 0) return { count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0 };
    return {
      count: this.total,
      p50Ms: this.percentile(0.5),
      p90Ms: this.percentile(0.9),
      p99Ms: this.percentile(0.99),
      maxMs: this.maxUs / 1000,
    };
  }

  /** Forgets every sample. */
  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.maxUs = 0;
  }

  private percentile(q: number): number {
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(upperBoundOf(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }
}

function bucketOf(us: number): number {
  if (us < SUB_BUCKETS) return Math.floor(us);
  const octave = Math.floor(Math.log2(us / SUB_BUCKETS)) + 1;
  if (octave >= OCTAVES) return OCTAVES * SUB_BUCKETS - 1;
  const base = SUB_BUCKETS * 2 ** (octave - 1);
  const sub = Math.floor((us - base) / (base / SUB_BUCKETS));
  return octave * SUB_BUCKETS + Math.min(sub, SUB_BUCKETS - 1);
}

/** The largest value (µs) that falls into bucket `i`. */
function upperBoundOf(i: number): number {
  const octave = Math.floor(i / SUB_BUCKETS);
  const sub = i % SUB_BUCKETS;
  if (octave === 0) return sub + 1;
  const base = SUB_BUCKETS * 2 ** (octave - 1);
  return base + (sub + 1) * (base / SUB_BUCKETS);
}
