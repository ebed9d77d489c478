import { describe, expect, it } from '@jest/globals';
import { Counter, Registry } from 'prom-client';
import { ReplicaBalancer } from '../../../lib/engine/balancer/balancer.js';
import { ErrorId } from '../../../lib/engine/errors.js';
import { MetricsRecorder } from '../../../lib/engine/reporting/metrics.js';
import {
  OTHER_PEER_IDENTITY,
  registerAureliaMetrics,
} from '../../../lib/engine/reporting/prometheus.js';
import {
  DomusReporting,
  type PeerIdentityReport,
} from '../../../lib/engine/reporting/reporting.js';
import { parseExposition, sampleValue, type ParsedFamily } from '../../support/prometheus.js';
import { expectError } from '../../support/expect.js';

function fakeDomus(peers: PeerIdentityReport[] = []): {
  recorder: MetricsRecorder;
  reporting: DomusReporting;
  peers: PeerIdentityReport[];
} {
  const recorder = new MetricsRecorder();
  return { recorder, peers, reporting: new DomusReporting(recorder, () => [...peers]) };
}

async function scrape(registry: Registry): Promise<Map<string, ParsedFamily>> {
  return parseExposition(await registry.metrics());
}

describe('registerAureliaMetrics', () => {
  it('exposes every family in valid exposition text with HELP, TYPE and a domus label', async () => {
    const registry = new Registry();
    const { reporting } = fakeDomus();
    const registration = registerAureliaMetrics(reporting, { registry, domus: 'billing' });
    const families = await scrape(registry);
    expect([...families.keys()].sort()).toEqual([...registration.metricNames].sort());
    for (const [name, family] of families) {
      expect(name.startsWith('aurelia_')).toBe(true);
      expect(family.help.length).toBeGreaterThan(0);
      expect(family.type === 'counter').toBe(name.endsWith('_total'));
      for (const sample of family.samples) expect(sample.labels.domus).toBe('billing');
    }
    expect(sampleValue(families, 'aurelia_messages_sent_total', {})).toBe(0);
    // No sample yet: the latency quantiles are absent rather than a misleading 0.
    expect(families.get('aurelia_send_latency_seconds')!.samples).toEqual([]);
    expect(sampleValue(families, 'aurelia_send_latency_samples_total', {})).toBe(0);
    registration.dispose();
  });

  it('moves counters, gauges and latency quantiles when the recorder moves', async () => {
    const registry = new Registry();
    const { recorder, reporting } = fakeDomus();
    const registration = registerAureliaMetrics(reporting, { registry });
    recorder.messagesSent += 3;
    recorder.bytesOut += 4096;
    recorder.queueOverrunsA3++;
    recorder.peerDelta(1);
    recorder.callisDelta('primary', 1);
    recorder.callisDelta('blob', 1);
    recorder.callisDelta('blob', -1);
    for (const ms of [1, 2, 3, 4, 100]) recorder.recordSendLatency(ms);

    let families = await scrape(registry);
    expect(sampleValue(families, 'aurelia_messages_sent_total', {})).toBe(3);
    expect(sampleValue(families, 'aurelia_bytes_sent_total', {})).toBe(4096);
    expect(sampleValue(families, 'aurelia_queue_overruns_total', { priority: 'A3' })).toBe(1);
    expect(sampleValue(families, 'aurelia_queue_overruns_total', { priority: 'A2' })).toBe(0);
    expect(sampleValue(families, 'aurelia_peers', {})).toBe(1);
    expect(sampleValue(families, 'aurelia_callis', { kind: 'primary' })).toBe(1);
    expect(sampleValue(families, 'aurelia_callis', { kind: 'blob' })).toBe(0);
    expect(sampleValue(families, 'aurelia_callis_peak', { kind: 'blob' })).toBe(1);
    expect(sampleValue(families, 'aurelia_callis_opened_total', {})).toBe(2);
    expect(sampleValue(families, 'aurelia_send_latency_samples_total', {})).toBe(5);
    expect(sampleValue(families, 'aurelia_send_latency_seconds', { quantile: '0.5' })).toBeCloseTo(
      0.003,
      3,
    );
    expect(sampleValue(families, 'aurelia_send_latency_max_seconds', {})).toBeCloseTo(0.1, 6);

    recorder.messagesSent += 2;
    recorder.peerDelta(-1);
    families = await scrape(registry);
    expect(sampleValue(families, 'aurelia_messages_sent_total', {})).toBe(5);
    expect(sampleValue(families, 'aurelia_peers', {})).toBe(0);
    expect(sampleValue(families, 'aurelia_peers_peak', {})).toBe(1);
    registration.dispose();
  });

  it('reads each domus once per scrape and never between scrapes', async () => {
    const registry = new Registry();
    const { reporting } = fakeDomus();
    let snapshots = 0;
    const original = reporting.snapshot.bind(reporting);
    reporting.snapshot = () => {
      snapshots++;
      return original();
    };
    const registration = registerAureliaMetrics(reporting, { registry });
    expect(snapshots).toBe(0);
    await registry.metrics();
    expect(snapshots).toBe(1);
    await registry.metrics();
    expect(snapshots).toBe(2);
    registration.dispose();
  });

  it('keeps several domus in one registry apart by the domus label', async () => {
    const registry = new Registry();
    const a = fakeDomus();
    const b = fakeDomus();
    const ra = registerAureliaMetrics(a.reporting, { registry, domus: 'spiffe://mesh/a' });
    const rb = registerAureliaMetrics(b.reporting, { registry, domus: 'spiffe://mesh/b' });
    a.recorder.messagesReceived += 7;
    b.recorder.messagesReceived += 11;
    const families = await scrape(registry);
    const name = 'aurelia_messages_received_total';
    expect(sampleValue(families, name, { domus: 'spiffe://mesh/a' })).toBe(7);
    expect(sampleValue(families, name, { domus: 'spiffe://mesh/b' })).toBe(11);
    expect(families.get(name)!.samples).toHaveLength(2);

    expect(() =>
      registerAureliaMetrics(fakeDomus().reporting, { registry, domus: 'spiffe://mesh/a' }),
    ).toThrow(/already registered/);
    ra.dispose();
    rb.dispose();
  });

  it('reports callis per peer identity, summing identities past the cap as _other', async () => {
    const registry = new Registry();
    const peers: PeerIdentityReport[] = [
      {
        identity: 'spiffe://mesh/a',
        addresses: ['tls://10.0.0.1:7000'],
        primaryCallis: 1,
        blobCallis: 0,
      },
      {
        identity: 'spiffe://mesh/a',
        addresses: ['tls://10.0.0.2:7000'],
        primaryCallis: 1,
        blobCallis: 1,
      },
      {
        identity: 'spiffe://mesh/b',
        addresses: ['tls://10.0.0.3:7000'],
        primaryCallis: 1,
        blobCallis: 0,
      },
      {
        identity: 'spiffe://mesh/c',
        addresses: ['tls://10.0.0.4:7000'],
        primaryCallis: 1,
        blobCallis: 2,
      },
    ];
    const domus = fakeDomus(peers);
    const registration = registerAureliaMetrics(domus.reporting, {
      registry,
      maxPeerIdentities: 2,
    });
    let families = await scrape(registry);
    const name = 'aurelia_peer_callis';
    expect(sampleValue(families, name, { identity: 'spiffe://mesh/a', kind: 'primary' })).toBe(2);
    expect(sampleValue(families, name, { identity: 'spiffe://mesh/a', kind: 'blob' })).toBe(1);
    expect(sampleValue(families, name, { identity: 'spiffe://mesh/b', kind: 'primary' })).toBe(1);
    expect(sampleValue(families, name, { identity: OTHER_PEER_IDENTITY, kind: 'blob' })).toBe(2);
    expect(new Set(families.get(name)!.samples.map((s) => s.labels.identity)).size).toBe(3);

    // A disconnected identity frees its slot; those still connected keep theirs.
    domus.peers.splice(2, 1);
    families = await scrape(registry);
    expect(
      sampleValue(families, name, { identity: 'spiffe://mesh/b', kind: 'primary' }),
    ).toBeUndefined();
    expect(sampleValue(families, name, { identity: 'spiffe://mesh/c', kind: 'blob' })).toBe(2);
    expect(
      sampleValue(families, name, { identity: OTHER_PEER_IDENTITY, kind: 'blob' }),
    ).toBeUndefined();
    registration.dispose();
  });

  it('reports ejections and each balanced replica with its outstanding sends and ejection', async () => {
    const registry = new Registry();
    const { recorder, reporting } = fakeDomus();
    const balancer = new ReplicaBalancer({ ejectionMs: 60_000 });
    recorder.replicaReports = () => balancer.replicas(Date.now());
    const registration = registerAureliaMetrics(reporting, { registry });
    const [a, b] = ['tls://10.0.0.1:7000', 'tls://10.0.0.2:7000'];
    balancer.pick([a, b], 'round-robin', Date.now());
    balancer.pick([a, b], 'round-robin', Date.now());
    balancer.started(a);
    balancer.started(a);
    balancer.connectFailed(b, Date.now());
    recorder.replicaEjections++;
    const families = await scrape(registry);
    expect(sampleValue(families, 'aurelia_replica_ejections_total', {})).toBe(1);
    expect(sampleValue(families, 'aurelia_replica_outstanding', { replica: a })).toBe(2);
    expect(sampleValue(families, 'aurelia_replica_outstanding', { replica: b })).toBe(0);
    expect(sampleValue(families, 'aurelia_replica_ejected', { replica: a })).toBe(0);
    expect(sampleValue(families, 'aurelia_replica_ejected', { replica: b })).toBe(1);
    registration.dispose();
  });

  it('adds constant labels and a custom prefix', async () => {
    const registry = new Registry();
    const registration = registerAureliaMetrics(fakeDomus().reporting, {
      registry,
      prefix: 'mesh_',
      labels: { service: 'billing', zone: 'eu "west"' },
    });
    const families = await scrape(registry);
    const sample = families.get('mesh_dial_attempts_total')!.samples[0]!;
    expect(sample.labels).toEqual({ domus: 'default', service: 'billing', zone: 'eu "west"' });
    expect(() =>
      registerAureliaMetrics(fakeDomus().reporting, {
        registry,
        prefix: 'mesh_',
        domus: 'other',
        labels: { team: 'x' },
      }),
    ).toThrow(/same names/);
    registration.dispose();
  });

  it('dispose removes the domus series, and the last dispose unregisters the families', async () => {
    const registry = new Registry();
    const a = registerAureliaMetrics(fakeDomus().reporting, { registry, domus: 'a' });
    const b = registerAureliaMetrics(fakeDomus().reporting, { registry, domus: 'b' });
    a.dispose();
    a.dispose();
    const families = await scrape(registry);
    expect(families.get('aurelia_messages_sent_total')!.samples.map((s) => s.labels.domus)).toEqual(
      ['b'],
    );
    b.dispose();
    expect(await registry.metrics()).toBe('\n');
    expect(registry.getMetricsAsArray()).toHaveLength(0);
    // The names are free again.
    const again = registerAureliaMetrics(fakeDomus().reporting, { registry, domus: 'a' });
    expect(registry.getMetricsAsArray().length).toBe(again.metricNames.length);
    again.dispose();
  });

  it('registers again after the registry was cleared', async () => {
    const registry = new Registry();
    const a = registerAureliaMetrics(fakeDomus().reporting, { registry, domus: 'a' });
    registry.clear();
    const b = registerAureliaMetrics(fakeDomus().reporting, { registry, domus: 'b' });
    const families = await scrape(registry);
    expect(families.get('aurelia_peers')!.samples).toHaveLength(2);
    a.dispose();
    b.dispose();
  });

  it('refuses a name another metric holds, leaving the registry as it was', () => {
    const registry = new Registry();
    new Counter({
      name: 'aurelia_dial_attempts_total',
      help: 'someone else',
      registers: [registry],
    });
    expect(() => registerAureliaMetrics(fakeDomus().reporting, { registry })).toThrow(
      /aurelia_dial_attempts_total is already registered/,
    );
    expect(registry.getMetricsAsArray().map((m) => m.name)).toEqual([
      'aurelia_dial_attempts_total',
    ]);
  });

  it('rejects invalid options with InvalidConfig naming the option', () => {
    const { reporting } = fakeDomus();
    const registry = new Registry();
    const cases: [Parameters<typeof registerAureliaMetrics>[1], RegExp][] = [
      [{ registry, prefix: '1bad' }, /prefix "1bad"/],
      [{ registry, domus: '' }, /domus must be a non-empty string/],
      [{ registry, labels: { domus: 'x' } }, /"domus" is reserved/],
      [{ registry, labels: { 'bad-name': 'x' } }, /"bad-name" is not a Prometheus label name/],
      [{ registry, maxPeerIdentities: -1 }, /maxPeerIdentities must be an integer in 0\.\.10000/],
    ];
    for (const [options, message] of cases) {
      const caught = expectError(ErrorId.InvalidConfig, () =>
        registerAureliaMetrics(reporting, options),
      );
      expect(caught.message).toMatch(message);
    }
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });
});
