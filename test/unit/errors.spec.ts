import { inspect } from 'node:util';
import { AureliaError, ErrorId, errorIdName } from '../../lib/index.js';

describe('AureliaError', () => {
  it('keeps the wire numbers of every ErrorId stable', () => {
    const expected: Record<string, number> = {
      UnknownTaberna: 1,
      LocalQueueFull: 2,
      PeerUnavailable: 3,
      RemoteTabernaRejected: 4,
      ConnectionLost: 5,
      PeerRestarted: 6,
      ProtocolViolation: 7,
      UnsupportedVersion: 8,
      EncodeFailure: 9,
      DecodeFailure: 10,
      TabernaBusy: 11,
      SendTimeout: 12,
      BlobCallisWithoutPrimary: 13,
      BlobAckWindowExceeded: 14,
      BlobStreamNotFound: 15,
      BlobStreamOutOfOrder: 16,
      BlobStreamIdleTimeout: 17,
      BlobStreamMissingChunk: 18,
      BlobBufferFull: 19,
      AddressMismatch: 20,
      TabernaAlreadyRegistered: 21,
      InvalidConfig: 22,
      DomusClosed: 23,
      ReceiveTimeout: 24,
      SnapshotNotAvailable: 25,
      TabernaShutdown: 26,
      AddressInUse: 27,
      Draining: 28,
      OutcomeUnknown: 29,
    };
    for (const [name, value] of Object.entries(expected)) {
      expect((ErrorId as unknown as Record<string, number>)[name]).toBe(value);
      expect(errorIdName(value)).toBe(name);
    }
    expect(errorIdName(0)).toBeUndefined();
    expect(errorIdName(30)).toBeUndefined();
  });

  it('is an Error whose kind applications can match on', () => {
    const err = new AureliaError(ErrorId.SendTimeout, 'no decision within 30000 ms');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('AureliaError');
    expect(err.kind).toBe(ErrorId.SendTimeout);
    expect(String(err)).toBe('SendTimeout: no decision within 30000 ms');
    expect(AureliaError.is(err, ErrorId.SendTimeout)).toBe(true);
    expect(AureliaError.is(err, ErrorId.DomusClosed)).toBe(false);
    expect(AureliaError.is(new Error('x'))).toBe(false);
  });

  it('uses the id name as message when none is given', () => {
    expect(new AureliaError(ErrorId.DomusClosed).message).toBe('DomusClosed');
  });

  it('keeps kind by name and the message under JSON.stringify, as in a reporting event', () => {
    const cause = new Error('connect ECONNREFUSED');
    const err = new AureliaError(ErrorId.PeerUnavailable, 'could not reach beta', { cause });
    const event = JSON.parse(JSON.stringify({ type: 'PeerDialFailed', error: err })) as unknown;
    expect(event).toEqual({
      type: 'PeerDialFailed',
      error: {
        name: 'AureliaError',
        kind: 'PeerUnavailable',
        errorId: ErrorId.PeerUnavailable,
        message: 'could not reach beta',
        cause: { name: 'Error', message: 'connect ECONNREFUSED' },
      },
    });
    expect(err.kindName).toBe('PeerUnavailable');
    expect(new AureliaError(99 as ErrorId, 'from a newer peer').kindName).toBe('99');
  });

  it('shows kind by name when inspected, as a start-up failure is printed', () => {
    const err = new AureliaError(ErrorId.InvalidConfig, "AureliaModule option 'listen' is bad", {
      cause: new Error('inner'),
    });
    const shown = inspect(err);
    expect(shown).toMatch(/^AureliaError: AureliaModule option 'listen' is bad\n\s+at /);
    expect(shown).toContain('kind: InvalidConfig (22)');
    expect(shown).toContain('[cause]: Error: inner');
    expect(shown).not.toContain('kind: 22');
    expect(inspect({ nested: new AureliaError(ErrorId.SendTimeout) })).toContain(
      'kind: SendTimeout (12)',
    );
  });
});
