// An authenticated peer trying to exhaust a domus: undecided messages, queued bytes, a full
// taberna's overflow, answers it never reads, blob buffers. Each attack must cost only the
// attacker (its reads pause, or its own messages are refused) while an honest peer's sends to the
// same domus complete promptly.
import { once } from 'node:events';
import {
  AureliaError,
  BlobReceiver,
  ErrorId,
  JsonCodec,
  SendOptions,
  a3MessageType,
  type Domus,
  type DomusMetrics,
  type Taberna,
  type TabernaRequest,
} from '../../lib/index.js';
import type { AuthenticatedConnection } from '../../lib/engine/transport/connection.js';
import { FrameDecoder } from '../../lib/engine/wire/decoder.js';
import {
  ControlType,
  FrameFlags,
  encodeFrames,
  type OutboundFrame,
} from '../../lib/engine/wire/frame.js';
import {
  decodeAck,
  decodeError,
  encodeHello,
  type ErrorPayload,
} from '../../lib/engine/wire/control.js';
import { defaultDomusConfig } from '../../lib/engine/config.js';
import { acceptAll } from '../support/accept.js';
import { TestMesh, eventually, fastConfig } from '../support/mesh.js';
import { Cleanup, dialAs, within } from '../support/transport.js';

interface Note {
  n: number;
  pad?: string;
}
const codec = new JsonCodec<Note>();
const APP_TYPE = a3MessageType(0);
const KiB = 1024;
const MiB = 1024 * KiB;
const DEFAULTS = defaultDomusConfig();

// The victim's per-peer budgets, small so each attack reaches its limit quickly.
const IN_FLIGHT = 64;
const PARALLEL = 2;
const QUEUED_BYTES = MiB;
const OVERFLOW = 8;
const DECISION_BACKLOG = 64 * KiB;
/** An answer frame that crosses the backlog bound, and the acks and frames of one flush. */
const ANSWER_SLACK = 8 * KiB;
const BLOB_WINDOW = { chunkSize: KiB, ackWindow: 4 };
const BLOB_STREAM_BYTES = BLOB_WINDOW.chunkSize * BLOB_WINDOW.ackWindow;
const BLOB_BUFFER = 16 * BLOB_STREAM_BYTES;
const BLOB_PER_PEER = 4 * BLOB_STREAM_BYTES;
/** How long an honest send may take while an attack is under way. */
const PROMPT_MS = 3000;

/** A message frame for taberna `dst` whose JSON payload carries `padBytes` of padding. */
function message(id: number, dst: bigint, padBytes = 0, flags = FrameFlags.None): OutboundFrame {
  const note: Note = padBytes > 0 ? { n: id, pad: 'x'.repeat(padBytes) } : { n: id };
  return {
    flags,
    msgType: APP_TYPE,
    peerMsgId: id,
    srcTaberna: 0n,
    dstTaberna: dst,
    payload: Buffer.from(JSON.stringify(note)),
  };
}

/** Messages `first..first+count-1` for `dst`. */
function messages(first: number, count: number, dst: bigint, padBytes = 0, flags = 0) {
  return Array.from({ length: count }, (_, i) => message(first + i, dst, padBytes, flags));
}

/**
 * An authenticated client that floods the domus with frames and tallies what comes back: the
 * message ids acknowledged and the error frames. It can stop reading its socket altogether.
 */
class FloodingPeer {
  readonly acked = new Set<number>();
  readonly errors: ErrorPayload[] = [];
  private answered = false;
  private readonly decoder = new FrameDecoder({
    maxPayloadLen: MiB,
    onFrame: (frame) => {
      if (frame.msgType === ControlType.HelloResponse) this.answered = true;
      else if (frame.msgType === ControlType.Ack) {
        for (const id of decodeAck(frame)) this.acked.add(id);
      } else if (frame.msgType === ControlType.Error) this.errors.push(decodeError(frame));
    },
  });

