import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ErrorId } from '../../../lib/engine/errors.js';
import { BlobReceiveWindow, BlobSendWindow } from '../../../lib/engine/blob/window.js';

describe('BlobSendWindow', () => {
  it('retains chunks until a cumulative ack and refuses to exceed the window', () => {
    const w = new BlobSendWindow(2);
    expect(w.push(Buffer.from('ab'), false)).toBe(0n);
    expect(w.push(Buffer.from('cde'), false)).toBe(1n);
    expect(w.hasRoom).toBe(false);
    expect(() => w.push(Buffer.from('x'), false)).toThrow(
      expect.objectContaining({ kind: ErrorId.BlobAckWindowExceeded }) as unknown as Error,
    );
    expect(w.bufferedBytes).toBe(5);
    w.takeWritable();
    w.takeWritable();
    expect(w.ack(1n)).toBe(2);
    expect(w.bufferedBytes).toBe(3);
    expect(w.hasRoom).toBe(true);
    expect(w.ack(1n)).toBe(0); // stale
  });

  it('accepts an ack for chunks written before a rewind and skips rewriting them', () => {
    const w = new BlobSendWindow(4);
    for (let i = 0; i < 3; i++) w.push(Buffer.from([i]), false);
    while (w.takeWritable());
    w.rewind();
    expect(w.ack(2n)).toBe(2);
    expect(w.takeWritable()?.chunkId).toBe(2n);
    expect(w.takeWritable()).toBeUndefined();
  });

  it('treats an ack of chunks never written as a protocol violation', () => {
    const w = new BlobSendWindow(4);
    w.push(Buffer.from('a'), false);
    w.push(Buffer.from('b'), false);
    w.takeWritable();
    expect(() => w.ack(2n)).toThrow(
      expect.objectContaining({ kind: ErrorId.ProtocolViolation }) as unknown as Error,
    );
  });

  it('offers acknowledged chunk buffers for reuse unless they were written again after a rewind', () => {
    const recycled: string[] = [];
    const w = new BlobSendWindow(4, (data) => recycled.push(data.toString()));
    for (const text of ['a', 'b', 'c']) w.push(Buffer.from(text), false);
    w.takeWritable();
    w.takeWritable();
    w.ack(1n);
    expect(recycled).toEqual(['a']);
    // 'b' was written on the old callis and may still sit in its socket: never reused.
    w.rewind();
    w.takeWritable();
    w.push(Buffer.from('d'), true);
    w.takeWritable();
    w.takeWritable();
    w.ack(4n);
    expect(recycled).toEqual(['a', 'c', 'd']);
  });

  it('writes nothing beyond a window that shrank on a reconnect until acks make room', () => {
    const w = new BlobSendWindow(4);
    for (let i = 0; i < 4; i++) w.push(Buffer.from([i]), false);
    w.takeWritable();
    w.rewind();
    w.ackWindow = 2;
    expect(w.hasRoom).toBe(false);
    expect([w.takeWritable()?.chunkId, w.takeWritable()?.chunkId]).toEqual([0n, 1n]);
    expect(w.takeWritable()).toBeUndefined();
    expect(w.hasWritable).toBe(false);
    w.ack(1n);
    expect(w.hasWritable).toBe(true);
    expect(w.takeWritable()?.chunkId).toBe(2n);
    expect(w.takeWritable()).toBeUndefined();
    expect(w.hasRoom).toBe(false);
    w.ack(3n);
    expect(w.takeWritable()?.chunkId).toBe(3n);
    expect(w.hasRoom).toBe(true);
  });

  it('rewinds to the first unacknowledged chunk after a reconnect', () => {
    const w = new BlobSendWindow(8);
    for (let i = 0; i < 4; i++) w.push(Buffer.from([i]), i === 3);
    while (w.takeWritable());
    w.ack(2n);
    w.rewind();
    expect([w.takeWritable()?.chunkId, w.takeWritable()?.chunkId, w.takeWritable()]).toEqual([
      2n,
      3n,
      undefined,
    ]);
    expect(w.finished).toBe(true);
    expect(w.complete).toBe(false);
    w.ack(4n);
    expect(w.complete).toBe(true);
    expect(() => w.push(Buffer.alloc(1), false)).toThrow(
      expect.objectContaining({ kind: ErrorId.BlobStreamOutOfOrder }) as unknown as Error,
    );
  });
});

