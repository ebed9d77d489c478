// Hostile peers: clients with valid certificates that break the wire protocol, and floods of
// unauthenticated connections. Each attack must close only the attacker's callis, be counted,
// and leave the domus serving honest peers.
import net from 'node:net';
import {
  AureliaError,
  DomusAddr,
  ErrorId,
  JsonCodec,
  SendOptions,
  a3MessageType,
  type Domus,
  type DomusReportingEvent,
  type Taberna,
} from '../../lib/index.js';
import { DOMUS_CONFIG_MAX } from '../../lib/engine/config.js';
import {
  ControlType,
  FrameFlags,
  type Frame,
  type OutboundFrame,
} from '../../lib/engine/wire/frame.js';
import {
  decodeAck,
  decodeHello,
  encodeAck,
  encodeBlobChunk,
  encodeDrain,
  encodeError,
  encodeHello,
  encodeHelloResponse,
  type HelloBlobWindow,
} from '../../lib/engine/wire/control.js';
import { acceptAll } from '../support/accept.js';
import { TestMesh, eventually, fastConfig, firstMatch } from '../support/mesh.js';
import {
  Cleanup,
  closedWithin,
  dialAs,
  rawConnect,
  startListener,
  within,
} from '../support/transport.js';
import { rawHeader } from '../support/wire.js';
import { HostilePeer, appMessage } from '../support/hostile-peer.js';

interface Note {
  n: number;
}
const codec = new JsonCodec<Note>();
const TABERNA = 10n;
const MAX_PAYLOAD = 4096;
const BLOB_WINDOW: HelloBlobWindow = { chunkSize: 1024, ackWindow: 4 };
const APP_TYPE = a3MessageType(0);

/** Blob chunks of 64 bytes, none marked last, for stream `requestMsgId`. */
function chunks(requestMsgId: number, ids: readonly bigint[]): OutboundFrame[] {
  return ids.map((chunkId) =>
    encodeBlobChunk({ requestMsgId, chunkId, last: false, data: Buffer.alloc(64) }),
  );
}

/** Marks the end of what a `HostilePeer` receives. */
let epochCounter = 1000n;
const freshEpoch = () => ++epochCounter;

