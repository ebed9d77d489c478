import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import {
  AureliaError,
  BlobReceiver,
  BlobSender,
  ErrorId,
  JsonCodec,
  SendOptions,
  type Domus,
  type DomusReportingEvent,
  type SendOutcome,
  type Taberna,
} from '../../lib/index.js';
import { acceptAll } from '../support/accept.js';
import { FaultProxy, type ProxiedTraffic } from '../support/proxy.js';
import { rejection } from '../support/expect.js';
import {
  TestMesh,
  eventually,
  fastConfig,
  firstMatch,
  type TestTransport,
} from '../support/mesh.js';
import { within } from '../support/transport.js';
import { countResources, expectNothingLeftSince } from '../support/resources.js';

interface FileNote {
  name: string;
}
const codec = new JsonCodec<FileNote>();
const CHUNK = 16 * 1024;
const MiB = 1024 * 1024;
const TRANSPORTS: TestTransport[] = ['tcp', 'socket'];

/** How long a domus shutting down with a stream open waits for it (its drain) before failing it. */
const DRAIN_MS = 300;

function blobConfig(patch: Parameters<typeof fastConfig>[0] = (b) => b) {
  return fastConfig((b) =>
    patch(b.blobWindow({ chunkSize: CHUNK, ackWindow: 8 }).drainTimeoutMs(DRAIN_MS)),
  );
}

function senderOf(outcome: SendOutcome): BlobSender {
  if (outcome.kind !== 'blob') throw new Error('expected a blob outcome');
  return outcome.sender;
}

/** Reads a whole stream into one buffer. */
async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** Resolves with the error `stream` fails with, or undefined when it ends cleanly. */
function failureOf(stream: Readable): Promise<Error | undefined> {
  return collect(stream).then(
    () => undefined,
    (err: unknown) => err as Error,
  );
}

/** Accepts the next request and returns its blob receiver. */
async function acceptBlob(taberna: Taberna<FileNote>): Promise<BlobReceiver> {
  const request = await taberna.next(5000);
  const receiver = request.blobReceiver;
  if (!(receiver instanceof BlobReceiver)) throw new Error('request carries no blob receiver');
  request.accept();
  return receiver;
}

/** Opens a blob stream from `from` to taberna `to` and returns both ends. */
async function openBlob(
  from: Domus,
  taberna: Taberna<FileNote>,
  name = 'data.bin',
  to = 10n,
): Promise<{ sender: BlobSender; receiver: BlobReceiver }> {
  const sending = from.send(codec, to, { name }, SendOptions.BLOB);
  const receiver = await acceptBlob(taberna);
  return { sender: senderOf(await sending), receiver };
}

async function transfer(
  alpha: Domus,
  taberna: Taberna<FileNote>,
  data: Buffer,
  writeSize = 64 * 1024,
): Promise<Buffer> {
  const { sender, receiver } = await openBlob(alpha, taberna);
  const received = collect(receiver);
  const pieces = [];
  for (let i = 0; i < data.length; i += writeSize) pieces.push(data.subarray(i, i + writeSize));
  await pipeline(Readable.from(pieces), sender);
  return received;
}

/** A deterministic pseudo-random byte stream of `total` bytes, hashed as it is produced. */
function patternSource(total: number, hash: ReturnType<typeof createHash>): Readable {
  const block = randomBytes(MiB);
  let left = total;
  let counter = 0;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const part = Buffer.from(block.subarray(0, Math.min(block.length, left)));
      part.writeUInt32BE(counter++, 0); // every mebibyte differs
      left -= part.length;
      hash.update(part);
      this.push(part);
    },
  });
}