describe('BlobReceiveWindow', () => {
  it('accepts chunks in order, drops replays and names gaps and late chunks', () => {
    const r = new BlobReceiveWindow();
    expect(r.receive(0n, false, 4)).toBe('new');
    expect(r.receive(0n, false, 4)).toBe('duplicate');
    expect(() => r.receive(2n, false, 4)).toThrow(
      expect.objectContaining({ kind: ErrorId.BlobStreamMissingChunk }) as unknown as Error,
    );
    expect(r.receive(1n, true, 4)).toBe('new');
    expect(r.ended).toBe(true);
    expect(() => r.receive(2n, false, 4)).toThrow(
      expect.objectContaining({ kind: ErrorId.BlobStreamOutOfOrder }) as unknown as Error,
    );
  });

  it('acknowledges only what the application consumed, cumulatively', () => {
    const r = new BlobReceiveWindow();
    r.receive(0n, false, 4);
    r.receive(1n, false, 4);
    expect(r.takeAck()).toBeUndefined();
    r.consume();
    expect(r.takeAck()).toBe(1n);
    expect(r.takeAck()).toBeUndefined();
    r.consume();
    expect(r.takeAck()).toBe(2n);
  });

  it('repeats its ack after a replayed chunk or a reconnect, even when nothing is new', () => {
    const r = new BlobReceiveWindow();
    r.receive(0n, false, 4);
    r.consume();
    expect(r.takeAck()).toBe(1n);
    expect(r.takeAck()).toBeUndefined();
    expect(r.receive(0n, false, 4)).toBe('duplicate');
    expect(r.takeAck()).toBe(1n);
    r.resendAck();
    expect(r.takeAck()).toBe(1n);
    expect(r.takeAck()).toBeUndefined();
  });

  it('refuses a sender that exceeds the window', () => {
    const r = new BlobReceiveWindow();
    r.receive(0n, false, 2);
    r.receive(1n, false, 2);
    expect(() => r.receive(2n, false, 2)).toThrow(
      expect.objectContaining({ kind: ErrorId.BlobAckWindowExceeded }) as unknown as Error,
    );
  });

  it('checks each chunk against the window of the callis it arrived on, not an earlier one', () => {
    const r = new BlobReceiveWindow();
    r.receive(0n, false, 8);
    r.receive(1n, false, 8);
    // After a reconnect that agreed a window of 2, chunk 2 is beyond it although 8 allowed it.
    expect(() => r.receive(2n, false, 2)).toThrow(
      expect.objectContaining({ kind: ErrorId.BlobAckWindowExceeded }) as unknown as Error,
    );
    r.consume(2);
    expect(r.takeAck()).toBe(2n);
    expect(r.receive(2n, false, 2)).toBe('new');
  });
});

type Step =
  | { op: 'push'; size: number }
  | { op: 'write' }
  | { op: 'deliver' }
  | { op: 'consume' }
  | { op: 'ack' }
  | { op: 'reconnect'; window: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('push' as const), size: fc.nat(16) }) },
  { weight: 4, arbitrary: fc.constant({ op: 'write' as const }) },
  { weight: 4, arbitrary: fc.constant({ op: 'deliver' as const }) },
  { weight: 3, arbitrary: fc.constant({ op: 'consume' as const }) },
  { weight: 3, arbitrary: fc.constant({ op: 'ack' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('reconnect' as const),
      window: fc.integer({ min: 1, max: 6 }),
    }),
  },
);

describe('blob windows together', () => {
  it('deliver every byte exactly once, in order, across reconnects that change the window, within it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(step, { maxLength: 300, size: 'medium' }),
        (window, steps) => {
          // The window agreed on the current callis; each reconnect agrees a new one.
          let agreed = window;
          let largest = window;
          const sender = new BlobSendWindow(window);
          const receiver = new BlobReceiveWindow();
          const sent: number[] = [];
          const received: number[] = [];
          const consumable: Buffer[] = [];
          let wire: { chunkId: bigint; data: Buffer; last: boolean }[] = [];
          let acks: bigint[] = [];
          let counter = 0;
          const finish = (): void => {
            // Drain everything: the stream must complete with the whole payload.
            if (!sender.finished && sender.hasRoom) sender.push(Buffer.alloc(0), true);
          };
          const run = (s: Step): void => {
            switch (s.op) {
              case 'push': {
                if (!sender.hasRoom) return;
                const data = Buffer.from(Array.from({ length: s.size }, () => counter++ % 256));
                sent.push(...data);
                sender.push(data, false);
                return;
              }
              case 'write': {
                const chunk = sender.takeWritable();
                if (chunk) wire.push(chunk);
                return;
              }
              case 'deliver': {
                const chunk = wire.shift();
                if (!chunk) return;
                if (receiver.receive(chunk.chunkId, chunk.last, agreed) === 'new')
                  consumable.push(chunk.data);
                return;
              }
              case 'consume': {
                const data = consumable.shift();
                if (!data) return;
                received.push(...data);
                receiver.consume();
                const ack = receiver.takeAck();
                if (ack !== undefined) acks.push(ack);
                return;
              }
              case 'ack': {
                const ack = acks.shift();
                if (ack !== undefined) sender.ack(ack);
                return;
              }
              case 'reconnect':
                wire = [];
                agreed = s.window;
                largest = Math.max(largest, agreed);
                receiver.resendAck();
                acks = [receiver.takeAck()!];
                sender.ackWindow = agreed;
                sender.rewind();
                return;
            }
          };
          for (const s of steps) {
            run(s);
            // A shrunk window holds back what was retained before, never more than the largest.
            expect(sender.unacknowledged).toBeLessThanOrEqual(largest);
          }
          // Let the stream finish: no more faults, everything flows.
          for (let i = 0; i < 100_000 && !sender.complete; i++) {
            finish();
            for (const op of ['write', 'deliver', 'consume', 'ack'] as const) run({ op } as Step);
          }
          expect(sender.complete).toBe(true);
          expect(receiver.drained).toBe(true);
          expect(received).toEqual(sent);
          expect(sender.bufferedBytes).toBe(0);
        },
      ),
    );
  });
});
