// Runs the selected suites in one process, collects their figures and describes the machine.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

import { AureliaError, ErrorId } from '../../engine/errors.js';
import { engineSuite } from './engine.suite.js';
import { describeFailure } from './figures.js';
import { BenchFixture } from './fixture.js';
import type { BenchOptions, BenchSuite, SuiteContext } from './plan.js';
import { rawSuite } from './raw.suite.js';
import { replicasSuite } from './replicas.suite.js';
import {
  checkTargets,
  rateFigures,
  renderNestCostSplit,
  renderTargets,
  renderTable,
  splitNestCost,
  reportJson,
  type BenchReport,
  type Figure,
  type RunEnvironment,
} from './report.js';

/** Where a run reports progress and its table. */
export interface BenchOutput {
  /** The results table and summary lines (text includes its line breaks). */
  stdout(text: string): void;
  /** Progress lines (text includes its line breaks). */
  stderr(text: string): void;
}

/**
 * Loads the suites to run. Baselines that need development dependencies (Nest, gRPC,
 * Moleculer) are imported only when selected, so a missing package skips that baseline with a
 * "not available" line instead of breaking the command.
 */
async function loadSuites(
  systems: ReadonlySet<string>,
  groups: ReadonlySet<string>,
  output: BenchOutput,
): Promise<BenchSuite[]> {
  const suites: BenchSuite[] = [];
  if (systems.has('raw')) suites.push(rawSuite);
  if (systems.has('engine') && [...groups].some((g) => g !== 'replicas')) {
    suites.push(engineSuite);
  }
  if (systems.has('engine') && groups.has('replicas')) suites.push(replicasSuite);
  const optional: [string, () => Promise<BenchSuite>][] = [
    ['nest-aurelia', async () => (await import('./nest-aurelia.suite.js')).nestAureliaSuite],
    ['nest-floor', async () => (await import('./nest-floor.suite.js')).nestFloorSuite],
    ['nest-tcp', async () => (await import('./nest-tcp.suite.js')).nestTcpSuite],
    ['grpc', async () => (await import('./grpc.suite.js')).grpcSuite],
    ['moleculer', async () => (await import('./moleculer.suite.js')).moleculerSuite],
  ];
  for (const [system, load] of optional) {
    if (!systems.has(system)) continue;
    try {
      suites.push(await load());
    } catch (err) {
      output.stderr(`${system}: not available (${describeFailure(err)})\n`);
    }
  }
  return suites;
}

/**
 * Runs every selected suite in turn (each closes what it opened), rates the figures and, with
 * `options.json`, writes the report there. Resolves with the report; a suite that fails records
 * the failure as a figure note and the run goes on. Rejects with `AureliaError(InvalidConfig)`
 * when the JSON file cannot be written.
 */
export async function runBench(options: BenchOptions, output: BenchOutput): Promise<BenchReport> {
  const started = performance.now();
  const loadAtStart = os.loadavg()[0]!;
  const figures: Figure[] = [];
  const fixture = await BenchFixture.create();
  try {
    const suites = await loadSuites(options.plan.systems, options.plan.groups, output);
    for (const suite of suites) {
      const ctx: SuiteContext = {
        plan: options.plan,
        fixture,
        progress: (line) =>
          output.stderr(`  [${((performance.now() - started) / 1000).toFixed(1)} s] ${line}\n`),
        record: (figure) => figures.push(figure),
      };
      output.stderr(`${suite.name}\n`);
      const suiteStarted = performance.now();
      try {
        await suite.run(ctx);
        output.stderr(
          `  ${suite.name} done in ${((performance.now() - suiteStarted) / 1000).toFixed(1)} s\n`,
        );
      } catch (err) {
        output.stderr(`  ${suite.name} failed: ${describeFailure(err)}\n`);
        figures.push({
          workload: 'suite',
          title: 'whole suite',
          transport: 'tcp',
          system: suite.name,
          role: 'alternative',
          metric: '',
          unit: '',
          better: 'higher',
          note: `failed: ${describeFailure(err)}`,
        });
      }
    }
  } finally {
    await fixture.cleanup();
  }
  const report: BenchReport = {
    version: 1,
    environment: await environment(
      options.plan.mode,
      (performance.now() - started) / 1000,
      loadAtStart,
    ),
    figures: rateFigures(sortFigures(figures)),
    targets: checkTargets(figures),
    nestCost: splitNestCost(figures),
  };
  if (options.json !== undefined) {
    try {
      await writeFile(options.json, reportJson(report));
    } catch (err) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `cannot write the JSON report to ${options.json}: ${describeFailure(err)}`,
      );
    }
  }
  return report;
}

/** Prints a report: machine line, then the table. */
export function printReport(report: BenchReport, output: BenchOutput): void {
  const env = report.environment;
  output.stdout(
    `aurelia-mesh bench (${env.mode}) — ${env.date}, node ${env.node}, ${env.cpu} × ${env.cores}, ` +
      `${env.platform}${env.gitCommit ? `, commit ${env.gitCommit.slice(0, 12)}${env.gitDirty ? ' (modified)' : ''}` : ''}, ` +
      `${env.durationS.toFixed(1)} s, load ${env.loadAverage.map((l) => l.toFixed(1)).join(' → ')}\n\n`,
  );
  output.stdout(renderTable(report.figures));
  output.stdout(`\nDESIGN.md targets (over TCP):\n${renderTargets(report.targets)}`);
  if (report.nestCost && report.nestCost.length > 0) {
    output.stdout(
      `\nCPU per Nest send() over Aurelia, 64 B over TCP:\n${renderNestCostSplit(report.nestCost)}`,
    );
  }
}

const ROLE_ORDER = { aurelia: 0, ceiling: 1, alternative: 2, reference: 3 } as const;

// Keeps each workload's figures together (in first-recorded order), Aurelia first.
function sortFigures(figures: Figure[]): Figure[] {
  const firstSeen = new Map<string, number>();
  figures.forEach((f, i) => {
    if (!firstSeen.has(f.workload)) firstSeen.set(f.workload, i);
  });
  return figures
    .map((figure, index) => ({ figure, index }))
    .sort(
      (a, b) =>
        firstSeen.get(a.figure.workload)! - firstSeen.get(b.figure.workload)! ||
        a.figure.metric.localeCompare(b.figure.metric) ||
        ROLE_ORDER[a.figure.role] - ROLE_ORDER[b.figure.role] ||
        a.index - b.index,
    )
    .map(({ figure }) => figure);
}

async function environment(
  mode: 'quick' | 'full',
  durationS: number,
  loadAtStart: number,
): Promise<RunEnvironment> {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model.trim() ?? 'unknown cpu',
    cores: cpus.length,
    ...(await gitCommit()),
    mode,
    durationS,
    loadAverage: [loadAtStart, os.loadavg()[0]!],
  };
}

async function gitCommit(): Promise<{ gitCommit?: string; gitDirty?: boolean }> {
  const git = promisify(execFile);
  try {
    const { stdout } = await git('git', ['rev-parse', 'HEAD'], { timeout: 2000 });
    const commit = stdout.trim();
    if (!/^[0-9a-f]{40}$/.test(commit)) return {};
    const status = await git('git', ['status', '--porcelain', '--untracked-files=no'], {
      timeout: 2000,
    });
    return { gitCommit: commit, gitDirty: status.stdout.trim() !== '' };
  } catch {
    // Not a git checkout (an installed package): the run is described without a commit.
    return {};
  }
}
