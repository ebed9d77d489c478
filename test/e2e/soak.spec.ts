// `aurelia-mesh soak` in CI: 60 seconds of random faults over a 5-domus mesh and a service of 3
// replicas going through rolling restarts, then the ledger check. The full run is
// `aurelia-mesh soak --duration 10m`.
import { formatSoakReport, parseDuration, runSoak, type SoakReport } from '../../lib/cli/soak.js';
import { ErrorId } from '../../lib/index.js';
import { expectError } from '../support/expect.js';
import { soakProgram as program } from '../support/soak-cli.js';

describe('aurelia-mesh soak, 60 seconds of random faults', () => {
  let report: SoakReport;

  beforeAll(async () => {
    // Half the default rate and a generous lateness allowance: CI machines are small and shared.
    report = await runSoak({ durationMs: 60_000, seed: 20251125, rate: 150, lateSlackMs: 3000 });
    process.stdout.write(formatSoakReport(report));
  }, 120_000);

  it('injects cuts, stalls, partitions, delays, restarts and rolling restarts while traffic flows', () => {
    const faults = Object.values(report.faults).reduce((sum, n) => sum + n, 0);
    expect(faults).toBeGreaterThanOrEqual(15);
    expect(report.messages.sends).toBeGreaterThan(1000);
    expect(report.blobs.sent).toBeGreaterThan(10);
    expect(report.messages.succeeded).toBeGreaterThan(0);
  });

  it('settles every send by its deadline and never delivers a message twice', () => {
    expect(report.messages.lost).toBe(0);
    expect(report.mismatchCount).toBe(0);
    expect(report.messages.delivered).toBeLessThanOrEqual(report.messages.sends);
  });

  it('delivers every blob a receiver read to the end intact', () => {
    expect(report.blobs.corrupted).toBe(0);
    expect(report.blobs.intact).toBeGreaterThan(0);
  });

  it('accounts for every blob: intact, or aborted with the error its sender saw', () => {
    for (const blobs of [report.blobs, report.replicas!.blobs]) {
      const { sent, intact, aborted, abortedBy, unsettled } = blobs;
      expect(unsettled).toBe(0);
      expect(intact + aborted).toBe(sent);
      expect(Object.values(abortedBy).reduce((sum, n) => sum + n, 0)).toBe(aborted);
      for (const reason of Object.keys(abortedBy)) {
        expect(reason).toMatch(/^(send|stream) [A-Z]\w+$/);
      }
    }
    expect(report.replicas!.blobs.sent).toBeGreaterThan(5);
  });

  it('calls replicas through rolling restarts and reports every failed call by kind', () => {
    const replicas = report.replicas!;
    expect(replicas.replicas).toBe(3);
    expect(replicas.rollingRestarts).toBeGreaterThanOrEqual(1);
    expect(replicas.restarts).toBeGreaterThanOrEqual(3);
    expect(replicas.messages.sends).toBeGreaterThan(300);
    const failed = Object.values(replicas.messages.failed).reduce((sum, n) => sum + n, 0);
    expect(replicas.messages.succeeded + failed).toBe(replicas.messages.sends);
    expect(replicas.messages.lost).toBe(0);
    // Graceful drain fails over what a draining replica refused or never took: what is left is a
    // call written to a replica that closed before reading it (OutcomeUnknown), or one the loaded
    // machine could not finish by its deadline. Never a refusal, a closed domus or a restart.
    for (const kind of Object.keys(replicas.messages.failed)) {
      expect(['OutcomeUnknown', 'SendTimeout']).toContain(kind);
    }
  });

  it('reaches every domus from every other once the faults are healed', () => {
    // 20 ordered pairs of the five domus, and the caller to the replicated service.
    expect(report.recovery).toMatchObject({ pairs: 21, reached: 21 });
  });
});

describe('aurelia-mesh soak command', () => {
  it('prints the summary and resolves when the ledgers agree', async () => {
    const { program: cli, out } = program();
    await cli.parseAsync(
      ['soak', '--duration', '2s', '--nodes', '3', '--seed', '1', '--fault-interval', '10m'],
      { from: 'user' },
    );
    const text = out.join('');
    expect(text).toContain('soak: 3 domus');
    expect(text).toContain('faults: cut 0, stall 0, partition 0, delay 0, restart 0, rolling 0');
    expect(text).toContain('replicas: 3 behind one route, 0 rolling restarts');
    expect(text).toContain('recovery: 7/7 pairs reached after healing');
    expect(text).toContain('ledger: consistent');
  }, 30_000);

  it('parses durations in ms, s, m and h, and refuses anything else naming the text', () => {
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('60s')).toBe(60_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('45')).toBe(45_000);
    for (const bad of ['', '0s', '-1m', '10 minutes', 'soon']) {
      expectError(ErrorId.InvalidConfig, () => parseDuration(bad), `"${bad}"`);
    }
  });

  it('refuses a bad option before building anything', async () => {
    const { program: cli, out } = program();
    await expect(
      cli.parseAsync(['soak', '--duration', 'forever'], { from: 'user' }),
    ).rejects.toMatchObject({ code: 'commander.invalidArgument' });
    expect(out.join('')).toContain('duration "forever"');
    const again = program();
    await expect(
      again.program.parseAsync(['soak', '--duration', '2s', '--nodes', '1'], { from: 'user' }),
    ).rejects.toMatchObject({
      kind: ErrorId.InvalidConfig,
      message: 'soak nodes 1 is outside 2..16',
    });
  });
});