/** A writable that hashes what it is given. */
function hashSink(hash: ReturnType<typeof createHash>): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback();
    },
  });
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe.each(TRANSPORTS)('blobs over %s', (transport) => {
  let mesh: TestMesh;
  let alpha: Domus;
  let beta: Domus;
  let taberna: Taberna<FileNote>;

  beforeEach(async () => {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { transport, config: blobConfig() });
    beta = await mesh.add('beta', { transport, config: blobConfig() });
    taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
  });
  afterEach(() => mesh.close());

  it.each([
    ['empty', 0],
    ['one byte', 1],
    ['one chunk less one byte', CHUNK - 1],
    ['exactly one chunk', CHUNK],
    ['one chunk and one byte', CHUNK + 1],
  ])('delivers a blob of %s byte for byte', async (_name, size) => {
    const data = randomBytes(size);
    const received = await transfer(alpha, taberna, data);
    expect(received.length).toBe(size);
    expect(received.equals(data)).toBe(true);
  });

  it('streams 64 MiB in order with a matching SHA-256 and counts the bytes', async () => {
    const data = randomBytes(64 * MiB);
    const received = await transfer(alpha, taberna, data, MiB);
    expect(sha256(received)).toBe(sha256(data));
    expect(alpha.reporting.snapshot().blobBytesOut).toBeGreaterThanOrEqual(data.length);
    expect(beta.reporting.snapshot().blobBytesIn).toBeGreaterThanOrEqual(data.length);
    expect(alpha.reporting.connectedPeers()[0]).toMatchObject({ primaryCallis: 1, blobCallis: 1 });
  });

  it('delivers what was written even when the writer reuses its buffer after each callback', async () => {
    const { sender, receiver } = await openBlob(alpha, taberna, 'reuse.bin');
    const received = collect(receiver);
    // One buffer, refilled once the stream released it: 1.5 chunks per write, so chunks span
    // writes and the stream keeps running long enough to reuse its own chunk buffers.
    const scratch = Buffer.alloc(CHUNK + CHUNK / 2);
    const expected = createHash('sha256');
    for (let round = 0; round < 200; round++) {
      scratch.fill(round % 251);
      scratch.writeUInt32BE(round, 0);
      expected.update(scratch);
      await new Promise<void>((resolve, reject) =>
        sender.write(scratch, (err) => (err ? reject(err) : resolve())),
      );
    }
    sender.end();
    const data = await received;
    expect(data.length).toBe(200 * scratch.length);
    expect(sha256(data)).toBe(expected.digest('hex'));
  });

  it('serves 16 concurrent streams to one peer, each intact', async () => {
    const blobs = Array.from({ length: 16 }, () => randomBytes(256 * 1024 + 77));
    const sends = blobs.map((_, i) => alpha.send(codec, 10n, { name: `f${i}` }, SendOptions.BLOB));
    const received = new Map<string, Promise<Buffer>>();
    for (let i = 0; i < blobs.length; i++) {
      const request = await taberna.next(5000);
      received.set(request.message.name, collect(request.blobReceiver as BlobReceiver));
      request.accept();
    }
    await Promise.all(
      sends.map(async (send, i) => {
        const sender = senderOf(await send);
        await pipeline(Readable.from([blobs[i]!]), sender);
      }),
    );
    for (let i = 0; i < blobs.length; i++) {
      // Buffer.equals: Jest's deep equality walks buffers byte by byte.
      expect((await received.get(`f${i}`))!.equals(blobs[i]!)).toBe(true);
    }
  });

  it('pipes a blob receiver through stream.pipeline into a hashing writable', async () => {
    const data = randomBytes(8 * MiB + 5);
    const { sender, receiver } = await openBlob(alpha, taberna);
    const hash = createHash('sha256');
    await Promise.all([
      pipeline(Readable.from([data.subarray(0, 3 * MiB), data.subarray(3 * MiB)]), sender),
      pipeline(receiver, hashSink(hash)),
    ]);
    expect(hash.digest('hex')).toBe(sha256(data));
  });

  it('fails the sender when the pipeline a blob receiver feeds fails', async () => {
    const { sender, receiver } = await openBlob(alpha, taberna);
    const senderFailed = once(sender, 'error').then(([err]) => err as Error);
    let taken = 0;
    const disk = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        taken += chunk.length;
        callback(taken > MiB ? new Error('disk full') : null);
      },
    });
    const writing = pipeline(patternSource(64 * MiB, createHash('sha256')), sender).catch(
      (err: unknown) => err,
    );
    await expect(pipeline(receiver, disk)).rejects.toThrow('disk full');
    const err = await within(senderFailed, 5000, 'the sender to fail');
    expect(AureliaError.is(err)).toBe(true);
    expect(err.message).toContain('disk full');
    expect(await writing).toBe(err);
  });
});

