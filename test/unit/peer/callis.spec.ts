import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { Callis, type CallisHandler, ReadPause } from '../../../lib/engine/peer/callis.js';
import {
  encodeAck,
  encodeKeepalive,
  decodeClose,
  decodeError,
} from '../../../lib/engine/wire/control.js';
import { FrameDecoder } from '../../../lib/engine/wire/decoder.js';
import {
  ControlType,
  encodeFrame,
  type Frame,
  type OutboundFrame,
} from '../../../lib/engine/wire/frame.js';
import { expectElapsedBetween } from '../../support/expect.js';

// A callis over a plain loopback socket pair: the transport is not under test here.
interface Pair {
  local: net.Socket;
  remote: net.Socket;
}

const open: net.Socket[] = [];
const servers: net.Server[] = [];

async function socketPair(): Promise<Pair> {
  const server = net.createServer();
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const local = net.connect(port, '127.0.0.1');
  await once(local, 'connect');
  const [remote] = await accepted;
  open.push(local, remote);
  return { local, remote };
}

afterEach(() => {
  for (const s of open.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

function makeCallis(
  socket: net.Socket,
  keepaliveIntervalMs = 10_000,
  role: 'outbound' | 'inbound' = 'outbound',
  decisionBacklogBytes?: number,
): Callis {
  return new Callis(
    {
      socket,
      identity: 'spiffe://test/peer',
      remoteAddress: 'tls://127.0.0.1:1',
      transport: 'tcp',
    },
    {
      maxPayloadLen: () => 1024 * 1024,
      keepaliveIntervalMs: () => keepaliveIntervalMs,
      decisionBacklogBytes:
        decisionBacklogBytes === undefined ? undefined : () => decisionBacklogBytes,
    },
    role,
  );
}

/** Collects the frames the far end of the pair receives. */
function frameReader(socket: net.Socket): { frames: Frame[]; next(n: number): Promise<Frame[]> } {
  const frames: Frame[] = [];
  let waiter: (() => void) | undefined;
  const decoder = new FrameDecoder({
    maxPayloadLen: 1024 * 1024,
    onFrame: (frame) => {
      frames.push(frame);
      waiter?.();
    },
  });
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  return {
    frames,
    next: (n) =>
      new Promise<Frame[]>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`expected ${n} frames, got ${frames.length}`)),
          3000,
        );
        const check = (): void => {
          if (frames.length >= n) {
            clearTimeout(timer);
            waiter = undefined;
            resolve(frames.slice(0, n));
          }
        };
        waiter = check;
        check();
      }),
  };
}

function message(id: number, payload = Buffer.from(`m${id}`)): OutboundFrame {
  return { flags: 0, msgType: 0x100_0000, peerMsgId: id, srcTaberna: 1n, dstTaberna: 2n, payload };
}

function handler(
  overrides: Partial<CallisHandler> = {},
): CallisHandler & { closed: AureliaError[] } {
  const closed: AureliaError[] = [];
  return {
    closed,
    onFrame: () => {},
    onWritable: () => {},
    onClosed: (_c, reason) => closed.push(reason),
    ...overrides,
  };
}

