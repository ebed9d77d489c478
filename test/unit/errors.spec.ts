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
    };
    for (const [name, value] of Object.entries(expected)) {
      expect((ErrorId as unknown as Record<string, number>)[name]).toBe(value);
      expect(errorIdName(value)).toBe(name);
    }
    expect(errorIdName(0)).toBeUndefined();
    expect(errorIdName(27)).toBeUndefined();
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
});
