import { Command } from 'commander';

import { registerBench } from '../../../lib/cli/bench.js';
import { benchPlan, rateWorkload, resolveBenchOptions } from '../../../lib/cli/bench/plan.js';
import { AureliaError, ErrorId } from '../../../lib/index.js';

function invalid(f: () => unknown): AureliaError {
  try {
    f();
  } catch (err) {
    if (err instanceof AureliaError && err.kind === ErrorId.InvalidConfig) return err;
    throw err;
  }
  throw new Error('expected InvalidConfig');
}

describe('bench options', () => {
  it('measures every group, system and transport unless told otherwise', () => {
    const { plan, json } = resolveBenchOptions({});
    expect(plan.mode).toBe('full');
    expect([...plan.groups]).toEqual(['latency', 'rate', 'bulk', 'connect', 'memory', 'replicas']);
    expect(plan.replicas).toMatchObject({ counts: [1, 2, 3], inflight: 32 });
    expect(plan.transports).toEqual(['tcp', 'unix']);
    expect(plan.inflights).toEqual([1, 16, 256]);
    expect(plan.payloads).toEqual([64, 4096]);
    expect(json).toBeUndefined();
  });

  it('runs the sizes the issue names in full mode and smaller ones with --quick', () => {
    const full = benchPlan(false);
    expect(full.bulkSingleBytes).toBe(1024 ** 3);
    expect(full.bulkConcurrent).toEqual({ streams: 16, bytes: 64 * 1024 ** 2 });
    expect(full.idlePeers).toBe(200);
    const quick = resolveBenchOptions({ quick: true, json: 'out.json' });
    expect(quick.plan.mode).toBe('quick');
    expect(quick.json).toBe('out.json');
    expect(quick.plan.bulkSingleBytes).toBeLessThan(full.bulkSingleBytes);
    expect(quick.plan.rateTiming.runs).toBeGreaterThanOrEqual(3);
  });

  it('narrows the run with --only, --systems and --transport', () => {
    const { plan } = resolveBenchOptions({
      only: 'rate, latency',
      systems: 'raw,engine',
      transport: 'unix',
    });
    expect([...plan.groups]).toEqual(['rate', 'latency']);
    expect([...plan.systems]).toEqual(['raw', 'engine']);
    expect(plan.transports).toEqual(['unix']);
  });

  it('refuses unknown groups, systems, transports and an empty JSON path, naming the option', () => {
    expect(invalid(() => resolveBenchOptions({ only: 'rate,speed' })).message).toContain(
      "--only got unknown 'speed'",
    );
    expect(invalid(() => resolveBenchOptions({ systems: 'kafka' })).message).toContain('--systems');
    expect(invalid(() => resolveBenchOptions({ only: ' , ' })).message).toContain('--only needs');
    expect(invalid(() => resolveBenchOptions({ transport: 'udp' })).message).toContain(
      '--transport',
    );
    expect(invalid(() => resolveBenchOptions({ json: ' ' })).message).toContain('--json');
  });

  it('names rate workloads by kind, payload and messages in flight', () => {
    expect(rateWorkload(64, 16)).toEqual({
      id: 'request-64-x16',
      title: 'acked msgs 64 B, 16 in flight',
    });
    expect(rateWorkload(4096, 1, 'event')).toEqual({
      id: 'event-4096-x1',
      title: 'events 4 KiB, 1 in flight',
    });
  });

  it('registers a bench command whose action rejects an invalid option before measuring', async () => {
    const out: string[] = [];
    const program = new Command('aurelia-mesh').exitOverride();
    registerBench(program, { stdout: (t) => out.push(t), stderr: (t) => out.push(t) });
    await expect(
      program.parseAsync(['bench', '--only', 'nothing'], { from: 'user' }),
    ).rejects.toMatchObject({ kind: ErrorId.InvalidConfig });
    expect(out).toEqual([]);
  });
});