describe('hostile peers with valid certificates', () => {
  let mesh: TestMesh;
  let victim: Domus;
  let honest: Domus;
  let taberna: Taberna<Note>;
  let cleanup: Cleanup;
  let honestEvents: DomusReportingEvent[];
  /** What the victim's application accepted, in order. */
  let received: Note[];
  let sent = 0;

  beforeAll(async () => {
    mesh = await TestMesh.create();
    victim = await mesh.add('victim', {
      config: fastConfig((b) =>
        b
          .maxPayloadLen(MAX_PAYLOAD)
          .blobWindow(BLOB_WINDOW)
          .tabernaAcceptQueueSize(64)
          .maxParallelCallisPerPeer(4),
      ),
    });
    honest = await mesh.add('honest');
    taberna = await victim.taberna(TABERNA, codec);
    mesh.route(TABERNA, 'victim');
    honestEvents = [];
    honest.reporting.events$.subscribe((e) => honestEvents.push(e));
    // The taberna accepts everything and leaves blob streams unread, so their windows stay full.
    received = acceptAll(taberna);
    await honest.send(codec, TABERNA, { n: sent++ });
  });
  afterAll(() => mesh.close());
  beforeEach(() => {
    cleanup = new Cleanup();
  });
  afterEach(() => cleanup.run());

  async function attacker(): Promise<HostilePeer> {
    const conn = await dialAs(cleanup, victim.localAddr, await mesh.pki.node('mallory'));
    return new HostilePeer(conn);
  }

  /**
   * Runs `attack`, then checks the callis was closed, one protocol violation was counted, and
   * nobody else was affected. With `errorId`, the domus must have said why in an `error` frame
   * before closing.
   */
  async function expectContained(
    attack: (peer: HostilePeer) => Promise<void>,
    errorId?: ErrorId,
  ): Promise<HostilePeer> {
    const before = victim.reporting.snapshot().protocolViolations;
    const disconnectsBefore = honestEvents.filter(
      (e) => e.type === 'PrimaryCallisDisconnected',
    ).length;
    const peer = await attacker();
    await attack(peer);
    await peer.closed();
    if (errorId !== undefined) expect((await peer.error()).errorId).toBe(errorId);
    await eventually(
      () => victim.reporting.snapshot().protocolViolations === before + 1,
      'the protocol violation to be counted',
      3000,
    );
    await within(honest.send(codec, TABERNA, { n: sent++ }), 3000, 'an honest send afterwards');
    expect(honestEvents.filter((e) => e.type === 'PrimaryCallisDisconnected').length).toBe(
      disconnectsBefore,
    );
    return peer;
  }

  /**
   * Opens a session on a new primary callis and a blob stream in it: message 1 carries the BLOB
   * flag and the taberna accepts it (its stream is then never read).
   */
  async function openStream(): Promise<{ epoch: bigint; primary: HostilePeer }> {
    const epoch = freshEpoch();
    const primary = await attacker();
    await primary.hello(epoch);
    primary.write([appMessage(1, 2001, FrameFlags.Blob)]);
    const ack = await primary.next();
    expect(ack.msgType).toBe(ControlType.Ack);
    expect(ack.peerMsgId).toBe(1);
    return { epoch, primary };
  }

  const afterHello: [string, () => Buffer | OutboundFrame[]][] = [
    [
      'an ack whose payload is not a multiple of four bytes',
      () =>
        Buffer.concat([rawHeader({ msgType: ControlType.Ack, payloadLen: 3 }), Buffer.alloc(3)]),
    ],
    [
      'an error frame whose text is not UTF-8',
      () =>
        Buffer.concat([
          rawHeader({ msgType: ControlType.Error, payloadLen: 6 }),
          Buffer.from([0, 0, 0, 7, 0xc3, 0x28]),
        ]),
    ],
    [
      'a message announcing 4 GiB (nothing follows)',
      () => rawHeader({ msgType: APP_TYPE, dstTaberna: TABERNA, payloadLen: 0xffff_ffff }),
    ],
    [
      'a message one byte over the largest maxPayloadLen any domus may set (64 MiB)',
      () =>
        rawHeader({
          msgType: APP_TYPE,
          peerMsgId: 1,
          dstTaberna: TABERNA,
          payloadLen: DOMUS_CONFIG_MAX.maxPayloadLen + 1,
        }),
    ],
    ['an unknown A1 message type', () => rawHeader({ msgType: 7, payloadLen: 0 })],
    [
      'an unknown flag bit',
      () => rawHeader({ msgType: ControlType.Keepalive, flags: 0x8, payloadLen: 0 }),
    ],
    [
      'a keepalive with a payload',
      () => rawHeader({ msgType: ControlType.Keepalive, payloadLen: 1 }),
    ],
    [
      'a flood of hellos on an open session',
      () => Array.from({ length: 50 }, () => encodeHello({ sessionEpoch: freshEpoch() })),
    ],
    ['acks for message ids the domus never sent', () => [encodeAck([1, 2, 3, 0xffff_fff0])]],
    // Only a listener drains, towards its dialers: a dialer cannot make the domus stop serving.
    ['a drain frame on a callis it dialed', () => [encodeDrain()]],
    [
      'a blob chunk on the primary callis',
      () => [encodeBlobChunk({ requestMsgId: 1, chunkId: 0n, last: true, data: Buffer.alloc(8) })],
    ],
  ];

  it('refuses a message over its own maxPayloadLen with EncodeFailure and keeps the callis', async () => {
    // Within the protocol maximum an oversize message is not an attack (the receiver may have
    // just lowered its limit): its bytes are skipped unbuffered and only that message fails.
    const before = victim.reporting.snapshot();
    const peer = await attacker();
    await peer.hello(freshEpoch());
    const oversize = Buffer.alloc(MAX_PAYLOAD + 1, 0x7b);
    peer.write(
      Buffer.concat([
        rawHeader({
          msgType: APP_TYPE,
          peerMsgId: 1,
          dstTaberna: TABERNA,
          payloadLen: oversize.length,
        }),
        oversize,
      ]),
    );
    peer.write([appMessage(2, 3001)]);
    const refusal = await peer.error();
    expect(refusal).toMatchObject({ errorId: ErrorId.EncodeFailure, peerMsgId: 1 });
    expect(refusal.message).toContain(String(MAX_PAYLOAD));
    // The next message on the same callis is delivered and acknowledged.
    let ack = await peer.next();
    while (ack.msgType !== ControlType.Ack) ack = await peer.next();
    expect(decodeAck(ack)).toEqual([2]);
    const after = victim.reporting.snapshot();
    expect(after.protocolViolations).toBe(before.protocolViolations);
    expect(after.messagesReceived).toBe(before.messagesReceived + 1);
  });

  it.each(afterHello)(
    'closes only the callis that sends %s, counts a protocol violation and keeps serving',
    async (_name, bytes) => {
      await expectContained(async (peer) => {
        await peer.hello(freshEpoch());
        peer.write(bytes());
      });
    },
  );

  it('closes a callis whose first frame is not a hello and counts it', async () => {
    await expectContained(async (peer) => {
      peer.write([appMessage(1, 1)]);
    });
  });

  it('answers an unknown wire version with error(UnsupportedVersion), closes only that callis and counts it', async () => {
    const peer = await expectContained(async (p) => {
      await p.hello(freshEpoch());
      p.write(rawHeader({ version: 2, msgType: APP_TYPE, payloadLen: 0 }));
    }, ErrorId.UnsupportedVersion);
    // The reason names the version it could not read.
    expect((await peer.error()).message).toContain('version 2');
  });

  it('delivers the valid messages that came before the violation, exactly once', async () => {
    const from = received.length;
    await expectContained(async (peer) => {
      await peer.hello(freshEpoch());
      peer.write([appMessage(1, 1001), appMessage(2, 1002), appMessage(2, 1002)]);
      const acks = new Set<number>();
      while (acks.size < 2) {
        const frame = await peer.next();
        expect(frame.msgType).toBe(ControlType.Ack);
        acks.add(frame.peerMsgId);
        for (let i = 0; i < frame.payload.length; i += 4) acks.add(frame.payload.readUInt32BE(i));
      }
      expect([...acks].sort()).toEqual([1, 2]);
      peer.write(rawHeader({ msgType: 7, payloadLen: 0 }));
    });
    // The application got each hostile message once (the replay of 2 was not handed over), then
    // the honest send the check made.
    expect(received.slice(from).map((m) => m.n)).toEqual([1001, 1002, sent - 1]);
  });

  it('refuses a blob chunk for a stream the session never opened with BlobStreamNotFound', async () => {
    const epoch = freshEpoch();
    const primary = await attacker();
    await primary.hello(epoch);
    await expectContained(async (blob) => {
      const answer = await blob.hello(epoch, BLOB_WINDOW);
      expect(answer.blobWindow).toEqual(BLOB_WINDOW);
      blob.write(chunks(77, [0n]));
    }, ErrorId.BlobStreamNotFound);
    // The session's primary callis is untouched by its blob callis failing.
    expect(primary.conn.socket.closed).toBe(false);
  });

  it('refuses a blob callis for a session that has no primary callis with BlobCallisWithoutPrimary', async () => {
    await expectContained(async (blob) => {
      blob.write([encodeHello({ sessionEpoch: freshEpoch(), blobWindow: BLOB_WINDOW })]);
    }, ErrorId.BlobCallisWithoutPrimary);
  });

  it('fails a stream whose sender overruns the ack window with BlobAckWindowExceeded and closes only that blob callis', async () => {
    const { epoch, primary } = await openStream();
    await expectContained(async (blob) => {
      await blob.hello(epoch, BLOB_WINDOW);
      // The receiving application reads nothing, so no chunk is acknowledged: chunk 4 is one too many.
      blob.write(chunks(1, [0n, 1n, 2n, 3n, 4n]));
    }, ErrorId.BlobAckWindowExceeded);
    expect(primary.conn.socket.closed).toBe(false);
  });

  it('a stream that exceeds the agreed window → closed with BlobAckWindowExceeded, counted, though within the configured one', async () => {
    const { epoch, primary } = await openStream();
    await expectContained(async (blob) => {
      const proposed = { chunkSize: BLOB_WINDOW.chunkSize, ackWindow: 2 };
      const answer = await blob.hello(epoch, proposed);
      expect(answer.blobWindow).toEqual(proposed);
      // Chunk 2 is beyond the agreed window of 2, though the victim's own window is 4.
      blob.write(chunks(1, [0n, 1n, 2n, 3n]));
    }, ErrorId.BlobAckWindowExceeded);
    expect(primary.conn.socket.closed).toBe(false);
  });

  it('fails a stream whose chunks skip an id with BlobStreamMissingChunk and closes only that blob callis', async () => {
    const { epoch, primary } = await openStream();
    await expectContained(async (blob) => {
      await blob.hello(epoch, BLOB_WINDOW);
      blob.write(chunks(1, [0n, 2n]));
    }, ErrorId.BlobStreamMissingChunk);
    expect(primary.conn.socket.closed).toBe(false);
  });

  it('fails a stream that sends a chunk after its last one with BlobStreamOutOfOrder and closes only that blob callis', async () => {
    const { epoch, primary } = await openStream();
    await expectContained(async (blob) => {
      await blob.hello(epoch, BLOB_WINDOW);
      blob.write([
        encodeBlobChunk({ requestMsgId: 1, chunkId: 0n, last: true, data: Buffer.alloc(64) }),
        ...chunks(1, [1n]),
      ]);
    }, ErrorId.BlobStreamOutOfOrder);
    expect(primary.conn.socket.closed).toBe(false);
  });

  it('admits every session of one identity (limits count per session, not per identity) and keeps serving others', async () => {
    // Twelve sessions of one identity are twelve peers (replicas): each gets its primary callis.
    const peers: HostilePeer[] = [];
    for (let i = 0; i < 12; i++) {
      const peer = await attacker();
      await within(peer.hello(freshEpoch()), 3000, 'a hello-response');
      peers.push(peer);
    }
    await within(honest.send(codec, TABERNA, { n: sent++ }), 3000, 'an honest send');
    for (const p of peers) p.conn.socket.destroy();
    await eventually(
      () => !victim.reporting.connectedPeers().some((p) => p.identity.endsWith('/mallory')),
      'the hostile callis to be released',
    );
    const again = await attacker();
    await again.hello(freshEpoch());
  });
});

