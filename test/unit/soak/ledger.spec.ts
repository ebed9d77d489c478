// The delivery ledger every fault, process and soak test is judged by: each rule must catch the
// run that breaks it, and a clean run must come out clean.
import { DeliveryLedger } from '../../../lib/cli/soak/ledger.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { expectError } from '../../support/expect.js';

const SLACK_MS = 1000;
/** A deadline far enough ahead that no settlement in these tests is late. */
const later = () => Date.now() + 60_000;
const failure = (kind: ErrorId) => new AureliaError(kind, `failed with ${kind}`);

function ledger(): DeliveryLedger {
  return new DeliveryLedger(SLACK_MS);
}

describe('DeliveryLedger', () => {
  it('finds nothing wrong with sends that succeeded once each and failures that were never accepted', async () => {
    const l = ledger();
    await l.track('ok-1', later(), Promise.resolve());
    await l.track('ok-2', later(), Promise.resolve());
    await l.track('timeout', later(), Promise.reject(failure(ErrorId.SendTimeout)));
    await l.track('busy', later(), Promise.reject(failure(ErrorId.TabernaBusy)));
    l.accept('ok-1');
    l.accept('ok-2');
    expect(l.compare()).toEqual({
      sends: 4,
      succeeded: 2,
      failed: { SendTimeout: 1, TabernaBusy: 1 },
      failedButDelivered: 0,
      lost: 0,
      delivered: 2,
      mismatches: [],
      mismatchCount: 0,
    });
    expect(l.outcome('timeout')).toMatchObject({ ok: false, kind: ErrorId.SendTimeout });
  });

  it('allows a failure whose acknowledgement was lost to have been accepted once', async () => {
    const l = ledger();
    for (const kind of [ErrorId.SendTimeout, ErrorId.PeerRestarted, ErrorId.DomusClosed]) {
      await l.track(`k${kind}`, later(), Promise.reject(failure(kind)));
      l.accept(`k${kind}`);
    }
    const report = l.compare();
    expect(report.mismatches).toEqual([]);
    expect(report).toMatchObject({ failedButDelivered: 3, delivered: 3, succeeded: 0 });
  });

  it('reports a send that succeeded although no receiver accepted it as lost', async () => {
    const l = ledger();
    await l.track('m1', later(), Promise.resolve());
    const report = l.compare();
    expect(report.lost).toBe(1);
    expect(report.mismatches).toEqual(['send m1 succeeded but the receiver never accepted it']);
  });

  it('reports a message accepted twice, whether its send succeeded or failed', async () => {
    const l = ledger();
    await l.track('ok', later(), Promise.resolve());
    await l.track('failed', later(), Promise.reject(failure(ErrorId.SendTimeout)));
    for (const key of ['ok', 'ok', 'failed', 'failed', 'failed']) l.accept(key);
    expect(l.acceptedCount('failed')).toBe(3);
    const report = l.compare();
    expect(report.mismatches).toEqual([
      'message ok was accepted 2 times',
      'message failed was accepted 3 times',
    ]);
    expect(report.delivered).toBe(5);
  });

  it('reports a send that settled later than its deadline plus the slack', async () => {
    const l = ledger();
    await l.track('late', Date.now() - SLACK_MS - 500, Promise.resolve());
    // Within the slack: not late.
    await l.track('in-slack', Date.now() - SLACK_MS / 2, Promise.resolve());
    l.accept('late');
    l.accept('in-slack');
    const { mismatches } = l.compare();
    expect(mismatches).toHaveLength(1);
    const late = /^send late settled (\d+) ms after its deadline$/.exec(mismatches[0]!);
    expect(Number(late?.[1])).toBeGreaterThanOrEqual(SLACK_MS + 500);
  });

  it('reports a failure that proves the receiver refused or never saw the message, when it was accepted', async () => {
    const refusals = [
      ErrorId.RemoteTabernaRejected,
      ErrorId.TabernaBusy,
      ErrorId.UnknownTaberna,
      ErrorId.LocalQueueFull,
      ErrorId.EncodeFailure,
      ErrorId.DecodeFailure,
      ErrorId.BlobBufferFull,
      ErrorId.Draining,
    ];
    const l = ledger();
    for (const kind of refusals) {
      await l.track(`r${kind}`, later(), Promise.reject(failure(kind)));
      l.accept(`r${kind}`);
    }
    const report = l.compare();
    expect(report.mismatches).toEqual([
      `send r${ErrorId.RemoteTabernaRejected} failed with RemoteTabernaRejected but the receiver accepted it`,
      `send r${ErrorId.TabernaBusy} failed with TabernaBusy but the receiver accepted it`,
      `send r${ErrorId.UnknownTaberna} failed with UnknownTaberna but the receiver accepted it`,
      `send r${ErrorId.LocalQueueFull} failed with LocalQueueFull but the receiver accepted it`,
      `send r${ErrorId.EncodeFailure} failed with EncodeFailure but the receiver accepted it`,
      `send r${ErrorId.DecodeFailure} failed with DecodeFailure but the receiver accepted it`,
      `send r${ErrorId.BlobBufferFull} failed with BlobBufferFull but the receiver accepted it`,
      `send r${ErrorId.Draining} failed with Draining but the receiver accepted it`,
    ]);
    expect(report.failedButDelivered).toBe(refusals.length);
  });

  it('reports a send that never settled, and counts it among the unsettled', async () => {
    const l = ledger();
    const pending = l.track('hanging', later(), new Promise<never>(() => undefined));
    await l.track('done', later(), Promise.resolve());
    l.accept('done');
    expect(l.unsettled).toBe(1);
    expect(l.outcome('hanging')).toBeUndefined();
    expect(l.compare().mismatches).toEqual(['send hanging never settled']);
    void pending;
  });

  it('reports a send whose recorder was called twice, judging its first outcome', () => {
    const l = ledger();
    const settle = l.open('twice', later());
    settle.succeeded();
    settle.failed(failure(ErrorId.SendTimeout));
    l.accept('twice');
    expect(l.outcome('twice')).toMatchObject({ ok: true });
    const report = l.compare();
    expect(report.mismatches).toEqual(['send twice settled 2 times']);
    expect(report).toMatchObject({ succeeded: 1, failed: {}, lost: 0 });
  });

  it('reports a failure that is not an AureliaError under its own name', async () => {
    const l = ledger();
    await l.track('odd', later(), Promise.reject(new TypeError('boom')));
    await l.track('thrown-string', later(), Promise.reject('just text'));
    const report = l.compare();
    expect(report.failed).toEqual({ 'non-Aurelia error': 2 });
    expect(report.mismatches).toEqual([
      'send odd failed with an error that is not an AureliaError',
      'send thrown-string failed with an error that is not an AureliaError',
    ]);
    expect(l.outcome('odd')).toMatchObject({ ok: false, kind: undefined, reason: 'boom' });
  });

  it('reports a message accepted that was never sent', () => {
    const l = ledger();
    l.accept('ghost');
    const report = l.compare();
    expect(report.mismatches).toEqual(['message ghost was accepted but never sent']);
    expect(report).toMatchObject({ sends: 0, delivered: 1 });
  });

  it('lists at most 50 mismatches and counts the rest', () => {
    const l = ledger();
    for (let n = 0; n < 60; n++) l.accept(`ghost-${n}`);
    const report = l.compare();
    expect(report.mismatchCount).toBe(60);
    expect(report.mismatches).toHaveLength(51);
    expect(report.mismatches[49]).toBe('message ghost-49 was accepted but never sent');
    expect(report.mismatches[50]).toBe('... and 10 more');
  });

  it('refuses a key recorded twice with InvalidConfig naming the key', () => {
    const l = ledger();
    l.open('dup', later());
    const caught = expectError(ErrorId.InvalidConfig, () => l.open('dup', later()));
    expect(caught.message).toBe('ledger key dup was recorded twice');
    expect(() => l.track('dup', later(), Promise.resolve())).toThrow(
      'ledger key dup was recorded twice',
    );
  });
});
