// The soak command's verdict: a run whose ledgers disagree must make the command fail (exit
// non-zero) after printing what broke; a clean run must not.
import type { Command } from 'commander';

import {
  DeliveryLedger,
  assertSoakPassed,
  type SoakOptions,
  type SoakReport,
} from '../../../lib/cli/soak.js';
import { ErrorId } from '../../../lib/engine/errors.js';
import { soakProgram } from '../../support/soak-cli.js';
import { expectError } from '../../support/expect.js';

/** A report as `runSoak` returns it, its messages judged by a real ledger. */
function reportOf(ledger: DeliveryLedger, extra: readonly string[] = []): SoakReport {
  const messages = ledger.compare();
  return {
    nodes: 3,
    seed: 4242,
    durationMs: 2000,
    faults: { cut: 1, stall: 0, partition: 0, delay: 0, restart: 0, rolling: 0 },
    messages,
    blobs: {
      sent: 0,
      intact: 0,
      aborted: 0,
      abortedBy: {},
      abortedButIntact: 0,
      corrupted: 0,
      unsettled: 0,
    },
    recovery: { pairs: 6, reached: 6, sends: 6, failures: [] },
    mismatches: [...messages.mismatches, ...extra],
    mismatchCount: messages.mismatchCount + extra.length,
    faultsNearMismatches: [],
  };
}

async function ledgerWith(lost: boolean): Promise<DeliveryLedger> {
  const ledger = new DeliveryLedger();
  await ledger.track('0-0', Date.now() + 60_000, Promise.resolve());
  await ledger.track('0-1', Date.now() + 60_000, Promise.resolve());
  ledger.accept('0-0');
  if (!lost) ledger.accept('0-1');
  return ledger;
}

/** The soak command, running `soak` instead of a real mesh and keeping the options it got. */
function command(report: SoakReport): { cli: Command; out: string[]; ran: SoakOptions[] } {
  const ran: SoakOptions[] = [];
  const { program, out } = soakProgram((options) => {
    ran.push(options);
    return Promise.resolve(report);
  });
  return { cli: program, out, ran };
}

describe('the soak verdict', () => {
  it('fails the command with ProtocolViolation naming the count and seed after printing the lost send', async () => {
    const { cli, out, ran } = command(reportOf(await ledgerWith(true)));
    await expect(
      cli.parseAsync(['soak', '--duration', '2s', '--nodes', '3', '--seed', '4242'], {
        from: 'user',
      }),
    ).rejects.toMatchObject({
      kind: ErrorId.ProtocolViolation,
      message: 'soak found 1 broken delivery promises (seed 4242); see the list above',
    });
    expect(ran).toMatchObject([{ durationMs: 2000, nodes: 3, seed: 4242 }]);
    const text = out.join('');
    expect(text).toContain('ledger: 1 mismatches');
    expect(text).toContain('send 0-1 succeeded but the receiver never accepted it');
    expect(text).toContain('1 succeeded but never reached an application (LOST)');
  });

  it('fails on a broken promise outside the ledger, such as a corrupted blob', async () => {
    const report = reportOf(await ledgerWith(false), ['blob 1-7 ended cleanly with 3 bytes']);
    expect(report.messages.mismatchCount).toBe(0);
    const { cli } = command(report);
    await expect(cli.parseAsync(['soak', '-d', '2s'], { from: 'user' })).rejects.toMatchObject({
      kind: ErrorId.ProtocolViolation,
    });
  });

  it('lets the command succeed when every promise held', async () => {
    const report = reportOf(await ledgerWith(false));
    expect(() => assertSoakPassed(report)).not.toThrow();
    const { cli, out } = command(report);
    await cli.parseAsync(['soak', '-d', '2s'], { from: 'user' });
    expect(out.join('')).toContain('ledger: consistent');
  });

  it('throws an AureliaError for any mismatch count above zero', () => {
    const report = { ...reportOf(new DeliveryLedger()), mismatchCount: 3, seed: 9 };
    const caught = expectError(ErrorId.ProtocolViolation, () => assertSoakPassed(report));
    expect(caught.message).toContain('3 broken delivery promises (seed 9)');
  });
});
