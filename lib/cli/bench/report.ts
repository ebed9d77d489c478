// Benchmark figures, their ratios to the ceiling and the best alternative, and the table and JSON forms.
import { bestOf, ratio, type Better } from './stats.js';

/** The transport a figure was measured over. */
export type BenchTransport = 'tcp' | 'unix';

/**
 * What a figure stands for: an Aurelia measurement, the raw ceiling (node:tls / a plain Unix
 * socket), an alternative a Nest user would otherwise pick, or a reference shown without ratios
 * (the Nest in-process floor: what Nest's own machinery costs with no transport at all).
 */
export type FigureRole = 'aurelia' | 'ceiling' | 'alternative' | 'reference';

/** One measured number (or a workload that could not run, with the reason in `note`). */
export interface Figure {
  /** Comparison key: figures with the same workload and metric are compared with each other. */
  readonly workload: string;
  /** Human-readable workload name, e.g. `round trip 64 B`. */
  readonly title: string;
  readonly transport: BenchTransport;
  /** Who was measured, e.g. `aurelia engine`, `node:tls`, `Nest TCP+TLS`. */
  readonly system: string;
  readonly role: FigureRole;
  /** What was measured, e.g. `p50`, `p99`, `msg/s`, `MiB/s`. */
  readonly metric: string;
  /** Unit of `value`, e.g. `µs`, `msg/s`, `MiB/s`, `ms`, `B`. */
  readonly unit: string;
  readonly better: Better;
  /** The figure; absent when the workload was skipped or failed. */
  readonly value?: number;
  /** The individual runs a median was taken of. */
  readonly runs?: readonly number[];
  /** Rates: process CPU time per message over the measured runs (µs), both ends included. */
  readonly cpuUsPerOp?: number;
  /** Why the figure is missing, or a remark on how it was measured. */
  readonly note?: string;
}

/** A figure with its ratios filled in (Aurelia figures only). */
export interface RatedFigure extends Figure {
  /** `value / ceiling` on the same transport (the TCP ceiling when that transport has none). */
  readonly vsCeiling?: number;
  /** `value / best alternative` (the best value among the alternatives for the same key). */
  readonly vsBestAlternative?: number;
  /** Which alternative was best. */
  readonly bestAlternative?: string;
}

const key = (figure: Figure): string => `${figure.workload}\u0000${figure.metric}`;

/**
 * Adds to every Aurelia figure its ratio to the ceiling (same key, same transport, else TCP) and
 * to the best alternative (same key, any transport). Other figures pass through unchanged.
 */
export function rateFigures(figures: readonly Figure[]): RatedFigure[] {
  const ceilings = new Map<string, Figure>();
  const alternatives = new Map<string, Figure[]>();
  for (const figure of figures) {
    if (figure.value === undefined) continue;
    if (figure.role === 'ceiling') {
      const at = `${key(figure)}\u0000${figure.transport}`;
      if (!ceilings.has(at)) ceilings.set(at, figure);
    } else if (figure.role === 'alternative') {
      const list = alternatives.get(key(figure)) ?? [];
      list.push(figure);
      alternatives.set(key(figure), list);
    }
  }
  return figures.map((figure) => {
    if (figure.role !== 'aurelia' || figure.value === undefined) return figure;
    const ceiling =
      ceilings.get(`${key(figure)}\u0000${figure.transport}`) ??
      ceilings.get(`${key(figure)}\u0000tcp`);
    const alts = alternatives.get(key(figure)) ?? [];
    const bestValue = bestOf(
      alts.map((a) => a.value),
      figure.better,
    );
    const best = alts.find((a) => a.value === bestValue);
    return {
      ...figure,
      vsCeiling: ratio(figure.value, ceiling?.value),
      vsBestAlternative: ratio(figure.value, best?.value),
      bestAlternative: best?.system,
    };
  });
}

/**
 * Formats a figure for a table: three significant digits with a thousands separator for large
 * numbers (`12,300`), `—` when absent.
 */