describe.each([
  ['tcp', 1024],
  ['socket', 256],
] as const)('large blobs over %s', (transport, mib) => {
  let mesh: TestMesh;
  let proxy: FaultProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await mesh.close();
  });

  it(`streams ${mib} MiB with a matching SHA-256, and message round trips complete while it is still streaming`, async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', { transport });
    const beta = await mesh.add('beta', { transport });
    const files = await beta.taberna(10n, codec);
    acceptAll(await beta.taberna(11n, codec));
    mesh.route(10n, 'beta');
    mesh.route(11n, 'beta');
    const total = mib * MiB;
    const sentHash = createHash('sha256');
    const receivedHash = createHash('sha256');
    const { sender, receiver } = await openBlob(alpha, files, 'big.bin');
    let received = 0;
    let blobDone = false;
    const reading = (async () => {
      for await (const part of receiver) {
        received += (part as Buffer).length;
        receivedHash.update(part as Buffer);
      }
      blobDone = true;
    })();
    const writing = pipeline(patternSource(total, sentHash), sender);
    await eventually(() => received > total / 16, 'the blob to be under way', 20_000);
    for (let n = 0; n < 20; n++) await alpha.send(codec, 11n, { name: `ping ${n}` });
    expect(blobDone).toBe(false);
    await writing;
    await reading;
    expect(received).toBe(total);
    expect(receivedHash.digest('hex')).toBe(sentHash.digest('hex'));
  }, 120_000);

  it('carries blob bytes on the blob callis only: the primary callis carries kilobytes during a 64 MiB blob', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', { transport });
    const beta = await mesh.add('beta', { transport });
    const files = await beta.taberna(10n, codec);
    acceptAll(await beta.taberna(11n, codec));
    proxy = await mesh.proxy('beta', 10n, 11n);
    // The primary callis is the first connection: a message opens it before any blob.
    await alpha.send(codec, 11n, { name: 'hello' });
    expect(proxy.traffic).toHaveLength(1);
    const total = 64 * MiB;
    const { sender, receiver } = await openBlob(alpha, files, 'big.bin');
    const sentHash = createHash('sha256');
    const receivedHash = createHash('sha256');
    const reading = pipeline(receiver, hashSink(receivedHash));
    const writing = pipeline(patternSource(total, sentHash), sender);
    for (let n = 0; n < 10; n++) await alpha.send(codec, 11n, { name: `ping ${n}` });
    await Promise.all([writing, reading]);
    expect(receivedHash.digest('hex')).toBe(sentHash.digest('hex'));
    expect(proxy.traffic).toHaveLength(2);
    const [primary, blob] = proxy.traffic as [ProxiedTraffic, ProxiedTraffic];
    expect(blob.bytesUp).toBeGreaterThanOrEqual(total);
    // Handshake, 12 messages, their acks and the blob request: nothing near one chunk of data.
    expect(primary.bytesUp + primary.bytesDown).toBeLessThan(64 * 1024);
    expect(primary.bytesUp).toBeGreaterThan(0);
  }, 60_000);
});

describe('blob fairness', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('interleaves streams: of four started one after another, the later ones are mostly through when the first finishes', async () => {
    mesh = await TestMesh.create();
    // The default window (256 KiB × 16) holds more than one write's budget: a callis serving
    // one stream at a time could fill every write with the first stream's chunks.
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    const taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
    const size = 32 * MiB;
    const received = [0, 0, 0, 0];
    const done: Promise<void>[] = [];
    let atFirstDone: number[] | undefined;
    for (let i = 0; i < 4; i++) {
      const { sender, receiver } = await openBlob(alpha, taberna, `s${i}`);
      done.push(
        (async () => {
          for await (const part of receiver) received[i] += (part as Buffer).length;
          if (i === 0) atFirstDone = [...received];
        })(),
      );
      done.push(pipeline(patternSource(size, createHash('sha256')), sender));
      if (i === 0) await eventually(() => received[0]! >= 2 * MiB, 'the first stream to start');
    }
    await Promise.all(done);
    expect(received).toEqual([size, size, size, size]);
    // Shared fairly, each later stream got about as many bytes as the first after it started.
    for (const later of atFirstDone!.slice(1)) expect(later).toBeGreaterThan(size / 2);
  }, 60_000);
});