describe('a hostile listener answering a domus that dialed it', () => {
  const HONEST_TABERNA = 11n;
  const VICTIM_TABERNA = 12n;
  let cleanup: Cleanup;
  let mesh: TestMesh;
  let victim: Domus;
  let honest: Domus;
  let server: Awaited<ReturnType<typeof startListener>>;
  let disconnects: DomusReportingEvent[];

  /** Messages still flow both ways between the victim and an honest domus, on the same callis. */
  async function expectOthersServed(): Promise<void> {
    await within(victim.send(codec, HONEST_TABERNA, { n: 1 }), 3000, 'a send to the honest domus');
    await within(honest.send(codec, VICTIM_TABERNA, { n: 2 }), 3000, 'a send from it');
    expect(disconnects).toEqual([]);
  }

  beforeEach(async () => {
    cleanup = new Cleanup();
    mesh = await TestMesh.create();
    victim = await mesh.add('victim');
    honest = await mesh.add('honest');
    acceptAll(await honest.taberna(HONEST_TABERNA, codec));
    acceptAll(await victim.taberna(VICTIM_TABERNA, codec));
    mesh.route(HONEST_TABERNA, 'honest');
    mesh.route(VICTIM_TABERNA, 'victim');
    disconnects = [];
    for (const domus of [victim, honest]) {
      domus.reporting.events$.subscribe((e) => {
        // Only callis between the victim and the honest domus matter here.
        if (e.type === 'PrimaryCallisDisconnected' && !e.identity.endsWith('/mallory')) {
          disconnects.push(e);
        }
      });
    }
    await expectOthersServed();
    server = await startListener(
      cleanup,
      DomusAddr.tcp('127.0.0.1', 0),
      await mesh.pki.node('mallory'),
    );
    mesh.resolver.insert(TABERNA, server.addr);
  });
  afterEach(async () => {
    await cleanup.run();
    await mesh.close();
  });

  /**
   * Runs `attack` while a send from the victim to the hostile listener is pending, then checks
   * that `violations` were counted, that others are still served, and that the pending send
   * ends (at the latest with the victim's shutdown) with an AureliaError.
   */
  async function duringPendingSend(violations: number, attack: () => Promise<void>): Promise<void> {
    const pending = victim.send(codec, TABERNA, { n: 1 }).catch((err: unknown) => err);
    await attack();
    await eventually(
      () => victim.reporting.snapshot().protocolViolations === violations,
      `${violations} protocol violations to be counted`,
    );
    await expectOthersServed();
    await victim.shutdown();
    expect(AureliaError.is(await pending)).toBe(true);
  }

  /** Answers the victim's primary callis and returns it with the first message it sent. */
  async function answerPrimary(): Promise<{ peer: HostilePeer; message: Frame }> {
    const peer = new HostilePeer(await server.connections.next());
    const hello = await peer.next();
    expect(hello.msgType).toBe(ControlType.Hello);
    peer.write([encodeHelloResponse({ sessionEpoch: 42n })]);
    return { peer, message: await peer.next() };
  }

  it('closes the callis on acks for ids it never sent, counts a protocol violation and keeps serving others', async () => {
    await duringPendingSend(1, async () => {
      const { peer, message } = await answerPrimary();
      expect(message.peerMsgId).toBe(1);
      peer.write([encodeAck([999])]);
      await peer.closed();
    });
  });

  it("takes a listener's drain frame as about the sends to that listener only: no violation, everyone else served", async () => {
    await duringPendingSend(0, async () => {
      const draining = firstMatch(
        victim.reporting.events$,
        (e) => e.type === 'PeerDraining',
        'the victim to hear the listener drain',
      );
      const { peer } = await answerPrimary();
      peer.write([encodeDrain()]);
      expect(await draining).toMatchObject({ identity: 'spiffe://aurelia.local/mallory' });
      // Its callis stays up, and the victim still serves its own callers (checked next).
      expect(peer.conn.socket.closed).toBe(false);
      // Gone without deciding: the pending send ends at the victim's shutdown, not its deadline.
      peer.conn.socket.destroy();
    });
  });

  it('counts a hello answered in an unknown wire version as a protocol violation and keeps serving others', async () => {
    await duringPendingSend(1, async () => {
      const peer = new HostilePeer(await server.connections.next());
      expect((await peer.next()).msgType).toBe(ControlType.Hello);
      peer.write(rawHeader({ version: 9, msgType: ControlType.HelloResponse, payloadLen: 0 }));
      await peer.closed();
    });
  });

  it('does not count the listener reporting a problem with the callis as the listener breaking the protocol', async () => {
    await duringPendingSend(0, async () => {
      const { peer } = await answerPrimary();
      peer.write([
        encodeError({
          errorId: ErrorId.ProtocolViolation,
          message: 'your frames look wrong',
          peerMsgId: 0,
        }),
      ]);
      await peer.closed();
      // The victim redials (the send is still pending): by then it has handled the close.
      const redial = new HostilePeer(await server.connections.next());
      expect((await redial.next()).msgType).toBe(ControlType.Hello);
    });
  });

  it('closes a blob callis whose hello-response agrees on a larger window than proposed, counts it and keeps serving others', async () => {
    const errors: AureliaError[] = [];
    victim.reporting.errors$.subscribe((e) => errors.push(e));
    const sending = victim.send(codec, TABERNA, { n: 1 }, SendOptions.BLOB);
    const { peer: primary, message } = await answerPrimary();
    expect(message.flags & FrameFlags.Blob).toBe(FrameFlags.Blob);
    primary.write([encodeAck([message.peerMsgId])]);
    const outcome = await within(sending, 3000, 'the blob send to resolve');
    expect(outcome.kind).toBe('blob');

    const blob = new HostilePeer(await server.connections.next());
    const proposed = decodeHello(await blob.next()).blobWindow!;
    expect(proposed).toBeDefined();
    blob.write([
      encodeHelloResponse({
        sessionEpoch: 42n,
        blobWindow: { chunkSize: proposed.chunkSize, ackWindow: proposed.ackWindow + 1 },
      }),
    ]);
    await blob.closed();
    await eventually(
      () => victim.reporting.snapshot().protocolViolations === 1,
      'the protocol violation to be counted',
    );
    const refusal = errors.find((e) => e.kind === ErrorId.ProtocolViolation);
    expect(refusal?.message).toContain(`not a window within the proposed`);
    // The primary callis to the hostile listener is not what failed.
    expect(primary.conn.socket.closed).toBe(false);
    await expectOthersServed();
  });
});