export function formatValue(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Formats a ratio as `0.42×`; empty when absent. */
export function formatRatio(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '';
  return `${value >= 10 ? value.toFixed(1) : value.toFixed(2)}×`;
}

const NOTE_MAX = 70;

/** `text` cut to `max` characters, ending in `…` when cut. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

const HEADERS = [
  'workload',
  'transport',
  'system',
  'metric',
  'value',
  'CPU/msg',
  'vs ceiling',
  'vs best alt',
];
/** Columns aligned to the right (numbers). */
const RIGHT = new Set([4, 5]);

/**
 * Renders figures as an aligned plain-text table (also valid Markdown): one row per figure, in
 * the given order; skipped figures show `—` and their reason. Rates show their CPU time per
 * message; Aurelia rows carry their ratios.
 */
export function renderTable(figures: readonly RatedFigure[]): string {
  const rows = figures.map((f) => [
    f.title,
    f.transport,
    f.system,
    f.metric,
    f.value === undefined
      ? `— (${clip(f.note ?? 'not measured', NOTE_MAX)})`
      : `${formatValue(f.value)} ${f.unit}`,
    f.cpuUsPerOp === undefined ? '' : `${formatValue(f.cpuUsPerOp)} µs`,
    formatRatio(f.vsCeiling),
    f.vsBestAlternative === undefined
      ? ''
      : `${formatRatio(f.vsBestAlternative)} ${f.bestAlternative ?? ''}`.trim(),
  ]);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (RIGHT.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (RIGHT.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(HEADERS), rule, ...rows.map(line)].join('\n') + '\n';
}

/** One of DESIGN.md's performance targets, checked against the figures of a run. */
export interface TargetCheck {
  /** What is compared, e.g. `engine 64 B msg/s ÷ Nest TCP request rate, 16 in flight`. */
  readonly what: string;
  /** The measured ratio; absent when a figure is missing. */
  readonly ratio?: number;
  /**
   * Rate targets: the same comparison in messages per CPU second (the reference's CPU time per
   * message ÷ Aurelia's), which other processes on the machine disturb far less than the rate.
   */
  readonly cpuRatio?: number;
  /** The bound, e.g. `≥ 3×`. */
  readonly bound: string;
  /** Whether the ratio meets the bound; absent when it could not be computed. */
  readonly met?: boolean;
}

const find = (
  figures: readonly Figure[],
  workload: string,
  metric: string,
  system: string,
): number | undefined =>
  figures.find(
    (f) =>
      f.workload === workload &&
      f.metric === metric &&
      f.system === system &&
      f.transport === 'tcp',
  )?.value;

/**
 * Checks DESIGN.md section 8's targets over TCP: engine accepted 64 B messages/s ≥ 3 × Nest TCP's
 * request rate and Nest-level emit ≥ 2 × Nest TCP's emit (at each in-flight count measured), p50
 * round trip ≤ 1.5 × raw TLS echo, blob throughput ≥ 0.7 × raw TLS copy.
 */
export function checkTargets(figures: readonly Figure[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const check = (
    what: string,
    value: number | undefined,
    bound: number,
    atLeast: boolean,
    cpuRatio?: number,
  ): void => {
    const r = value;
    checks.push({
      what,
      bound: `${atLeast ? '≥' : '≤'} ${bound}×`,
      ...(r === undefined ? {} : { ratio: r, met: atLeast ? r >= bound : r <= bound }),
      ...(cpuRatio === undefined ? {} : { cpuRatio }),
    });
  };
  const cpuOf = (workload: string, system: string): number | undefined =>
    figures.find((f) => f.workload === workload && f.system === system && f.transport === 'tcp')
      ?.cpuUsPerOp;
  const inflights = [
    ...new Set(
      figures
        .filter((f) => f.workload.startsWith('request-64-x'))
        .map((f) => Number(f.workload.slice('request-64-x'.length))),
    ),
  ];
  for (const n of inflights) {
    check(
      `engine 64 B acked msg/s ÷ Nest TCP+TLS send() rate, ${n} in flight`,
      ratio(
        find(figures, `request-64-x${n}`, 'msg/s', 'aurelia engine'),
        find(figures, `request-64-x${n}`, 'msg/s', 'Nest TCP+TLS'),
      ),
      3,
      true,
      ratio(cpuOf(`request-64-x${n}`, 'Nest TCP+TLS'), cpuOf(`request-64-x${n}`, 'aurelia engine')),
    );
    check(
      `Nest emit() over Aurelia ÷ Nest TCP+TLS emit(), 64 B, ${n} in flight`,
      ratio(
        find(figures, `event-64-x${n}`, 'msg/s', 'aurelia Nest emit'),
        find(figures, `event-64-x${n}`, 'msg/s', 'Nest TCP+TLS emit'),
      ),
      2,
      true,
      ratio(
        cpuOf(`event-64-x${n}`, 'Nest TCP+TLS emit'),
        cpuOf(`event-64-x${n}`, 'aurelia Nest emit'),
      ),
    );
  }
  for (const n of inflights.filter((i) => i > 1)) {
    check(
      `Nest send() over Aurelia ÷ Nest TCP+TLS send(), 64 B, ${n} in flight`,
      ratio(
        find(figures, `request-64-x${n}`, 'msg/s', 'aurelia Nest send'),
        find(figures, `request-64-x${n}`, 'msg/s', 'Nest TCP+TLS'),
      ),
      1.5,
      true,
      ratio(
        cpuOf(`request-64-x${n}`, 'Nest TCP+TLS'),
        cpuOf(`request-64-x${n}`, 'aurelia Nest send'),
      ),
    );
  }
  for (const [metric, bound] of [
    ['p50', 1],
    ['p99', 1.5],
  ] as const) {
    check(
      `Nest send() over Aurelia ${metric} round trip ÷ Nest TCP+TLS ${metric}`,
      ratio(
        find(figures, 'rtt-64', metric, 'aurelia Nest send'),
        find(figures, 'rtt-64', metric, 'Nest TCP+TLS'),
      ),
      bound,
      false,
    );
  }
  check(
    'engine p50 round trip ÷ node:tls echo p50',
    ratio(
      find(figures, 'rtt-64', 'p50', 'aurelia engine'),
      find(figures, 'rtt-64', 'p50', 'node:tls'),
    ),
    1.5,
    false,
  );
  check(
    'engine blob MiB/s ÷ node:tls copy, one stream',
    ratio(
      find(figures, 'bulk-1', 'MiB/s', 'aurelia engine'),
      find(figures, 'bulk-1', 'MiB/s', 'node:tls'),
    ),
    0.7,
    true,
  );
  return checks;
}

/**
 * Where the CPU time of one Nest `send()` over Aurelia goes (64 B, TCP, per in-flight count): the
 * engine's own request/reply call, Nest's machinery with no transport (the in-process floor),
 * and the rest, which is what the Nest integration adds.
 */
export interface NestCostSplit {
  readonly inflight: number;
  /** CPU µs per Nest `send()` over Aurelia, both ends. */
  readonly total: number;
  /** CPU µs per engine request/reply call. */
  readonly engine: number;
  /** CPU µs per `send()` through Nest's machinery in process. */
  readonly nestFloor: number;
  /** `total - engine - nestFloor`. */
  readonly rest: number;
}

/** Splits the Nest `send()` CPU cost for each in-flight count where all three were measured. */
export function splitNestCost(figures: readonly Figure[]): NestCostSplit[] {
  const cpu = (workload: string, system: string): number | undefined =>
    figures.find((f) => f.workload === workload && f.system === system && f.transport === 'tcp')
      ?.cpuUsPerOp;
  const splits: NestCostSplit[] = [];
  for (const f of figures) {
    if (f.system !== 'aurelia Nest send' || f.transport !== 'tcp') continue;
    if (!f.workload.startsWith('request-64-x') || f.cpuUsPerOp === undefined) continue;
    const engine = cpu(f.workload, 'aurelia engine call');
    const nestFloor = cpu(f.workload, 'Nest floor (in process) send');
    if (engine === undefined || nestFloor === undefined) continue;
    splits.push({
      inflight: Number(f.workload.slice('request-64-x'.length)),
      total: f.cpuUsPerOp,
      engine,
      nestFloor,
      rest: f.cpuUsPerOp - engine - nestFloor,
    });
  }
  return splits;
}

/** Renders the cost split as lines, one per in-flight count. */
export function renderNestCostSplit(splits: readonly NestCostSplit[]): string {
  return splits
    .map(
      (s) =>
        `- ${s.inflight} in flight: ${formatValue(s.total)} µs = engine call ${formatValue(s.engine)} µs` +
        ` + Nest floor ${formatValue(s.nestFloor)} µs + integration ${formatValue(s.rest)} µs\n`,
    )
    .join('');
}

/** Renders target checks as lines: `met`, `missed` or `not measured`. */
export function renderTargets(checks: readonly TargetCheck[]): string {
  return checks
    .map((c) => {
      const verdict = c.met === undefined ? 'not measured' : c.met ? 'met' : 'missed';
      const cpu = c.cpuRatio === undefined ? '' : `; per CPU second ${formatRatio(c.cpuRatio)}`;
      return `- ${c.what}: ${formatRatio(c.ratio) || '—'} (target ${c.bound}) ${verdict}${cpu}\n`;
    })
    .join('');
}

/** Where and when a run happened, recorded with its figures. */
export interface RunEnvironment {
  readonly date: string;
  readonly node: string;
  readonly platform: string;
  readonly cpu: string;
  readonly cores: number;
  readonly gitCommit?: string;
  /** Whether tracked files differed from `gitCommit` when the report was made. */
  readonly gitDirty?: boolean;
  readonly mode: 'quick' | 'full';
  /** Wall-clock time of the whole run (s). */
  readonly durationS: number;
  /**
   * The machine's one-minute load average when the run started and when it ended: above the
   * core count, other processes competed for the CPU and the figures are noisier.
   */
  readonly loadAverage: readonly [start: number, end: number];
}

/** The machine-readable result of a run: `version` changes when the shape does. */
export interface BenchReport {
  readonly version: 1;
  readonly environment: RunEnvironment;
  readonly figures: readonly RatedFigure[];
  /** DESIGN.md's targets checked against this run's figures. */
  readonly targets: readonly TargetCheck[];
  /** Where a Nest `send()`'s CPU time goes (when the engine call and the floor were measured). */
  readonly nestCost?: readonly NestCostSplit[];
}

/** Serialises a report as indented JSON text with a trailing newline. */
export function reportJson(report: BenchReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
