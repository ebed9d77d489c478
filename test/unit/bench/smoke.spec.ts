import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  InflightWindow,
  measureRate,
  measureWindowedRate,
} from '../../../lib/cli/bench/measure.js';
import { benchPlan } from '../../../lib/cli/bench/plan.js';
import { runBench } from '../../../lib/cli/bench/runner.js';
import { AureliaError, ErrorId } from '../../../lib/index.js';

const timing = { warmupMs: 20, runMs: 40, runs: 3 };

describe('bench measurement loops', () => {
  it('reports one rate per run and their median for a closed loop', async () => {
    const rate = await measureRate(
      () => new Promise((resolve) => setImmediate(resolve)),
      4,
      timing,
    );
    expect(rate.runs).toHaveLength(3);
    expect(rate.median).toBeGreaterThan(0);
    expect(rate.runs).toContain(rate.median);
    expect(rate.cpuUsPerOp).toBeGreaterThan(0);
  });

  it('rejects with the operation’s own error and stops every loop', async () => {
    let calls = 0;
    const failing = async (): Promise<void> => {
      calls++;
      if (calls > 10) throw new AureliaError(ErrorId.LocalQueueFull, 'lane full');
      await new Promise((resolve) => setImmediate(resolve));
    };
    await expect(measureRate(failing, 2, timing)).rejects.toMatchObject({
      kind: ErrorId.LocalQueueFull,
    });
    const after = calls;
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toBe(after);
  });

  it('keeps a fire-and-forget sender at most the window ahead of its receiver', async () => {
    const window = new InflightWindow(8);
    let emitted = 0;
    let maxAhead = 0;
    const rate = await measureWindowedRate(
      () => {
        emitted++;
        maxAhead = Math.max(maxAhead, emitted - window.delivered);
        setImmediate(() => window.received());
      },
      window,
      timing,
    );
    expect(rate.median).toBeGreaterThan(0);
    expect(maxAhead).toBeLessThanOrEqual(9);
  });

  it('refuses an in-flight count that is not a positive integer', () => {
    expect(() => new InflightWindow(0)).toThrow(/positive integer/);
  });
});

describe('bench run', () => {
  it('measures the engine round trip next to raw node:tls over TCP, rates it and writes JSON', async () => {
    const progress: string[] = [];
    const dir = await mkdtemp(path.join(tmpdir(), 'aur-bench-spec-'));
    const json = path.join(dir, 'bench.json');
    const report = await runBench(
      {
        json,
        plan: {
          ...benchPlan(true),
          groups: new Set(['latency']),
          systems: new Set(['raw', 'engine']),
          transports: ['tcp'],
          latencyTiming: { warmupMs: 100, runMs: 300, runs: 1 },
        },
      },
      { stdout: () => undefined, stderr: (t) => progress.push(t) },
    );
    const p50 = report.figures.filter((f) => f.workload === 'rtt-64' && f.metric === 'p50');
    expect(p50.map((f) => f.system)).toEqual(['aurelia engine', 'node:tls']);
    expect(p50[0]!.value).toBeGreaterThan(0);
    expect(p50[0]!.vsCeiling).toBeCloseTo(p50[0]!.value! / p50[1]!.value!);
    expect(report.environment).toMatchObject({ mode: 'quick', node: process.version });
    expect(report.environment.loadAverage).toHaveLength(2);
    expect(progress.join('')).toContain('engine round trip over tcp');
    const written = JSON.parse(await readFile(json, 'utf8')) as typeof report;
    await rm(dir, { recursive: true, force: true });
    expect(written.environment).toMatchObject({
      node: process.version,
      cpu: report.environment.cpu,
      date: report.environment.date,
    });
    expect(written.figures).toHaveLength(report.figures.length);
  });

  it('runs the Nest floor beside Nest over Aurelia and splits the send() cost', async () => {
    const report = await runBench(
      {
        plan: {
          ...benchPlan(true),
          groups: new Set(['rate']),
          systems: new Set(['nest-aurelia', 'nest-floor']),
          transports: ['tcp'],
          inflights: [4],
          payloads: [64],
          rateTiming: { warmupMs: 50, runMs: 60, runs: 1 },
        },
      },
      { stdout: () => undefined, stderr: () => undefined },
    );
    const rates = new Map(
      report.figures.filter((f) => f.workload.endsWith('-64-x4')).map((f) => [f.system, f]),
    );
    for (const system of [
      'aurelia engine call',
      'aurelia Nest send',
      'aurelia Nest emit',
      'Nest floor (in process) send',
      'Nest floor (in process) emit',
    ]) {
      expect(rates.get(system)?.value).toBeGreaterThan(0);
    }
    expect(rates.get('Nest floor (in process) send')?.role).toBe('reference');
    expect(report.nestCost).toHaveLength(1);
    const split = report.nestCost![0]!;
    expect(split.total).toBe(rates.get('aurelia Nest send')!.cpuUsPerOp);
    expect(split.engine + split.nestFloor + split.rest).toBeCloseTo(split.total);
  });
});
