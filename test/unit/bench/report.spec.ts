import {
  checkTargets,
  clip,
  formatRatio,
  formatValue,
  rateFigures,
  renderTable,
  renderNestCostSplit,
  renderTargets,
  splitNestCost,
  type Figure,
} from '../../../lib/cli/bench/report.js';

const base = {
  workload: 'request-64-x16',
  title: 'acked msgs 64 B, 16 in flight',
  metric: 'msg/s',
  unit: 'msg/s',
  better: 'higher',
} as const;

const figures: Figure[] = [
  {
    ...base,
    transport: 'tcp',
    system: 'aurelia engine',
    role: 'aurelia',
    value: 60_000,
    cpuUsPerOp: 31.4,
  },
  { ...base, transport: 'unix', system: 'aurelia engine', role: 'aurelia', value: 90_000 },
  { ...base, transport: 'tcp', system: 'node:tls', role: 'ceiling', value: 120_000 },
  { ...base, transport: 'tcp', system: 'Nest TCP+TLS', role: 'alternative', value: 20_000 },
  { ...base, transport: 'tcp', system: 'Moleculer TCP', role: 'alternative', value: 30_000 },
];

describe('benchmark report', () => {
  it('rates each Aurelia figure against the ceiling and the best alternative of the same workload', () => {
    const [tcp, unix, ...others] = rateFigures(figures);
    expect(tcp).toMatchObject({
      vsCeiling: 0.5,
      vsBestAlternative: 2,
      bestAlternative: 'Moleculer TCP',
    });
    // No Unix ceiling was measured: the TCP one stands in.
    expect(unix).toMatchObject({ vsCeiling: 0.75, vsBestAlternative: 3 });
    for (const other of others) expect(other).not.toHaveProperty('vsCeiling');
  });

  it('takes the lowest alternative as the best one for latencies', () => {
    const latency: Figure[] = [
      {
        ...base,
        workload: 'rtt-64',
        metric: 'p50',
        unit: 'µs',
        better: 'lower',
        transport: 'tcp',
        system: 'aurelia engine',
        role: 'aurelia',
        value: 60,
      },
      {
        ...base,
        workload: 'rtt-64',
        metric: 'p50',
        unit: 'µs',
        better: 'lower',
        transport: 'tcp',
        system: 'node:tls',
        role: 'ceiling',
        value: 40,
      },
      {
        ...base,
        workload: 'rtt-64',
        metric: 'p50',
        unit: 'µs',
        better: 'lower',
        transport: 'tcp',
        system: 'A',
        role: 'alternative',
        value: 90,
      },
      {
        ...base,
        workload: 'rtt-64',
        metric: 'p50',
        unit: 'µs',
        better: 'lower',
        transport: 'tcp',
        system: 'B',
        role: 'alternative',
        value: 120,
      },
    ];
    expect(rateFigures(latency)[0]).toMatchObject({ vsCeiling: 1.5, bestAlternative: 'A' });
  });

  it('compares only figures with the same workload and metric', () => {
    const rated = rateFigures([
      figures[0]!,
      { ...figures[2]!, metric: 'other' },
      { ...figures[3]!, workload: 'request-64-x1' },
    ]);
    expect(rated[0]!.vsCeiling).toBeUndefined();
    expect(rated[0]!.vsBestAlternative).toBeUndefined();
  });

  it('formats figures to about three significant digits with thousands separators', () => {
    expect(formatValue(1_234_567.8)).toBe('1,234,568');
    expect(formatValue(123.4)).toBe('123');
    expect(formatValue(12.34)).toBe('12.3');
    expect(formatValue(1.234)).toBe('1.23');
    expect(formatValue(undefined)).toBe('—');
    expect(formatRatio(0.4567)).toBe('0.46×');
    expect(formatRatio(12.34)).toBe('12.3×');
    expect(formatRatio(undefined)).toBe('');
  });

  it('renders a Markdown table with one aligned row per figure and skipped figures with their reason', () => {
    const table = renderTable([
      ...rateFigures(figures),
      {
        ...base,
        workload: 'bulk-1',
        transport: 'tcp',
        system: 'aurelia engine',
        role: 'aurelia',
        note: 'not available: no blobs',
      },
    ]);
    const lines = table.trimEnd().split('\n');
    expect(lines).toHaveLength(2 + figures.length + 1);
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
    expect(lines[0]).toMatch(/^\| workload +\| transport \| system +\| metric \|/);
    expect(lines[0]).toContain('| CPU/msg |');
    expect(lines[2]).toContain('60,000 msg/s');
    expect(lines[2]).toContain('0.50×');
    expect(lines[2]).toContain('2.00× Moleculer TCP');
    expect(lines[2]).toContain('31.4 µs');
    expect(lines.at(-1)).toContain('— (not available: no blobs)');
  });

  it('clips long notes with an ellipsis', () => {
    expect(clip('abcdef', 4)).toBe('abc…');
    expect(clip('abc', 4)).toBe('abc');
  });

  it('checks DESIGN.md targets over TCP and says which were met, missed or not measured', () => {
    const at = (workload: string, metric: string, system: string, value: number): Figure => ({
      workload,
      title: workload,
      metric,
      unit: '',
      better: metric === 'p50' ? 'lower' : 'higher',
      transport: 'tcp',
      system,
      role: 'aurelia',
      value,
    });
    const checks = checkTargets([
      { ...at('request-64-x16', 'msg/s', 'aurelia engine', 90_000), cpuUsPerOp: 10 },
      { ...at('request-64-x16', 'msg/s', 'Nest TCP+TLS', 20_000), cpuUsPerOp: 40 },
      at('event-64-x16', 'msg/s', 'aurelia Nest emit', 30_000),
      at('event-64-x16', 'msg/s', 'Nest TCP+TLS emit', 20_000),
      { ...at('request-64-x16', 'msg/s', 'aurelia Nest send', 24_000), cpuUsPerOp: 32 },
      at('rtt-64', 'p50', 'aurelia engine', 60),
      at('rtt-64', 'p50', 'node:tls', 50),
      at('rtt-64', 'p50', 'aurelia Nest send', 90),
      at('rtt-64', 'p50', 'Nest TCP+TLS', 100),
    ]);
    expect(checks).toEqual([
      expect.objectContaining({ ratio: 4.5, bound: '≥ 3×', met: true, cpuRatio: 4 }),
      expect.objectContaining({ ratio: 1.5, bound: '≥ 2×', met: false }),
      expect.objectContaining({ ratio: 1.2, bound: '≥ 1.5×', met: false, cpuRatio: 1.25 }),
      expect.objectContaining({ what: expect.stringContaining('p50'), ratio: 0.9, met: true }),
      expect.objectContaining({ what: expect.stringContaining('p99'), bound: '≤ 1.5×' }),
      expect.objectContaining({ ratio: 1.2, bound: '≤ 1.5×', met: true }),
      { what: 'engine blob MiB/s ÷ node:tls copy, one stream', bound: '≥ 0.7×' },
    ]);
    const text = renderTargets(checks);
    expect(text).toContain('4.50× (target ≥ 3×) met; per CPU second 4.00×');
    expect(text).toContain('1.50× (target ≥ 2×) missed');
    expect(text).toContain('— (target ≥ 0.7×) not measured');
  });

  it('splits the CPU of a Nest send() into the engine call, the Nest floor and the rest', () => {
    const cpu = (
      system: string,
      cpuUsPerOp: number,
      transport: 'tcp' | 'unix' = 'tcp',
    ): Figure => ({
      workload: 'request-64-x16',
      title: 'acked msgs 64 B, 16 in flight',
      metric: 'msg/s',
      unit: 'msg/s',
      better: 'higher',
      transport,
      system,
      role: 'aurelia',
      value: 1,
      cpuUsPerOp,
    });
    const splits = splitNestCost([
      cpu('aurelia Nest send', 30),
      cpu('aurelia Nest send', 99, 'unix'),
      cpu('aurelia engine call', 12),
      cpu('Nest floor (in process) send', 10),
    ]);
    expect(splits).toEqual([{ inflight: 16, total: 30, engine: 12, nestFloor: 10, rest: 8 }]);
    expect(renderNestCostSplit(splits)).toBe(
      '- 16 in flight: 30.0 µs = engine call 12.0 µs + Nest floor 10.0 µs + integration 8.00 µs\n',
    );
    expect(splitNestCost([cpu('aurelia Nest send', 30)])).toEqual([]);
  });
});