describe('Callis', () => {
  it('sends everything queued in one event-loop turn in a single write, control frames first', async () => {
    const { local, remote } = await socketPair();
    const reader = frameReader(remote);
    const callis = makeCallis(local);
    let offered = 0;
    callis.setHandler(
      handler({
        onWritable: (_c, batch) => {
          if (offered++ > 0) return;
          batch.add(message(1));
          batch.add(message(2));
        },
      }),
    );
    const writes: number[] = [];
    const write = local.write.bind(local);
    local.write = ((chunk: Buffer, ...rest: never[]) => {
      writes.push(chunk.length);
      return write(chunk, ...rest);
    }) as typeof local.write;
    callis.sendControl(encodeAck([7]));
    callis.sendControl(encodeKeepalive());
    const frames = await reader.next(4);
    expect(frames.map((f) => f.msgType)).toEqual([
      ControlType.Ack,
      ControlType.Keepalive,
      0x100_0000,
      0x100_0000,
    ]);
    expect(frames.slice(2).map((f) => f.peerMsgId)).toEqual([1, 2]);
    expect(writes).toHaveLength(1);
    expect(callis.counters.framesOut).toBe(4);
  });

  it('hands received frames to the handler in stream order and only after a handler is set', async () => {
    const { local, remote } = await socketPair();
    const callis = makeCallis(local);
    const seen: number[] = [];
    const peer = makeCallis(remote);
    peer.setHandler(
      handler({
        onWritable: (_c, batch) => {
          for (let i = 1; i <= 3; i++) batch.add(message(i));
        },
      }),
    );
    peer.scheduleFlush();
    // Frames wait in the socket until the handler exists.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(seen).toEqual([]);
    const got = new Promise<void>((resolve) => {
      callis.setHandler(
        handler({
          onFrame: (_c, frame) => {
            seen.push(frame.peerMsgId);
            if (seen.length === 3) resolve();
          },
        }),
      );
    });
    await got;
    expect(seen).toEqual([1, 2, 3]);
    await Promise.all([callis.close(closedByTest()), peer.close(closedByTest())]);
  });

  it('sends a keepalive after one quiet interval so an idle but healthy link stays up', async () => {
    const { local, remote } = await socketPair();
    const reader = frameReader(remote);
    const callis = makeCallis(local, 40);
    const h = handler();
    callis.setHandler(h);
    const [frame] = await reader.next(1);
    expect(frame!.msgType).toBe(ControlType.Keepalive);
    expect(h.closed).toEqual([]);
    await callis.close(closedByTest());
  });

  it('declares the callis half-open after three keepalive intervals with nothing received', async () => {
    const { local } = await socketPair();
    const callis = makeCallis(local, 30);
    const startedAt = Date.now();
    const closed = new Promise<AureliaError>((resolve) =>
      callis.setHandler(handler({ onClosed: (_c, reason) => resolve(reason) })),
    );
    const reason = await closed;
    expectElapsedBetween(startedAt, 3 * 30, 5000);
    expect(reason.kind).toBe(ErrorId.ConnectionLost);
    expect(reason.message).toMatch(/half-open/);
    expect(local.destroyed).toBe(true);
  });

  it('says why on a graceful close and ends the socket', async () => {
    const { local, remote } = await socketPair();
    const reader = frameReader(remote);
    const callis = makeCallis(local);
    const h = handler();
    callis.setHandler(h);
    const ended = once(remote, 'end');
    await callis.close(new AureliaError(ErrorId.DomusClosed, 'going away'), true);
    const [frame] = await reader.next(1);
    expect(frame!.msgType).toBe(ControlType.Close);
    expect(decodeClose(frame!)).toBe('going away');
    await ended;
    expect(h.closed.map((r) => r.kind)).toEqual([ErrorId.DomusClosed]);
    expect(callis.closed).toBe(true);
  });

  it('answers garbage with an error frame and closes with ProtocolViolation', async () => {
    const { local, remote } = await socketPair();
    const reader = frameReader(remote);
    const callis = makeCallis(local);
    const closed = new Promise<AureliaError>((resolve) =>
      callis.setHandler(handler({ onClosed: (_c, reason) => resolve(reason) })),
    );
    // Type 7 lies in the A1 range but names no control message.
    const frame7 = encodeFrame(message(1));
    frame7.writeUInt32BE(7, 4);
    remote.write(frame7);
    const reason = await closed;
    expect(reason.kind).toBe(ErrorId.ProtocolViolation);
    const [frame] = await reader.next(1);
    expect(frame!.msgType).toBe(ControlType.Error);
    expect(decodeError(frame!).errorId).toBe(ErrorId.ProtocolViolation);
  });

  it('answers a frame of another wire version with UnsupportedVersion', async () => {
    const { local, remote } = await socketPair();
    const reader = frameReader(remote);
    const callis = makeCallis(local);
    const closed = new Promise<AureliaError>((resolve) =>
      callis.setHandler(handler({ onClosed: (_c, reason) => resolve(reason) })),
    );
    remote.write(Buffer.alloc(64, 0xab));
    expect((await closed).kind).toBe(ErrorId.UnsupportedVersion);
    const [frame] = await reader.next(1);
    expect(decodeError(frame!).errorId).toBe(ErrorId.UnsupportedVersion);
  });

  it('reports a peer that hangs up as ConnectionLost exactly once', async () => {
    const { local, remote } = await socketPair();
    const callis = makeCallis(local);
    const h = handler();
    callis.setHandler(h);
    remote.destroy();
    await once(local, 'close');
    expect(h.closed).toHaveLength(1);
    expect(h.closed[0]!.kind).toBe(ErrorId.ConnectionLost);
    expect(h.closed[0]!.message).toContain('spiffe://test/peer');
  });

  it('stops asking for messages while the socket is congested and resumes on drain', async () => {
    const { local, remote } = await socketPair();
    remote.pause();
    const callis = makeCallis(local);
    const big = Buffer.alloc(256 * 1024, 1);
    let offered = 0;
    let id = 0;
    callis.setHandler(
      handler({
        onWritable: (_c, batch, budget) => {
          offered++;
          while (batch.byteLength < budget) batch.add(message(++id, big));
        },
      }),
    );
    callis.scheduleFlush();
    const deadline = Date.now() + 5000;
    while (!callis.congested && Date.now() < deadline) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    expect(callis.congested).toBe(true);
    const offeredWhenBlocked = offered;
    for (let i = 0; i < 5; i++) {
      callis.scheduleFlush();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    expect(offered).toBe(offeredWhenBlocked);
    remote.resume();
    await once(local, 'drain');
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(offered).toBeGreaterThan(offeredWhenBlocked);
    await callis.close(closedByTest());
  });
});

function closedByTest(): AureliaError {
  return new AureliaError(ErrorId.DomusClosed, 'test over');
}

/** Resolves once `condition()` holds, checking once per event-loop turn (at most 3 s). */
function turnsUntil(condition: () => boolean): Promise<void> {
  const end = Date.now() + 3000;
  return new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (condition()) resolve();
      else if (Date.now() > end) reject(new Error('condition not met within 3 s'));
      else setImmediate(check);
    };
    check();
  });
}

