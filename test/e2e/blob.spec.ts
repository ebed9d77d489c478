import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AureliaError,
  BlobReceiver,
  BlobSender,
  DomusAddr,
  ErrorId,
  JsonCodec,
  SendOptions,
  type Domus,
  type DomusReportingEvent,
  type SendOutcome,
  type Taberna,
} from '../../lib/index.js';
import { rejection } from '../support/expect.js';
import { FaultProxy } from '../support/proxy.js';
import { TestMesh, eventually, fastConfig } from '../support/mesh.js';
import { within } from '../support/transport.js';

interface FileNote {
  name: string;
}
const codec = new JsonCodec<FileNote>();
const CHUNK = 16 * 1024;

function blobConfig(patch: Parameters<typeof fastConfig>[0] = (b) => b) {
  return fastConfig((b) => patch(b.blobWindow({ chunkSize: CHUNK, ackWindow: 8 })));
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

/** Accepts the next request and returns its blob receiver. */
async function acceptBlob(taberna: Taberna<FileNote>): Promise<BlobReceiver> {
  const request = await taberna.next(5000);
  const receiver = request.blobReceiver;
  if (!(receiver instanceof BlobReceiver)) throw new Error('request carries no blob receiver');
  request.accept();
  return receiver;
}

async function transfer(
  alpha: Domus,
  taberna: Taberna<FileNote>,
  data: Buffer,
  writeSize = 64 * 1024,
): Promise<Buffer> {
  const sending = alpha.send(codec, 10n, { name: 'data.bin' }, SendOptions.BLOB);
  const receiver = await acceptBlob(taberna);
  const sender = senderOf(await sending);
  const received = collect(receiver);
  const pieces = [];
  for (let i = 0; i < data.length; i += writeSize) pieces.push(data.subarray(i, i + writeSize));
  await pipeline(Readable.from(pieces), sender);
  return received;
}

describe.each(['tcp', 'socket'] as const)('blobs over %s', (transport) => {
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
    const data = randomBytes(64 * 1024 * 1024);
    const received = await transfer(alpha, taberna, data, 1024 * 1024);
    expect(createHash('sha256').update(received).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
    expect(alpha.reporting.snapshot().blobBytesOut).toBeGreaterThanOrEqual(data.length);
    expect(beta.reporting.snapshot().blobBytesIn).toBeGreaterThanOrEqual(data.length);
    expect(alpha.reporting.connectedPeers()[0]).toMatchObject({ primaryCallis: 1, blobCallis: 1 });
  });

  it('delivers what was written even when the writer reuses its buffer after each callback', async () => {
    const sending = alpha.send(codec, 10n, { name: 'reuse.bin' }, SendOptions.BLOB);
    const receiver = await acceptBlob(taberna);
    const sender = senderOf(await sending);
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
    expect(createHash('sha256').update(data).digest('hex')).toBe(expected.digest('hex'));
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
});

/** A deterministic pseudo-random byte stream of `total` bytes, hashed as it is produced. */
function patternSource(total: number, hash: ReturnType<typeof createHash>): Readable {
  const block = randomBytes(1024 * 1024);
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

describe('large blobs', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('streams 1 GiB with a matching SHA-256 while messages keep flowing on the primary callis', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha');
    const beta = await mesh.add('beta');
    const files = await beta.taberna(10n, codec);
    const pings = await beta.taberna(11n, codec);
    mesh.route(10n, 'beta');
    mesh.route(11n, 'beta');
    void (async () => {
      try {
        for await (const request of pings) request.accept();
      } catch {
        // closed with the domus
      }
    })();
    const total = 1024 * 1024 * 1024;
    const sentHash = createHash('sha256');
    const receivedHash = createHash('sha256');
    const sending = alpha.send(codec, 10n, { name: 'big.bin' }, SendOptions.BLOB);
    const receiver = await acceptBlob(files);
    const sender = senderOf(await sending);
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
    // Messages are not queued behind blob bytes: round trips complete while the blob streams.
    await eventually(() => received > 64 * 1024 * 1024, 'the blob to be under way', 20_000);
    for (let n = 0; n < 20; n++) await alpha.send(codec, 11n, { name: `ping ${n}` });
    expect(blobDone).toBe(false);
    await writing;
    await reading;
    expect(received).toBe(total);
    expect(receivedHash.digest('hex')).toBe(sentHash.digest('hex'));
  }, 120_000);
});

describe('blob fairness', () => {
  let mesh: TestMesh;
  afterEach(() => mesh.close());

  it('lets a small stream finish while a large one to the same peer is still running', async () => {
    mesh = await TestMesh.create();
    const alpha = await mesh.add('alpha', { config: blobConfig() });
    const beta = await mesh.add('beta', { config: blobConfig() });
    const taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
    const bigSend = alpha.send(codec, 10n, { name: 'big' }, SendOptions.BLOB);
    const bigReceiver = await acceptBlob(taberna);
    const big = senderOf(await bigSend);
    let bigReceived = 0;
    let bigDone = false;
    const bigReading = (async () => {
      for await (const part of bigReceiver) bigReceived += (part as Buffer).length;
      bigDone = true;
    })();
    const bigWriting = pipeline(patternSource(128 * 1024 * 1024, createHash('sha256')), big);
    await eventually(() => bigReceived > 4 * 1024 * 1024, 'the large stream to be under way');

    const smallData = randomBytes(1024 * 1024);
    const smallSend = alpha.send(codec, 10n, { name: 'small' }, SendOptions.BLOB);
    const smallReceiver = await acceptBlob(taberna);
    const small = senderOf(await smallSend);
    const smallReceived = collect(smallReceiver);
    await pipeline(Readable.from([smallData]), small);
    expect((await smallReceived).equals(smallData)).toBe(true);
    expect(bigDone).toBe(false);
    await bigWriting;
    await bigReading;
    expect(bigReceived).toBe(128 * 1024 * 1024);
  }, 60_000);
});

describe('blob flow control and failures', () => {
  let mesh: TestMesh;
  let alpha: Domus;
  let beta: Domus;
  let taberna: Taberna<FileNote>;

  async function setup(alphaConfig = blobConfig(), betaConfig = blobConfig()): Promise<void> {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { config: alphaConfig });
    beta = await mesh.add('beta', { config: betaConfig });
    taberna = await beta.taberna(10n, codec);
    mesh.route(10n, 'beta');
  }
  afterEach(() => mesh.close());

  it('stops the sender while the receiver does not read, holding at most one window', async () => {
    await setup();
    const sending = alpha.send(codec, 10n, { name: 'slow' }, SendOptions.BLOB);
    const receiver = await acceptBlob(taberna);
    const sender = senderOf(await sending);
    const block = Buffer.alloc(CHUNK, 7);
    const total = 4 * 1024 * 1024;
    let written = 0;
    let blockedWrites = 0;
    const writing = (async () => {
      while (written < total) {
        written += block.length;
        if (!sender.write(block)) {
          blockedWrites++;
          await new Promise<void>((resolve) => sender.once('drain', resolve));
        }
      }
      sender.end();
    })();
    // The receiver reads nothing: the window fills and the writer is held back.
    await eventually(() => sender.unacknowledgedBytes === 8 * CHUNK, 'the window to fill');
    const heldAt = written;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(written).toBe(heldAt);
    expect(written).toBeLessThan(total / 4);
    expect(blockedWrites).toBeGreaterThan(0);
    expect(sender.unacknowledgedBytes).toBeLessThanOrEqual(8 * CHUNK);
    expect(sender.writableLength).toBeLessThanOrEqual(64 * 1024 + CHUNK);
    const data = await collect(receiver);
    await writing;
    expect(data.length).toBe(total);
  });

  it('refuses a blob whose stream cannot be buffered with BlobBufferFull', async () => {
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
    await new Promise<void>((resolve) => sender.once('close', resolve));
    const third = alpha.send(codec, 10n, { name: 'three' }, SendOptions.BLOB);
    senderOf(await Promise.all([third, acceptBlob(taberna)]).then(([o]) => o)).destroy();
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
    const one = alpha.send(codec, 10n, { name: 'a' }, SendOptions.BLOB);
    const receiverA = await acceptBlob(taberna);
    const senderA = senderOf(await one);
    const senderFailed = new Promise<Error>((resolve) => senderA.once('error', resolve));
    receiverA.on('error', () => undefined);
    senderA.write(Buffer.alloc(100));
    receiverA.destroy(new Error('disk full'));
    const err = await senderFailed;
    expect(AureliaError.is(err)).toBe(true);
    expect(err.message).toContain('disk full');

    const two = alpha.send(codec, 10n, { name: 'b' }, SendOptions.BLOB);
    const receiverB = await acceptBlob(taberna);
    const senderB = senderOf(await two);
    const receiverFailed = collect(receiverB).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    senderB.on('error', () => undefined);
    senderB.write(Buffer.alloc(100));
    await eventually(() => beta.reporting.snapshot().blobBytesIn >= 100, 'data to arrive');
    senderB.destroy(new Error('source vanished'));
    const failure = await receiverFailed;
    expect(failure).toBeInstanceOf(Error);
    expect(failure!.message).toContain('source vanished');
  });

  it('resumes byte-exact after the connection is cut mid-stream', async () => {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { config: blobConfig() });
    beta = await mesh.add('beta', { config: blobConfig() });
    taberna = await beta.taberna(10n, codec);
    const proxy = await FaultProxy.start({
      host: '127.0.0.1',
      port: beta.localAddr.port as number,
    });
    try {
      mesh.resolver.insert(10n, DomusAddr.tcp('127.0.0.1', proxy.port));
      const data = randomBytes(8 * 1024 * 1024);
      const sending = alpha.send(codec, 10n, { name: 'big' }, SendOptions.BLOB);
      const receiver = await acceptBlob(taberna);
      const sender = senderOf(await sending);
      let seen = 0;
      let cuts = 0;
      receiver.on('data', (part: Buffer) => {
        seen += part.length;
        if ((seen > 2 * 1024 * 1024 && cuts === 0) || (seen > 5 * 1024 * 1024 && cuts === 1)) {
          cuts++;
          proxy.cut();
        }
      });
      const received = collect(receiver);
      await pipeline(Readable.from([data.subarray(0, 4 << 20), data.subarray(4 << 20)]), sender);
      expect(cuts).toBe(2);
      expect((await received).equals(data)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('fails open streams with PeerRestarted when the receiving domus restarts', async () => {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', { config: blobConfig() });
    beta = await mesh.add('beta', { config: blobConfig() });
    taberna = await beta.taberna(10n, codec);
    const proxy = await FaultProxy.start({
      host: '127.0.0.1',
      port: beta.localAddr.port as number,
    });
    try {
      mesh.resolver.insert(10n, DomusAddr.tcp('127.0.0.1', proxy.port));
      const sending = alpha.send(codec, 10n, { name: 'x' }, SendOptions.BLOB);
      await acceptBlob(taberna);
      const sender = senderOf(await sending);
      const failed = new Promise<Error>((resolve) => sender.once('error', resolve));
      sender.write(Buffer.alloc(10));
      const reborn = await mesh.add('beta-2', { config: blobConfig(), certificate: 'beta' });
      await reborn.taberna(10n, codec);
      proxy.retarget({ host: '127.0.0.1', port: reborn.localAddr.port as number });
      proxy.cut();
      // A message makes the primary callis reconnect and learn the new session.
      void alpha.send(codec, 10n, { name: 'ping' }).catch(() => undefined);
      const err = await failed;
      expect(AureliaError.is(err, ErrorId.PeerRestarted)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('fails the sender at once with DomusClosed when the receiving domus shuts down', async () => {
    await setup();
    const sending = alpha.send(codec, 10n, { name: 'x' }, SendOptions.BLOB);
    const receiver = await acceptBlob(taberna);
    receiver.on('error', () => undefined);
    const sender = senderOf(await sending);
    const failed = new Promise<Error>((resolve) => sender.once('error', resolve));
    sender.write(Buffer.alloc(1000));
    await eventually(
      () => alpha.reporting.connectedPeers()[0]?.blobCallis === 1,
      'the blob callis to connect',
    );
    await beta.shutdown();
    // Well before the idle timeout (2 × sendTimeoutMs): the receiver said why the stream ended.
    const err = await failed;
    expect(AureliaError.is(err, ErrorId.DomusClosed)).toBe(true);
  });

  it('fails the receiver at once with DomusClosed when the sending domus shuts down', async () => {
    await setup();
    const sending = alpha.send(codec, 10n, { name: 'x' }, SendOptions.BLOB);
    const receiver = await acceptBlob(taberna);
    const sender = senderOf(await sending);
    sender.on('error', () => undefined);
    const failed = collect(receiver).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
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
    const sending = alpha.send(codec, 10n, { name: 'idle' }, SendOptions.BLOB);
    const receiver = await acceptBlob(taberna);
    const sender = senderOf(await sending);
    const receiverError = collect(receiver).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const senderError = new Promise<Error>((resolve) => sender.once('error', resolve));
    const started = Date.now();
    const err = await receiverError;
    expect(AureliaError.is(err, ErrorId.BlobStreamIdleTimeout)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(AureliaError.is(await senderError, ErrorId.BlobStreamIdleTimeout)).toBe(true);
  });

  it('leaves nothing behind after a shutdown with open streams', async () => {
    await setup();
    const events: DomusReportingEvent[] = [];
    alpha.reporting.events$.subscribe((e) => events.push(e));
    const sending = alpha.send(codec, 10n, { name: 'open' }, SendOptions.BLOB);
    const receiver = await acceptBlob(taberna);
    const sender = senderOf(await sending);
    const errors = Promise.all([
      new Promise<Error>((resolve) => sender.once('error', resolve)),
      new Promise<Error>((resolve) => receiver.once('error', resolve)),
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
  });
});
