// The replicas workload in a tiny configuration: sane rows for each replica count, and replica
// processes reaped whether the run succeeds or a replica never comes up.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { benchPlan } from '../../../lib/cli/bench/plan.js';
import {
  ReplicaProcess,
  liveReplicaProcesses,
  type ReplicaStart,
} from '../../../lib/cli/bench/replica-process.js';
import { replicasWorkload } from '../../../lib/cli/bench/replicas.suite.js';
import { runBench } from '../../../lib/cli/bench/runner.js';
import { ErrorId } from '../../../lib/index.js';
import { requireBuild } from '../../support/built.js';
import { countResources, expectNothingLeftSince } from '../../support/resources.js';

requireBuild();

const START: ReplicaStart = { type: 'start', caPem: '', certPem: '', keyPem: '', taberna: '10' };

describe('bench replicas workload', () => {
  it('measures 1 and 2 replicas in child processes: rate, latency, ratios to one replica and shares', async () => {
    const before = countResources();
    const progress: string[] = [];
    const report = await runBench(
      {
        plan: {
          ...benchPlan(true),
          groups: new Set(['replicas']),
          systems: new Set(['engine']),
          replicas: { counts: [1, 2], inflight: 4, timing: { warmupMs: 100, runMs: 150, runs: 2 } },
        },
      },
      { stdout: () => undefined, stderr: (t) => progress.push(t) },
    );
    expect(progress.join('')).not.toContain('failed');
    const rows = (n: number) =>
      new Map(
        report.figures
          .filter((f) => f.workload === replicasWorkload(n, 4).id)
          .map((f) => [f.metric, f]),
      );
    const one = rows(1);
    const two = rows(2);
    expect([...one.keys()].sort()).toEqual([
      'CPU/msg caller',
      'CPU/msg replicas',
      'msg/s',
      'p50',
      'p99',
      'share r1',
    ]);
    expect([...two.keys()].sort()).toEqual([
      'CPU/msg caller',
      'CPU/msg replicas',
      'msg/s',
      'msg/s ÷ 1 replica',
      'p50',
      'p50 ÷ 1 replica',
      'p99',
      'p99 ÷ 1 replica',
      'share r1',
      'share r2',
    ]);
    for (const row of [one, two]) {
      expect(row.get('msg/s')!.value).toBeGreaterThan(0);
      expect(row.get('CPU/msg caller')!.value).toBeGreaterThan(0);
      expect(row.get('CPU/msg replicas')!.value).toBeGreaterThan(0);
      expect(row.get('msg/s')!.cpuUsPerOp).toBeCloseTo(
        row.get('CPU/msg caller')!.value! + row.get('CPU/msg replicas')!.value!,
        9,
      );
      expect(row.get('p50')!.value).toBeGreaterThan(0);
      expect(row.get('p99')!.value).toBeGreaterThanOrEqual(row.get('p50')!.value!);
    }
    expect(one.get('share r1')!.value).toBe(100);
    // Both replicas took calls, and the shares account for every call.
    expect(two.get('share r1')!.value).toBeGreaterThan(0);
    expect(two.get('share r2')!.value).toBeGreaterThan(0);
    expect(two.get('share r1')!.value! + two.get('share r2')!.value!).toBeCloseTo(100, 6);
    expect(two.get('msg/s ÷ 1 replica')!.value).toBeCloseTo(
      two.get('msg/s')!.value! / one.get('msg/s')!.value!,
      9,
    );
    expect(two.get('p99 ÷ 1 replica')!.value).toBeCloseTo(
      two.get('p99')!.value! / one.get('p99')!.value!,
      9,
    );
    expect(liveReplicaProcesses()).toBe(0);
    await expectNothingLeftSince(before);
  }, 60_000);

  it('is selected by --only replicas alone, not by the other groups', async () => {
    const report = await runBench(
      {
        plan: {
          ...benchPlan(true),
          groups: new Set(['connect']),
          systems: new Set(['engine']),
          transports: ['tcp'],
          connectSamples: 1,
        },
      },
      { stdout: () => undefined, stderr: () => undefined },
    );
    expect(report.figures.some((f) => f.workload.startsWith('replicas-'))).toBe(false);
    expect(report.figures.some((f) => f.workload === 'connect')).toBe(true);
  }, 30_000);

  describe('a replica that does not come up', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'aur-replica-spec-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('rejects with PeerUnavailable, naming its stderr, when the replica exits before listening', async () => {
      const script = path.join(dir, 'exits.mjs');
      await writeFile(script, "process.stderr.write('no certificate\\n'); process.exit(3);\n");
      await expect(ReplicaProcess.start(script, 'replica 9', START)).rejects.toMatchObject({
        kind: ErrorId.PeerUnavailable,
        message: expect.stringContaining(
          'replica 9 exited (code 3) before listening; its stderr: no certificate',
        ),
      });
      expect(liveReplicaProcesses()).toBe(0);
    });

    it('kills and reaps a replica that never answers, rejecting with SendTimeout at the bound', async () => {
      const script = path.join(dir, 'silent.mjs');
      // Keeps its IPC channel open and never answers; ignores SIGTERM.
      await writeFile(
        script,
        "process.on('message', () => {}); process.on('SIGTERM', () => {});\n",
      );
      const started = Date.now();
      await expect(
        ReplicaProcess.start(script, 'replica 8', START, {
          startMs: 500,
          answerMs: 500,
          stopMs: 500,
        }),
      ).rejects.toMatchObject({
        kind: ErrorId.SendTimeout,
        message: 'starting replica 8 took over 500 ms',
      });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(liveReplicaProcesses()).toBe(0);
    });
  });
});