describe('Callis read pauses', () => {
  it('parks the frames of the chunk being read when paused, reads nothing more, and hands them over in order on resume', async () => {
    const { local, remote } = await socketPair();
    const callis = makeCallis(local, 10_000, 'inbound');
    const seen: number[] = [];
    callis.setHandler(
      handler({
        onFrame: (c, frame) => {
          seen.push(frame.peerMsgId);
          if (frame.peerMsgId === 2) c.pauseReads(ReadPause.Budget);
        },
      }),
    );
    remote.write(Buffer.concat([1, 2, 3, 4].map((id) => encodeFrame(message(id)))));
    await turnsUntil(() => seen.length >= 2);
    remote.write(Buffer.concat([5, 6, 7, 8].map((id) => encodeFrame(message(id)))));
    // Turns pass while the second write waits in the socket, unread.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([1, 2]);
    expect(callis.readsPaused).toBe(true);
    callis.resumeReads(ReadPause.Budget);
    await turnsUntil(() => seen.length === 8);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(callis.readsPaused).toBe(false);
    callis.close(closedByTest());
  });

  it('stops reading an accepted callis while its unsent answers exceed the decision backlog bound, until the peer reads', async () => {
    const { local, remote } = await socketPair();
    remote.pause();
    const callis = makeCallis(local, 10_000, 'inbound', 64 * 1024);
    callis.setHandler(handler());
    // Answers pile up in a socket whose far end does not read.
    for (let i = 0; i < 400 && !callis.readsPaused; i++) {
      callis.sendControl(message(0, Buffer.alloc(16 * 1024)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(callis.readsPaused).toBe(true);
    remote.resume();
    await turnsUntil(() => !callis.readsPaused);
    callis.close(closedByTest());
  });

  it('suspends the half-open check while paused for the budget, but not while the peer leaves its answers unread', async () => {
    const { local } = await socketPair();
    const budgetPaused = makeCallis(local, 20, 'inbound');
    budgetPaused.setHandler(handler());
    budgetPaused.pauseReads(ReadPause.Budget);
    const other = await socketPair();
    const backlogPaused = makeCallis(other.local, 20, 'inbound');
    const closed = new Promise<AureliaError>((resolve) =>
      backlogPaused.setHandler(handler({ onClosed: (_c, reason) => resolve(reason) })),
    );
    backlogPaused.pauseReads(ReadPause.Backlog);
    // The backlog-paused callis is dropped after three quiet intervals; the other, made first,
    // has been quiet at least as long and is still open.
    expect((await closed).message).toMatch(/half-open/);
    expect(budgetPaused.closed).toBe(false);
    budgetPaused.close(closedByTest());
  });

  it('never pauses a dialed callis for a backlog of its own writes', async () => {
    const { local, remote } = await socketPair();
    remote.pause();
    const callis = makeCallis(local, 10_000, 'outbound', 1024);
    callis.setHandler(handler());
    // More than the kernel's socket buffers on loopback can absorb.
    for (let i = 0; i < 320; i++) callis.sendControl(message(0, Buffer.alloc(64 * 1024)));
    await turnsUntil(() => local.writableLength > 1024);
    expect(callis.readsPaused).toBe(false);
    callis.close(closedByTest());
  });
});