describe('unauthenticated floods', () => {
  it('a slowloris flood beyond the handshake limits does not stop authenticated peers', async () => {
    const cleanup = new Cleanup();
    const mesh = await TestMesh.create();
    let drip: NodeJS.Timeout | undefined;
    try {
      const victim = await mesh.add('victim', {
        config: fastConfig((b) =>
          b
            .inboundHandshakeLimitTotal(16)
            .inboundHandshakeLimitPerPeer(4)
            .tcpHandshakeTimeoutMs(1500),
        ),
      });
      const connected = await mesh.add('connected');
      const accepted = new Map<number, number>();
      const taberna = await victim.taberna(TABERNA, codec);
      void (async () => {
        try {
          for await (const r of taberna) {
            accepted.set(r.message.n, (accepted.get(r.message.n) ?? 0) + 1);
            r.accept();
          }
        } catch (err) {
          if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
        }
      })();
      mesh.route(TABERNA, 'victim');
      await connected.send(codec, TABERNA, { n: 0 });

      // 40 sockets from another loopback source, each dripping one byte of a TLS record at a time.
      const addr = victim.localAddr;
      const flood: net.Socket[] = [];
      for (let i = 0; i < 40; i++) flood.push(await rawConnect(cleanup, addr, '127.0.0.2'));
      const record = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
      let step = 0;
      drip = setInterval(() => {
        const byte = record.subarray(step % record.length, (step % record.length) + 1);
        step++;
        for (const s of flood) if (!s.destroyed) s.write(byte);
      }, 50);
      await eventually(
        () => victim.reporting.snapshot().handshakesRefused >= 30,
        'the flood beyond the limits to be refused',
      );

      // A peer already connected keeps its callis, and a new one from another source gets in.
      const newcomer = await mesh.add('newcomer');
      const sends = [];
      for (let n = 1; n <= 20; n++) {
        sends.push(connected.send(codec, TABERNA, { n }));
        sends.push(newcomer.send(codec, TABERNA, { n: 100 + n }));
      }
      await within(Promise.all(sends), 4000, 'sends during the flood');
      expect(accepted.size).toBe(41);
      for (const count of accepted.values()) expect(count).toBe(1);
      // The dripping sockets are dropped at their handshake deadline.
      await Promise.all(flood.map((s) => closedWithin(s, 4000)));
    } finally {
      if (drip) clearInterval(drip);
      await cleanup.run();
      await mesh.close();
    }
  });
});
