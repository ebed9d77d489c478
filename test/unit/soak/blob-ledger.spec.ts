// The blob ledger of the soak run: every blob ends intact or aborted with the reason its sender
// saw, and each broken rule is caught by a run built to break it.
import { BlobLedger } from '../../../lib/cli/soak/blob-ledger.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';

const SHA = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);

describe('BlobLedger', () => {
  it('classifies every blob as intact or aborted by the stage and error its sender saw', () => {
    const l = new BlobLedger();
    l.sent('ok', 10, SHA);
    l.receiving('ok');
    l.received('ok', 10, SHA);
    l.finished('ok');
    l.sent('refused', 5, SHA);
    l.sendFailed('refused', new AureliaError(ErrorId.SendTimeout, 'no answer'));
    l.sent('cut', 7, SHA);
    l.receiving('cut');
    l.receiveFailed('cut', new AureliaError(ErrorId.PeerRestarted, 'restarted'));
    l.streamFailed('cut', new AureliaError(ErrorId.PeerRestarted, 'restarted'));
    l.sent('late', 3, SHA);
    l.receiving('late');
    l.received('late', 3, SHA);
    l.streamFailed('late', new AureliaError(ErrorId.DomusClosed, 'shut down'));
    expect(l.unsettled).toBe(0);
    expect(l.compare()).toEqual({
      sent: 4,
      intact: 1,
      aborted: 3,
      abortedBy: { 'send SendTimeout': 1, 'stream PeerRestarted': 1, 'stream DomusClosed': 1 },
      abortedButIntact: 1,
      corrupted: 0,
      unsettled: 0,
      mismatches: [],
    });
  });

  it('reports a blob whose sender saw neither an end nor a failure, and one that closed silently', () => {
    const l = new BlobLedger();
    l.sent('pending', 4, SHA);
    l.sent('silent', 4, SHA);
    l.receiving('silent');
    l.closed('silent');
    expect(l.unsettled).toBe(2);
    const report = l.compare();
    expect(report).toMatchObject({ sent: 2, intact: 0, aborted: 0, unsettled: 2 });
    expect(report.mismatches).toEqual([
      'blob pending never ended at its sender (receiver: never handed to an application)',
      'blob silent closed at its sender with neither finish nor an error (receiver: still reading)',
    ]);
  });

  it('reports a blob that finished at its sender but was not read intact, and corrupted bytes', () => {
    const l = new BlobLedger();
    l.sent('lost', 4, SHA);
    l.finished('lost');
    l.sent('bad', 4, SHA);
    l.receiving('bad');
    l.received('bad', 4, OTHER);
    l.finished('bad');
    const report = l.compare();
    expect(report).toMatchObject({ intact: 0, corrupted: 1, unsettled: 0 });
    expect(report.mismatches).toEqual([
      'blob lost finished at its sender but the receiver did not read it intact (receiver: never handed to an application)',
      'blob bad ended cleanly with 4 bytes (sha256 bbbbbbbbbbbb), sent 4 bytes (sha256 aaaaaaaaaaaa)',
    ]);
  });

  it('reports two ends at one sender, two receptions, a failure that is not an AureliaError and a stranger', () => {
    const l = new BlobLedger();
    l.sent('twice', 1, SHA);
    l.receiving('twice');
    l.receiving('twice');
    l.received('twice', 1, SHA);
    l.finished('twice');
    l.streamFailed('twice', new AureliaError(ErrorId.DomusClosed, 'shut down'));
    l.sent('odd', 1, SHA);
    l.sendFailed('odd', new Error('boom'));
    l.receiving('stranger');
    expect(l.compare().mismatches).toEqual([
      'blob stranger reached a receiver but was never sent',
      'blob twice ended 2 times at its sender',
      'blob twice was handed to a receiving application 2 times',
      'blob odd failed at its sender with non-Aurelia error: boom',
    ]);
    expect(() => l.sent('odd', 1, SHA)).toThrow(/recorded twice/);
  });
});
