// Live connection bookkeeping per remote identity: peer gauges, events and connected-peer reports.
import type { MetricsRecorder } from './reporting/metrics.js';
import type { DomusReporting, PeerIdentityReport } from './reporting/reporting.js';

/** Live connection counts of one remote identity. */
interface PeerLinks {
  primary: number;
  blob: number;
  addresses: Map<string, number>;
}

/**
 * Counts the live callis of every remote identity, in both directions: the first one up emits
 * `PeerConnected`, the last one down `PeerDisconnected`, and the counts feed the peer and callis
 * gauges and `DomusReporting.connectedPeers()`.
 */
export class LinkBook {
  private readonly links = new Map<string, PeerLinks>();

  constructor(
    private readonly metrics: MetricsRecorder,
    private readonly reporting: DomusReporting,
  ) {}

  /** A callis to or from `identity` at `address` went up. */
  up(identity: string, address: string, kind: 'primary' | 'blob'): void {
    let links = this.links.get(identity);
    if (!links) {
      links = { primary: 0, blob: 0, addresses: new Map() };
      this.links.set(identity, links);
      this.metrics.peerDelta(1);
      this.reporting.emit({ type: 'PeerConnected', at: Date.now(), identity, address });
    }
    links[kind]++;
    links.addresses.set(address, (links.addresses.get(address) ?? 0) + 1);
    this.metrics.callisDelta(kind, 1);
  }

  /** A callis to or from `identity` at `address` went down. */
  down(identity: string, address: string, kind: 'primary' | 'blob'): void {
    const links = this.links.get(identity);
    if (!links) return;
    links[kind]--;
    const n = (links.addresses.get(address) ?? 1) - 1;
    if (n <= 0) links.addresses.delete(address);
    else links.addresses.set(address, n);
    this.metrics.callisDelta(kind, -1);
    if (links.primary + links.blob <= 0) {
      this.links.delete(identity);
      this.metrics.peerDelta(-1);
      this.reporting.emit({ type: 'PeerDisconnected', at: Date.now(), identity, address });
    }
  }

  /** One report per connected identity. */
  reports(): PeerIdentityReport[] {
    const out: PeerIdentityReport[] = [];
    for (const [identity, links] of this.links) {
      out.push({
        identity,
        addresses: [...links.addresses.keys()],
        primaryCallis: links.primary,
        blobCallis: links.blob,
      });
    }
    return out;
  }
}
