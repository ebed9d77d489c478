// One end of an authenticated connection written frame by frame, for tests that play a member
// who breaks the rules.
import type { AuthenticatedConnection } from '../../lib/engine/transport/connection.js';
import { FrameDecoder } from '../../lib/engine/wire/decoder.js';
import { a3MessageType } from '../../lib/engine/ids.js';
import {
  ControlType,
  FrameFlags,
  encodeFrames,
  type Frame,
  type OutboundFrame,
} from '../../lib/engine/wire/frame.js';
import {
  decodeError,
  decodeHello,
  encodeHello,
  type ErrorPayload,
  type HelloBlobWindow,
} from '../../lib/engine/wire/control.js';
import { EventQueue, closedWithin } from './transport.js';

/**
 * A well-formed A3 message frame (type `a3MessageType(0)`) with id `id` carrying the JSON note
 * `{ n }` to taberna `dstTaberna` (default 10).
 */
export function appMessage(
  id: number,
  n: number,
  flags: number = FrameFlags.None,
  dstTaberna = 10n,
): OutboundFrame {
  return {
    flags,
    msgType: a3MessageType(0),
    peerMsgId: id,
    srcTaberna: 0n,
    dstTaberna,
    payload: Buffer.from(JSON.stringify({ n })),
  };
}

const CLOSED = Symbol('closed');

/**
 * One end of an authenticated connection driven by the test: writes whatever bytes it is told
 * and decodes what the domus answers.
 */
export class HostilePeer {
  /** Frames from the domus, then `CLOSED` once the connection is gone. */
  private readonly frames = new EventQueue<Frame | typeof CLOSED>('a frame from the domus');
  private firstError: ErrorPayload | undefined;
  private readonly decoder = new FrameDecoder({
    maxPayloadLen: 1 << 20,
    onFrame: (frame) => this.frames.push({ ...frame, payload: Buffer.from(frame.payload) }),
  });

  constructor(readonly conn: AuthenticatedConnection) {
    conn.socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch {
        // What the domus sends is not under test here; a garbled answer just ends the decoding.
      }
    });
    conn.socket.once('close', () => this.frames.push(CLOSED));
  }

  write(bytes: Buffer | readonly OutboundFrame[]): void {
    this.conn.socket.write(Buffer.isBuffer(bytes) ? bytes : encodeFrames(bytes));
  }

  /** Sends a hello and resolves with the domus's hello-response. */
  async hello(epoch: bigint, blobWindow?: HelloBlobWindow) {
    this.write([encodeHello({ sessionEpoch: epoch, blobWindow })]);
    const frame = await this.next();
    expect(frame.msgType).toBe(ControlType.HelloResponse);
    return decodeHello(frame);
  }

  /** The next frame that is not a keepalive; rejects when the connection closes first. */
  async next(): Promise<Frame> {
    for (;;) {
      const frame = await this.frames.next();
      if (frame === CLOSED) {
        this.frames.push(CLOSED);
        throw new Error('the domus closed the connection');
      }
      if (frame.msgType !== ControlType.Keepalive) return frame;
    }
  }

  /** The first `error` frame from the domus, skipping other frames; rejects if none came. */
  async error(): Promise<ErrorPayload> {
    while (!this.firstError) {
      const frame = await this.next();
      if (frame.msgType === ControlType.Error) this.firstError = decodeError(frame);
    }
    return this.firstError;
  }

  /** Resolves when the domus has closed the connection. */
  closed(ms = 3000): Promise<void> {
    return closedWithin(this.conn.socket, ms);
  }
}