/** A `gc()` to call before reading memory figures, when the runtime lets us have one. */
function collector(): (() => void) | undefined {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

describe.each(TRANSPORTS)('blob flow control and failures over %s', (transport) => {
  let mesh: TestMesh;
  let alpha: Domus;
  let beta: Domus;
  let taberna: Taberna<FileNote>;
  let proxy: FaultProxy | undefined;

  async function setup(alphaConfig = blobConfig(), betaConfig = blobConfig()): Promise<void> {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { transport, config: alphaConfig });
    beta = await mesh.add('beta', { transport, config: betaConfig });
    taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
  }

  /** Routes taberna 10 through a proxy in front of beta. */
  async function throughProxy(): Promise<FaultProxy> {
    proxy = await mesh.proxy('beta', 10n);
    return proxy;
  }

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await mesh.close();
  });

  it('holds the sender to one window while the receiver reads nothing, with memory flat as 256 MiB then flows', async () => {
    const window = { chunkSize: 256 * 1024, ackWindow: 8 };
    const windowBytes = window.chunkSize * window.ackWindow;
    const config = fastConfig((b) => b.blobWindow(window));
    await setup(config, config);
    acceptAll(await beta.taberna(11n, codec));
    mesh.route(11n, 'beta');
    const gc = collector();
    // Buffers in use: with a collector, after two full collections a turn apart (freed backing
    // stores are released off the main thread), so garbage not yet swept is not counted.
    const memory = async (): Promise<number> => {
      if (gc) {
        gc();
        await new Promise(setImmediate);
        gc();
      }
      return process.memoryUsage().arrayBuffers;
    };
    const { sender, receiver } = await openBlob(alpha, taberna, 'flat.bin');
    const total = 256 * MiB;
    const sentHash = createHash('sha256');
    const scratch = randomBytes(MiB);
    let offered = 0;
    let refused = 0;
    // The writer offers 1 MiB at a time, reusing one buffer once the stream took it, and waits
    // for 'drain' whenever write() says the stream is full.
    const writing = (async () => {
      for (let n = 0; offered < total; n++) {
        scratch.writeUInt32BE(n, 0);
        sentHash.update(scratch);
        offered += scratch.length;
        let taken!: Promise<void>;
        const accepted = new Promise<boolean>((resolve, reject) => {
          taken = new Promise<void>((done) => {
            resolve(sender.write(scratch, (err) => (err ? reject(err) : done())));
          });
        });
        if (!(await accepted)) {
          refused++;
          await Promise.all([taken, once(sender, 'drain')]);
        } else await taken;
      }
      sender.end();
      await once(sender, 'finish');
    })();

    // The receiver reads nothing: the window fills, every chunk of it arrives, the writer stops.
    await eventually(
      () => sender.unacknowledgedBytes === windowBytes && receiver.bufferedBytes === windowBytes,
      'the window to fill and arrive',
    );
    const heldAt = offered;
    const baseline = await memory();
    // Message round trips between the same domus let both ends run for many event-loop turns.
    for (let n = 0; n < 5; n++) await alpha.send(codec, 11n, { name: `ping ${n}` });
    expect(offered).toBe(heldAt);
    expect(offered).toBeLessThanOrEqual(windowBytes + 2 * MiB);
    expect(refused).toBeGreaterThan(0);
    expect(sender.unacknowledgedBytes).toBe(windowBytes);
    expect(receiver.bufferedBytes).toBe(windowBytes);

    // Now read everything, checking bounds and memory every 32 MiB.
    const receivedHash = createHash('sha256');
    let received = 0;
    let nextCheck = 32 * MiB;
    let peak = 0;
    for await (const part of receiver) {
      receivedHash.update(part as Buffer);
      received += (part as Buffer).length;
      if (received >= nextCheck) {
        nextCheck += 32 * MiB;
        expect(sender.unacknowledgedBytes).toBeLessThanOrEqual(windowBytes);
        expect(receiver.bufferedBytes).toBeLessThanOrEqual(
          windowBytes + receiver.readableHighWaterMark + window.chunkSize,
        );
        peak = Math.max(peak, (await memory()) - baseline);
      }
    }
    await writing;
    expect(received).toBe(total);
    expect(receivedHash.digest('hex')).toBe(sentHash.digest('hex'));
    // Buffers in use do not grow with the bytes offered: windows, socket buffers and the sender's
    // chunk pool stay far below the blob's size (tighter with a collector).
    expect(peak).toBeLessThan(gc ? total / 4 : total / 2);
  }, 60_000);

  it('refuses a blob whose stream cannot be buffered on the sender with BlobBufferFull', async () => {
    await setup(
      blobConfig((b) => b.blobOutboundBufferBytes(8 * CHUNK)),
      blobConfig(),
    );
    const first = alpha.send(codec, 10n, { name: 'one' }, SendOptions.BLOB);
    const second = await rejection(alpha.send(codec, 10n, { name: 'two' }, SendOptions.BLOB));
    expect(second.kind).toBe(ErrorId.BlobBufferFull);
    expect(second.message).toContain('blobOutboundBufferBytes');
    const receiver = await acceptBlob(taberna);
    const sender = senderOf(await first);
    const done = collect(receiver);
    sender.end(Buffer.from('x'));
    expect((await done).toString()).toBe('x');
    // The reservation is released once the stream ends: another blob fits again.
    await once(sender, 'close');
    const third = await openBlob(alpha, taberna, 'three');
    third.sender.destroy();
  });

  it('refuses a blob the receiver cannot buffer with BlobBufferFull when its application accepts it: accept() returns false', async () => {
    await setup(
      blobConfig(),
      blobConfig((b) => b.blobInboundBufferBytes(8 * CHUNK)),
    );
    const first = await openBlob(alpha, taberna, 'one');
    const sending = alpha.send(codec, 10n, { name: 'two' }, SendOptions.BLOB);
    // The buffer is reserved on accept, not on arrival: the application sees the request, and
    // its accept is turned into the refusal.
    const request = await taberna.next(5000);
    expect(request.message.name).toBe('two');
    expect(request.accept()).toBe(false);
    expect((request.blobReceiver as BlobReceiver).failure?.kind).toBe(ErrorId.BlobBufferFull);
    const second = await rejection(sending);
    expect(second.kind).toBe(ErrorId.BlobBufferFull);
    expect(second.message).toContain('blobInboundBufferBytes');
    const done = collect(first.receiver);
    first.sender.end(Buffer.from('x'));
    expect((await done).toString()).toBe('x');
    // The receiver's reservation went with the first stream: the next blob fits again.
    const third = await openBlob(alpha, taberna, 'three');
    third.sender.destroy();
  });

  it('rejects the blob send when the receiving application rejects the request', async () => {
    await setup();
    const sending = alpha.send(codec, 10n, { name: 'virus.exe' }, SendOptions.BLOB);
    (await taberna.next(5000)).reject('file type not allowed');
    const err = await rejection(sending);
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toBe('file type not allowed');
  });

  it('fails the sender when the receiver aborts, and the receiver when the sender aborts', async () => {
    await setup();
    const a = await openBlob(alpha, taberna, 'a');
    const senderFailed = once(a.sender, 'error').then(([err]) => err as Error);
    a.receiver.on('error', () => undefined);
    a.sender.write(Buffer.alloc(100));
    a.receiver.destroy(new Error('disk full'));
    const err = await senderFailed;
    expect(AureliaError.is(err)).toBe(true);
    expect(err.message).toContain('disk full');

    const b = await openBlob(alpha, taberna, 'b');
    const receiverFailed = failureOf(b.receiver);
    b.sender.on('error', () => undefined);
    b.sender.write(Buffer.alloc(100));
    await eventually(() => beta.reporting.snapshot().blobBytesIn >= 100, 'data to arrive');
    b.sender.destroy(new Error('source vanished'));
    const failure = await receiverFailed;
    expect(failure).toBeInstanceOf(Error);
    expect(failure!.message).toContain('source vanished');
  });

  it('resumes byte-exact after the connection is cut mid-stream', async () => {
    await setup();
    const cutter = await throughProxy();
    const data = randomBytes(8 * MiB);
    const { sender, receiver } = await openBlob(alpha, taberna, 'big');
    let seen = 0;
    let cuts = 0;
    receiver.on('data', (part: Buffer) => {
      seen += part.length;
      if ((seen > 2 * MiB && cuts === 0) || (seen > 5 * MiB && cuts === 1)) {
        cuts++;
        cutter.cut();
      }
    });
    const received = collect(receiver);
    await pipeline(Readable.from([data.subarray(0, 4 * MiB), data.subarray(4 * MiB)]), sender);
    expect(cuts).toBe(2);
    expect((await received).equals(data)).toBe(true);
  });

  it('fails open streams with PeerRestarted when the receiving domus restarts', async () => {
    await setup();
    const cutter = await throughProxy();
    const { sender } = await openBlob(alpha, taberna, 'x');
    const failed = once(sender, 'error').then(([err]) => err as Error);
    sender.write(Buffer.alloc(10));
    const reborn = await mesh.add('beta-2', {
      transport,
      config: blobConfig(),
      certificate: 'beta',
    });
    await reborn.taberna(10n, codec);
    cutter.retarget(reborn.localAddr);
    cutter.cut();
    // A message makes the primary callis reconnect and learn the new session.
    void alpha.send(codec, 10n, { name: 'ping' }).catch(() => undefined);
    const err = await within(failed, 5000, 'the sender to fail');
    expect(AureliaError.is(err, ErrorId.PeerRestarted)).toBe(true);
  });

  it('fails the receiver with PeerRestarted when the sending domus restarts', async () => {
    await setup();
    acceptAll(await beta.taberna(11n, codec));
    mesh.route(11n, 'beta');
    const cutter = await throughProxy();
    const { sender, receiver } = await openBlob(alpha, taberna, 'x');
    sender.on('error', () => undefined);
    const failed = failureOf(receiver);
    sender.write(Buffer.alloc(1000));
    await eventually(() => beta.reporting.snapshot().blobBytesIn >= 1000, 'data to arrive');
    // The sender vanishes without a word (as a killed process would) and comes back as a new run.
    cutter.refuse();
    cutter.cut();
    const reborn = await mesh.add('alpha-2', {
      transport,
      config: blobConfig(),
      certificate: 'alpha',
    });
    await reborn.send(codec, 11n, { name: 'back' });
    const err = await within(failed, 5000, 'the receiver to fail');
    expect(AureliaError.is(err, ErrorId.PeerRestarted)).toBe(true);
  });

  it('fails the sender with DomusClosed when the receiving domus shuts down and its drain gives up on the stream', async () => {
    await setup();
    const { sender, receiver } = await openBlob(alpha, taberna, 'x');
    receiver.on('error', () => undefined);
    const failed = once(sender, 'error').then(([err]) => err as Error);
    sender.write(Buffer.alloc(1000));
    await eventually(
      () => alpha.reporting.connectedPeers()[0]?.blobCallis === 1,
      'the blob callis to connect',
    );
    await beta.shutdown();
    // Once its drain gave up on the stream, well before the idle timeout (2 × sendTimeoutMs):
    // the receiver said why the stream ended.
    const err = await within(failed, 3000, 'the sender to fail');
    expect(AureliaError.is(err, ErrorId.DomusClosed)).toBe(true);
  });

  it('lets a stream open when the receiver starts draining finish intact, then shuts down', async () => {
    await setup(
      blobConfig(),
      blobConfig((b) => b.drainTimeoutMs(5000)),
    );
    const { sender, receiver } = await openBlob(alpha, taberna, 'x');
    const received = collect(receiver);
    sender.write(Buffer.alloc(1000, 1));
    await eventually(() => beta.reporting.snapshot().blobBytesIn >= 1000, 'data to arrive');
    let closed = false;
    const draining = firstMatch(
      alpha.reporting.events$,
      (e) => e.type === 'PeerDraining',
      'the sender to hear the receiver drain',
    );
    const shutdown = beta.shutdown().then(() => {
      closed = true;
    });
    await draining;
    // The stream is still open: the receiver waits for it instead of cutting it.
    expect(closed).toBe(false);
    sender.end(Buffer.alloc(500, 2));
    await within(once(sender, 'finish'), 3000, 'the stream to finish');
    expect(await received).toEqual(Buffer.concat([Buffer.alloc(1000, 1), Buffer.alloc(500, 2)]));
    await within(shutdown, 3000, 'the shutdown once the stream ended');
  });

  it('fails the receiver at once with DomusClosed when the sending domus shuts down', async () => {
    await setup();
    const { sender, receiver } = await openBlob(alpha, taberna, 'x');
    sender.on('error', () => undefined);
    const failed = failureOf(receiver);
    sender.write(Buffer.alloc(1000));
    await eventually(() => beta.reporting.snapshot().blobBytesIn >= 1000, 'data to arrive');
    await alpha.shutdown();
    // Well before the idle timeout (2 × sendTimeoutMs): the sender said why the stream ended.
    const err = await within(failed, 3000, 'the receiver to fail');
    expect(AureliaError.is(err, ErrorId.DomusClosed)).toBe(true);
  });

  it('fails an idle stream after twice the send timeout on both ends', async () => {
    const short = () =>
      blobConfig((b) => b.sendTimeoutMs(500).callisConnectTimeoutMs(400).acceptTimeoutMs(400));
    await setup(short(), short());
    const { sender, receiver } = await openBlob(alpha, taberna, 'idle');
    const receiverError = failureOf(receiver);
    const senderError = once(sender, 'error').then(([err]) => err as Error);
    const started = Date.now();
    const err = await receiverError;
    expect(AureliaError.is(err, ErrorId.BlobStreamIdleTimeout)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(AureliaError.is(await senderError, ErrorId.BlobStreamIdleTimeout)).toBe(true);
  });

  it('leaves nothing behind after a shutdown with open streams', async () => {
    const before = countResources();
    await setup();
    const events: DomusReportingEvent[] = [];
    alpha.reporting.events$.subscribe((e) => events.push(e));
    const { sender, receiver } = await openBlob(alpha, taberna, 'open');
    const errors = Promise.all([
      once(sender, 'error').then(([err]) => err as Error),
      once(receiver, 'error').then(([err]) => err as Error),
    ]);
    receiver.resume();
    sender.write(Buffer.alloc(1000));
    await eventually(
      () => alpha.reporting.connectedPeers()[0]?.blobCallis === 1,
      'the blob callis to connect',
    );
    await mesh.close();
    const [s, r] = await errors;
    expect(AureliaError.is(s, ErrorId.DomusClosed)).toBe(true);
    expect(r).toBeInstanceOf(Error);
    expect(events.find((e) => e.type === 'BlobCallisConnected')).toMatchObject({
      direction: 'outbound',
      blobWindow: { chunkSize: CHUNK, ackWindow: 8 },
    });
    expect(events.map((e) => e.type)).toContain('BlobCallisDisconnected');
    // Both ends of the stream are torn down, and no socket, server or timer outlives the mesh.
    expect(sender.destroyed).toBe(true);
    expect(receiver.destroyed).toBe(true);
    await expectNothingLeftSince(before);
  });
});

describe('blobs to a taberna on the same domus', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('refuses a BLOB send to a local taberna with BlobCallisWithoutPrimary, and reserves nothing', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', {
      config: blobConfig((b) => b.blobOutboundBufferBytes(8 * CHUNK)),
    });
    const local = await alpha.taberna(20n, codec);
    const err = await rejection(alpha.send(codec, 20n, { name: 'self' }, SendOptions.BLOB));
    expect(err.kind).toBe(ErrorId.BlobCallisWithoutPrimary);
    expect(err.message).toContain('is on this domus');
    // The taberna never saw the refused request: the next one it gets is an ordinary send.
    const ordinary = alpha.send(codec, 20n, { name: 'plain' });
    const request = await local.next(5000);
    expect(request.message.name).toBe('plain');
    request.accept();
    await ordinary;
    // Its buffer was not reserved: a remote blob still fits in a buffer of one window.
    const beta = await mesh.add('beta', { config: blobConfig() });
    const files = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
    const { sender, receiver } = await openBlob(alpha, files);
    const received = collect(receiver);
    sender.end(Buffer.from('ok'));
    expect((await received).toString()).toBe('ok');
  });
});
