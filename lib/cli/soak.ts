// The `soak` command: a mesh under random faults for a while, then a ledger check of every send.
import { InvalidArgumentError, type Command } from 'commander';

import { AureliaError, ErrorId } from '../engine/errors.js';
import type { CliIo } from './main.js';
import { formatSoakReport, type SoakReport } from './soak/report.js';
import { runSoak, type SoakOptions } from './soak/run.js';

export { runSoak, type SoakOptions } from './soak/run.js';
export {
  formatSoakReport,
  type FaultKind,
  type SoakBlobReport,
  type SoakRecoveryReport,
  type SoakReport,
} from './soak/report.js';
export { BlobLedger, type BlobLedgerReport } from './soak/blob-ledger.js';
export {
  DeliveryLedger,
  type LedgerOutcome,
  type LedgerReport,
  type SettlementRecorder,
} from './soak/ledger.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration such as `10m`, `60s`, `1500ms`, `1h` or `1.5m` (a bare number is seconds)
 * into milliseconds. Throws `AureliaError(InvalidConfig)` naming the text when it is not a
 * positive duration in one of those units.
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  const ms = match ? Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 's']!) : NaN;
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `duration "${text}" is not a positive number followed by ms, s, m or h (e.g. 10m)`,
    );
  }
  return ms;
}

function integerOption(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
      throw new InvalidArgumentError(`${name} must be a non-negative integer, got "${value}"`);
    }
    return n;
  };
}

function durationOption(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
  }
}

function slackOption(value: string): number {
  return value.trim() === '0' ? 0 : durationOption(value);
}

interface SoakCommandOptions {
  readonly duration: number;
  readonly nodes: number;
  readonly replicas: number;
  readonly seed?: number;
  readonly rate: number;
  readonly blobEvery: number;
  readonly faultInterval: number;
  readonly lateSlack: number;
}

/**
 * The verdict of a soak run: throws `AureliaError(ProtocolViolation)` naming how many promises
 * were broken and the seed that reproduces the run when `report` has any mismatch (so the command
 * exits non-zero); returns when the ledgers agreed.
 */
export function assertSoakPassed(report: SoakReport): void {
  if (report.mismatchCount > 0) {
    throw new AureliaError(
      ErrorId.ProtocolViolation,
      `soak found ${report.mismatchCount} broken delivery promises (seed ${report.seed}); see the list above`,
    );
  }
}

/**
 * Adds `soak [--duration 10m] [--nodes 5] [--replicas 3] [--seed n] [--rate n] [--blob-every n]
 * [--fault-interval 1.5s] [--late-slack 1s]` to `program`. The action runs `runSoak`, prints progress every ten
 * seconds and the summary to `io.stdout`, and rejects with `AureliaError(ProtocolViolation)`
 * listing the broken promises when the ledgers disagree (so the command exits non-zero), or
 * with `AureliaError(InvalidConfig)` for an option out of range. `soak` runs the mesh (`runSoak`
 * unless given, e.g. to check the verdict on a prepared report).
 */
export function registerSoakCommand(
  program: Command,
  io: CliIo,
  soak: (options: SoakOptions) => Promise<SoakReport> = runSoak,
): Command {
  return program
    .command('soak')
    .summary('run a mesh under random faults and check that no send was lost or duplicated')
    .description(
      'Build a mesh of domus in this process, each behind a fault proxy, and send random ' +
        'messages and blobs between them while links are cut, stalled, partitioned and delayed ' +
        'and domus are restarted; a caller also sends to replicas of a service behind one route ' +
        'while they go through rolling restarts. At the end every link is healed, every send ' +
        'must have settled exactly once by its deadline, every success must have been accepted ' +
        'by its receiver exactly once, nothing may be accepted twice, every blob must have ' +
        'arrived intact or failed with an error its sender saw, and every domus must reach ' +
        'every other. The summary lists the calls the rolling restarts failed, by kind. Exits ' +
        'non-zero on any mismatch.',
    )
    .option(
      '-d, --duration <time>',
      'how long to inject faults (e.g. 60s, 10m)',
      durationOption,
      600_000,
    )
    .option('-n, --nodes <n>', 'domus in the mesh (2-16)', integerOption('nodes'), 5)
    .option(
      '--replicas <n>',
      'replicas of a service behind one route, restarted in rolling restarts (0-8; 0: none)',
      integerOption('replicas'),
      3,
    )
    .option(
      '--seed <n>',
      'seed of the fault and traffic schedule (default random)',
      integerOption('seed'),
    )
    .option('--rate <n>', 'messages per second across the mesh', integerOption('rate'), 300)
    .option(
      '--blob-every <n>',
      'one send in n opens a blob stream',
      integerOption('blob-every'),
      25,
    )
    .option(
      '--fault-interval <time>',
      'mean time between two faults (e.g. 1500ms)',
      durationOption,
      1500,
    )
    .option(
      '--late-slack <time>',
      'how late past its deadline a send may settle on a loaded machine (e.g. 1s)',
      slackOption,
      1000,
    )
    .addHelpText(
      'after',
      [
        '',
        'Examples:',
        '  $ aurelia-mesh soak --duration 10m',
        '  $ aurelia-mesh soak -d 60s --seed 42',
      ].join('\n'),
    )
    .action(async (options: SoakCommandOptions) => {
      const report = await soak({
        durationMs: options.duration,
        nodes: options.nodes,
        replicas: options.replicas,
        seed: options.seed,
        rate: options.rate,
        blobEvery: options.blobEvery,
        faultIntervalMs: options.faultInterval,
        lateSlackMs: options.lateSlack,
        progress: (line) => io.stdout(`${line}\n`),
      });
      io.stdout(formatSoakReport(report));
      assertSoakPassed(report);
    });
}