  constructor(readonly conn: AuthenticatedConnection) {
    conn.socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
  }

  /** Opens a session with a fresh epoch and waits for the domus's answer. */
  async hello(epoch: bigint): Promise<void> {
    this.write([encodeHello({ sessionEpoch: epoch })]);
    await eventually(() => this.answered, 'the hello-response');
  }

  write(frames: readonly OutboundFrame[]): void {
    this.conn.socket.write(encodeFrames(frames));
  }

  /** Stops reading: whatever the domus answers stays in its buffers and the kernel's. */
  stopReading(): void {
    this.conn.socket.pause();
  }

  errorsOf(kind: ErrorId): ErrorPayload[] {
    return this.errors.filter((e) => e.errorId === kind);
  }
}

let epochCounter = 5000n;

describe('an authenticated peer cannot exhaust a domus', () => {
  let mesh: TestMesh;
  let victim: Domus;
  let honest: Domus;
  let cleanup: Cleanup;
  let nextTaberna = 100n;
  const OPEN = 10n;

  beforeAll(async () => {
    mesh = await TestMesh.create();
    victim = await mesh.add('victim', {
      config: fastConfig((b) =>
        b
          .tabernaAcceptQueueSize(1)
          .maxPayloadLen(256 * KiB)
          .blobWindow(BLOB_WINDOW)
          .blobInboundBufferBytes(BLOB_BUFFER)
          .maxParallelCallisPerPeer(PARALLEL)
          .maxInFlightPerPeer(IN_FLIGHT)
          .maxQueuedBytesPerPeer(QUEUED_BYTES)
          .maxTabernaOverflowPerPeer(OVERFLOW)
          .maxDecisionBacklogBytesPerPeer(DECISION_BACKLOG)
          .maxBlobInboundBytesPerPeer(BLOB_PER_PEER),
      ),
    });
    honest = await mesh.add('honest', { config: fastConfig((b) => b.blobWindow(BLOB_WINDOW)) });
    acceptAll(await victim.taberna(OPEN, codec));
    mesh.route(OPEN, 'victim');
    await honest.send(codec, OPEN, { n: 0 });
  });
  afterAll(() => mesh.close());
  beforeEach(() => {
    cleanup = new Cleanup();
  });
  afterEach(async () => {
    await cleanup.run();
    // What the attacker left in the victim's socket is read and refused before the next test
    // measures anything.
    await eventually(
      () => !victim.reporting.connectedPeers().some((p) => p.identity.endsWith('/mallory')),
      "the attacker's callis to close",
    );
  });

  /** A new taberna on the victim, routed from the honest domus. */
  async function taberna(queueSize?: number): Promise<Taberna<Note>> {
    const id = nextTaberna++;
    const t = await victim.taberna(id, codec, { queueSize });
    mesh.route(id, 'victim');
    cleanup.add(t, (x) => x.close());
    return t;
  }

  async function attacker(): Promise<FloodingPeer> {
    const conn = await dialAs(cleanup, victim.localAddr, await mesh.pki.node('mallory'));
    const peer = new FloodingPeer(conn);
    await peer.hello(++epochCounter);
    return peer;
  }

  /**
   * Waits until the victim stopped reading a callis or, without that defence, read most of the
   * `floodBytes` the attacker sent.
   */
  async function pausedOrRead(before: DomusMetrics, floodBytes: number, what: string) {
    await eventually(
      () => {
        const now = victim.reporting.snapshot();
        return (
          now.peerReadPauses > before.peerReadPauses ||
          now.bytesIn - before.bytesIn >= floodBytes * 0.9
        );
      },
      what,
      10_000,
    );
  }

  /**
   * A taberna whose application takes every request and sits on it, as a slow handler would;
   * the requests are rejected when the test ends.
   */
  async function holdingTaberna(): Promise<{
    hold: Taberna<Note>;
    held: TabernaRequest<Note>[];
  }> {
    const hold = await taberna();
    const held: TabernaRequest<Note>[] = [];
    const taking = (async () => {
      try {
        for await (const request of hold) held.push(request);
      } catch (err) {
        if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
      }
    })();
    cleanup.add(held, async (requests) => {
      for (const request of requests) request.reject('test over');
      hold.close();
      await taking;
    });
    return { hold, held };
  }

  /** An honest send to the victim completes within `PROMPT_MS`; returns how long it took. */
  async function honestSendCompletes(to = OPEN): Promise<number> {
    const started = performance.now();
    await within(honest.send(codec, to, { n: 1 }), PROMPT_MS, 'an honest send during the attack');
    return performance.now() - started;
  }

  it('stops reading a peer that holds maxInFlightPerPeer undecided messages, and reads it again as they are decided or the limit is raised live', async () => {
    const { hold, held } = await holdingTaberna();
    const before = victim.reporting.snapshot();
    const peer = await attacker();
    const flood = messages(1, 5000, hold.id, 200);
    const floodBytes = encodeFrames(flood).length;
    peer.write(flood);
    await pausedOrRead(before, floodBytes, "the victim to stop reading the attacker's callis");
    await eventually(() => held.length >= IN_FLIGHT, 'the attacker to fill its in-flight budget');
    // An honest peer is served at once, and meanwhile the attacker got nothing more in.
    await honestSendCompletes();
    expect(held.length).toBe(IN_FLIGHT);
    const read = victim.reporting.snapshot().bytesIn - before.bytesIn;
    expect(read).toBeLessThan(floodBytes / 4);
    // Deciding frees room: exactly as many new messages are read as were decided.
    for (const request of held.slice(0, 10)) request.accept();
    await eventually(() => held.length === IN_FLIGHT + 10, 'ten more attacker messages');
    await honestSendCompletes();
    expect(held.length).toBe(IN_FLIGHT + 10);
    expect(peer.acked.size).toBe(10);
    // A live raise of the limit lets twenty more in without any decision.
    cleanup.add(victim, (d) => d.config.update({ maxInFlightPerPeer: IN_FLIGHT }));
    victim.config.update({ maxInFlightPerPeer: IN_FLIGHT + 20 });
    await eventually(() => held.length === IN_FLIGHT + 30, 'twenty more after the live raise');
    await honestSendCompletes();
    expect(held.length).toBe(IN_FLIGHT + 30);
  });

  it('counts budgets per session, never per identity: four sessions of one certificate each get their whole budget', async () => {
    const { hold, held } = await holdingTaberna();
    for (let session = 1; session <= 4; session++) {
      const pausesBefore = victim.reporting.snapshot().peerReadPauses;
      const peer = await attacker();
      peer.write(messages(1, IN_FLIGHT + 10, hold.id));
      await eventually(
        () => victim.reporting.snapshot().peerReadPauses > pausesBefore,
        `session ${session} to reach its own budget`,
      );
    }
    await honestSendCompletes();
    // Four whole budgets: more than any count per identity (maxParallelCallisPerPeer × the
    // per-session budget, as it once was) would allow.
    expect(held.length).toBe(4 * IN_FLIGHT);
    expect(held.length).toBeGreaterThan(PARALLEL * IN_FLIGHT);
  });

  it('bounds what all sessions hold at maxInFlightTotal: reconnecting under new session epochs gets one message in per session, and an honest peer is still served', async () => {
    const ceiling = 2 * IN_FLIGHT;
    cleanup.add(victim, (d) => d.config.update({ maxInFlightTotal: DEFAULTS.maxInFlightTotal }));
    victim.config.update({ maxInFlightTotal: ceiling });
    const { hold, held } = await holdingTaberna();
    for (let round = 1; round <= 6; round++) {
      const peer = await attacker();
      peer.write(messages(1, 100, hold.id));
      await eventually(
        () => held.length >= Math.min(round * IN_FLIGHT, ceiling + round - 2),
        `session ${round} to be read up to its share`,
      );
      // Gone, but what it delivered is still undecided in the application's hands.
      peer.conn.socket.destroy();
    }
    await honestSendCompletes();
    // Two sessions' budgets fill the ceiling; each of the four later sessions got one message in.
    expect(held.length).toBe(ceiling + 4);
    // Decisions make room below the ceiling again, for everyone.
    for (const request of held.slice(0, 10)) request.accept();
    await honestSendCompletes();
  });

  it('stops reading a peer whose undecided messages hold maxQueuedBytesPerPeer, so its backlog stays in its own socket', async () => {
    // Nobody takes requests from this taberna: they wait for room, each 200 KiB.
    const stuck = await taberna();
    const before = victim.reporting.snapshot();
    const peer = await attacker();
    const flood = messages(1, 100, stuck.id, 200 * KiB);
    const floodBytes = encodeFrames(flood).length;
    peer.write(flood);
    await pausedOrRead(before, floodBytes, "the victim to stop reading the attacker's callis");
    await honestSendCompletes();
    const after = victim.reporting.snapshot();
    // The budget, one message over it, and one socket read at most; the other ~18 MiB were
    // never read.
    expect(after.bytesIn - before.bytesIn).toBeLessThan(QUEUED_BYTES + 512 * KiB);
    expect(after.messagesReceived - before.messagesReceived).toBeLessThanOrEqual(
      Math.ceil(QUEUED_BYTES / (200 * KiB)) + 1,
    );
    expect(floodBytes).toBeGreaterThan(16 * MiB);
  });

  it('stops reading a peer with its maxTabernaOverflowPerPeer share of a full taberna waiting, so an honest message is next in line', async () => {
    const stuck = await taberna();
    const before = victim.reporting.snapshot();
    const peer = await attacker();
    // One fills the queue, OVERFLOW wait for room; the rest stays unread in the attacker's socket.
    peer.write(messages(1, 50, stuck.id));
    await eventually(() => stuck.backlog >= 1 + OVERFLOW, "the attacker's share to fill");
    const honestSend = honest.send(codec, stuck.id, { n: -1 });
    await eventually(() => stuck.backlog >= 2 + OVERFLOW, 'the honest message to wait in line');
    expect(stuck.backlog).toBe(2 + OVERFLOW);
    expect(victim.reporting.snapshot().peerReadPauses).toBeGreaterThan(before.peerReadPauses);
    // As the application works through the line, the attacker gets one place back at a time,
    // behind the honest message: it is served right after the attacker's share.
    const served: number[] = [];
    while (!served.includes(-1)) {
      const request = await stuck.next(PROMPT_MS);
      served.push(request.message.n);
      request.accept();
    }
    await within(honestSend, PROMPT_MS, 'the honest send to the full taberna');
    expect(served.length).toBe(1 + OVERFLOW + 1);
    expect(peer.errors).toEqual([]);
  });

  it("stops reading a peer that leaves the domus's answers unread, so refusals cannot pile up in the domus", async () => {
    const before = victim.reporting.snapshot();
    const peer = await attacker();
    peer.stopReading();
    // 300 000 empty messages to a taberna that does not exist: each is answered with an error
    // frame about three times its size.
    const flood = messages(1, 300_000, 999_999n);
    const floodBytes = encodeFrames(flood).length;
    peer.write(flood);
    await pausedOrRead(
      before,
      floodBytes,
      'the victim to stop reading the callis whose answers back up',
    );
    // Let whatever the kernel buffers absorb settle: the honest round trips take turns too.
    for (let i = 0; i < 3; i++) await honestSendCompletes();
    const after = victim.reporting.snapshot();
    const written = after.bytesOut - before.bytesOut;
    const read = after.bytesIn - before.bytesIn;
    // Without the bound the domus read all 12.5 MiB and wrote 24.6 MiB of answers into buffers
    // the attacker never drained; with it, about 0.2 MiB and 0.4 MiB (the bound plus what the
    // kernel's socket buffers absorb).
    expect(read).toBeLessThan(floodBytes / 8);
    expect(written).toBeLessThan(2 * MiB);
    // What the domus itself keeps unsent for the attacker: the bound and the frame that crossed
    // it, not the ~2.5× amplification of everything the attacker sent.
    expect(victim.inboundUnsentBytes).toBeLessThan(DECISION_BACKLOG + ANSWER_SLACK);
  });

  it('holds at most maxDecisionBacklogBytesPerPeer of unsent refusals per session when several non-reading sessions flood it', async () => {
    const sessions = 4;
    const peers: FloodingPeer[] = [];
    for (let i = 0; i < sessions; i++) {
      const pausesBefore = victim.reporting.snapshot().peerReadPauses;
      const peer = await attacker();
      peer.stopReading();
      peer.write(messages(1, 100_000, 999_999n));
      await eventually(
        () => victim.reporting.snapshot().peerReadPauses > pausesBefore,
        `session ${i + 1} to be paused on its unread answers`,
      );
      peers.push(peer);
    }
    await honestSendCompletes();
    expect(victim.inboundUnsentBytes).toBeLessThan(sessions * (DECISION_BACKLOG + ANSWER_SLACK));
  });

  it('reserves no blob buffer for blob requests nobody accepted: an honest upload still fits', async () => {
    // Room for every request, but the application never takes one.
    const stuck = await taberna(64);
    const peer = await attacker();
    // Four times what the whole inbound buffer could reserve.
    peer.write(messages(1, 64, stuck.id, 0, FrameFlags.Blob));
    await eventually(() => stuck.backlog === 64, 'the 64 blob requests to be queued');
    expect(peer.errorsOf(ErrorId.BlobBufferFull)).toEqual([]);
    await honestUploadCompletes();
  });

  it('caps the blob buffer one peer holds at maxBlobInboundBytesPerPeer: its extra accepted blobs fail, an honest upload fits', async () => {
    const open = await taberna(64);
    acceptAll(open);
    const peer = await attacker();
    peer.write(messages(1, 64, open.id, 0, FrameFlags.Blob));
    const streams = BLOB_PER_PEER / BLOB_STREAM_BYTES;
    await eventually(
      () => peer.acked.size + peer.errors.length === 64,
      'every blob request to be decided',
    );
    expect(peer.acked.size).toBe(streams);
    expect(peer.errorsOf(ErrorId.BlobBufferFull).length).toBe(64 - streams);
    expect(peer.errorsOf(ErrorId.BlobBufferFull)[0].message).toContain(
      'maxBlobInboundBytesPerPeer',
    );
    await honestUploadCompletes();
  });

  /** The honest domus uploads 64 KiB through a taberna that reads it; it arrives whole. */
  async function honestUploadCompletes(): Promise<void> {
    const upload = await taberna();
    const data = Buffer.alloc(64 * KiB, 7);
    const received = (async () => {
      const request = await upload.next(PROMPT_MS);
      const receiver = request.blobReceiver as BlobReceiver;
      expect(receiver).toBeInstanceOf(BlobReceiver);
      expect(request.accept()).toBe(true);
      const parts: Buffer[] = [];
      for await (const part of receiver) parts.push(part as Buffer);
      return Buffer.concat(parts);
    })();
    const outcome = await within(
      honest.send(codec, upload.id, { n: 1 }, SendOptions.BLOB),
      PROMPT_MS,
      'the honest blob send',
    );
    if (outcome.kind !== 'blob') throw new Error('expected a blob outcome');
    outcome.sender.end(data);
    await within(once(outcome.sender, 'finish'), PROMPT_MS, 'the honest upload to finish');
    expect((await received).equals(data)).toBe(true);
  }
});
