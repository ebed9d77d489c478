import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import {
  type CanActivate,
  Controller,
  type INestApplication,
  type INestApplicationContext,
  Injectable,
  UseGuards,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { IsString, MinLength } from 'class-validator';
import { lastValueFrom } from 'rxjs';
import { ErrorId, type Domus } from '../../lib/index.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { AureliaContext } from '../../lib/nest/context.js';
import { TabernaHandler } from '../../lib/nest/decorators.js';
import { socketDir } from '../support/mesh.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import { FAST, callerApp, hybridApp, serviceOptions } from './fixtures.js';
import { expectElapsedBetween, rejection } from '../support/expect.js';

const MiB = 1024 * 1024;

/** How a handler's read of one named blob ended. */
type Outcome =
  { ok: true; bytes: number; sha256: string } | { ok: false; bytes: number; error: string };

/** Per-name promises the handlers settle, so tests wait on events rather than time. */
interface Slot {
  promise: Promise<Outcome>;
  resolve(outcome: Outcome): void;
}

class Board {
  private readonly outcomes = new Map<string, Slot>();
  private readonly progress = new Map<string, { at: number; reached: () => void }>();
  private readonly gates = new Map<
    string,
    { arrived: Promise<void>; open: () => void; wait: () => Promise<void> }
  >();

  outcome(name: string): Promise<Outcome> {
    return this.slot(name).promise;
  }

  settle(name: string, outcome: Outcome): void {
    this.slot(name).resolve(outcome);
  }

  /** A gate a handler waits at until the test opens it; `arrived` resolves when it waits. */
  gate(name: string): { arrived: Promise<void>; open: () => void; wait: () => Promise<void> } {
    let gate = this.gates.get(name);
    if (!gate) {
      let arrive!: () => void;
      let open!: () => void;
      const arrived = new Promise<void>((r) => (arrive = r));
      const opened = new Promise<void>((r) => (open = r));
      gate = {
        arrived,
        open,
        wait: () => {
          arrive();
          return opened;
        },
      };
      this.gates.set(name, gate);
    }
    return gate;
  }

  /** Resolves once the handler of `name` has read `bytes`. */
  reached(name: string, bytes: number): Promise<void> {
    return new Promise((resolve) => this.progress.set(name, { at: bytes, reached: resolve }));
  }

  read(name: string, total: number): void {
    const watch = this.progress.get(name);
    if (watch && total >= watch.at) {
      this.progress.delete(name);
      watch.reached();
    }
  }

  private slot(name: string): Slot {
    let slot = this.outcomes.get(name);
    if (!slot) {
      let resolve!: (outcome: Outcome) => void;
      const promise = new Promise<Outcome>((r) => (resolve = r));
      slot = { promise, resolve };
      this.outcomes.set(name, slot);
    }
    return slot;
  }
}

const board = new Board();

/** Reads a blob to its end (or failure), hashing it and reporting progress. */
async function consume(name: string, blob: Readable): Promise<Outcome> {
  const hash = createHash('sha256');
  let bytes = 0;
  let outcome: Outcome;
  try {
    for await (const part of blob) {
      hash.update(part as Buffer);
      bytes += (part as Buffer).length;
      board.read(name, bytes);
    }
    outcome = { ok: true, bytes, sha256: hash.digest('hex') };
  } catch (err) {
    outcome = { ok: false, bytes, error: String(err) };
  }
  board.settle(name, outcome);
  return outcome;
}

class FileNote {
  @IsString()
  @MinLength(1)
  name!: string;
}

@Injectable()
class DenyAll implements CanActivate {
  canActivate(): boolean {
    return false;
  }
}

@Controller()
class FilesController {
  @EventPattern<string>('file.put')
  async put(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): Promise<void> {
    const outcome = await consume(note.name, ctx.getBlob()!);
    if (!outcome.ok) throw new RpcException(outcome.error);
  }

  @TabernaHandler(4545n)
  @EventPattern<string>('file.by-id')
  async byId(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): Promise<void> {
    const outcome = await consume(note.name, ctx.getBlob()!);
    if (!outcome.ok) throw new RpcException(outcome.error);
  }

  @UseGuards(DenyAll)
  @EventPattern<string>('file.guarded')
  guarded(@Ctx() ctx: AureliaContext): Promise<Outcome> {
    return consume('guarded', ctx.getBlob()!);
  }

  @EventPattern<string>('file.refuse')
  refuse(): never {
    throw new RpcException({ code: 'E_FULL', message: 'disk full' });
  }

  @EventPattern<string>('file.quota')
  async quota(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): Promise<void> {
    let bytes = 0;
    for await (const part of ctx.getBlob()!) {
      bytes += (part as Buffer).length;
      if (bytes >= MiB) throw new RpcException({ code: 'E_QUOTA', message: 'over 1 MiB' });
    }
    board.settle(note.name, { ok: true, bytes, sha256: '' });
  }

  @EventPattern<string>('file.ignore')
  ignore(@Payload() note: FileNote): void {
    board.settle(note.name, { ok: true, bytes: 0, sha256: '' });
  }

  @UsePipes(
    new ValidationPipe({
      exceptionFactory: (errors) =>
        new RpcException({
          status: 'error',
          message: 'invalid file note',
          fields: errors.map((e) => e.property),
        }),
    }),
  )
  @EventPattern<string>('file.validated')
  async validated(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): Promise<void> {
    await consume(note.name, ctx.getBlob()!);
  }

  @MessagePattern('file.rpc')
  rpc(): string {
    return 'replies only';
  }

  @EventPattern<string>('file.hold')
  hold(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): void {
    const blob = ctx.getBlob()!;
    // Takes the stream and never reads it.
    blob.on('error', (err) => board.settle(note.name, { ok: false, bytes: 0, error: String(err) }));
    blob.on('close', () =>
      board.settle(note.name, { ok: false, bytes: 0, error: 'closed unread' }),
    );
  }

  @EventPattern<string>('file.late')
  async late(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): Promise<void> {
    await board.gate(note.name).wait();
    await consume(note.name, ctx.getBlob()!);
  }

  @EventPattern<string>('file.background')
  background(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): void {
    // Returns at once; the stream is read by work that outlives the handler.
    void consume(note.name, ctx.getBlob()!);
  }

  @EventPattern<string>('file.peek')
  async peek(@Payload() note: FileNote, @Ctx() ctx: AureliaContext): Promise<void> {
    for await (const part of ctx.getBlob()!) {
      board.settle(note.name, { ok: true, bytes: (part as Buffer).length, sha256: '' });
      break;
    }
  }

  @MessagePattern('ping')
  ping(): string {
    return 'pong';
  }
}

const PATTERNS = [
  'file.put',
  'file.guarded',
  'file.refuse',
  'file.quota',
  'file.ignore',
  'file.validated',
  'file.rpc',
  'file.hold',
  'file.late',
  'file.background',
  'file.peek',
  'ping',
];

/** Feeds `data` in pieces of `size` bytes. */
function pieces(data: Buffer, size = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

/** An endless source of 64 KiB pieces (bounded to 1 GiB), for aborts mid-stream. */
function endless(): Readable {
  const piece = randomBytes(64 * 1024);
  let left = 16 * 1024;
  return new Readable({
    read() {
      this.push(left-- > 0 ? piece : null);
    },
  });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe.each(['tcp', 'unix'] as const)('sendBlob and getBlob over %s', (transport) => {
  let pki: TestPki;
  let files: INestApplication;
  let caller: INestApplicationContext;
  let client: ClientAurelia;
  const dir = socketDir();

  beforeAll(async () => {
    pki = await makeTestPki();
    const listen = (name: string): Record<string, string> =>
      transport === 'unix' ? { listen: `unix://${dir.path(name)}` } : {};
    files = await hybridApp(await serviceOptions(pki, 'files', listen('files')), [FilesController]);
    const address = files.get(AureliaServer).unwrap<Domus>().localAddr.toString();
    caller = await callerApp(
      await serviceOptions(pki, 'orders', {
        ...listen('orders'),
        routes: [...PATTERNS.map((pattern) => ({ pattern, address })), { pattern: 4545n, address }],
      }),
    );
    client = caller.get(ClientAurelia);
  });
  afterAll(async () => {
    await caller?.close();
    await files?.close();
    dir.cleanup();
  });

  it('delivers a few MiB byte-exact (SHA-256) and completes once the handler read them', async () => {
    const data = randomBytes(4 * MiB + 333);
    const name = `${transport}-big`;
    await lastValueFrom(client.sendBlob('file.put', { name }, pieces(data)));
    expect(await board.outcome(name)).toEqual({
      ok: true,
      bytes: data.length,
      sha256: sha256(data),
    });
  });

  it('delivers a blob to a handler placed on an explicit taberna id', async () => {
    const data = randomBytes(100 * 1024);
    const name = `${transport}-by-id`;
    await lastValueFrom(client.sendBlob(4545n, { name }, pieces(data)));
    expect(await board.outcome(name)).toEqual({
      ok: true,
      bytes: data.length,
      sha256: sha256(data),
    });
  });

  it('delivers an empty blob as a stream that just ends', async () => {
    const name = `${transport}-empty`;
    await lastValueFrom(client.sendBlob('file.put', { name }, Readable.from([])));
    expect(await board.outcome(name)).toEqual({
      ok: true,
      bytes: 0,
      sha256: sha256(Buffer.alloc(0)),
    });
  });

  it('fails with RemoteTabernaRejected when a guard refuses, and never reads the source', async () => {
    const source = pieces(randomBytes(256 * 1024));
    const err = await rejection(client.sendBlob('file.guarded', { name: 'guarded' }, source));
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain('Forbidden resource');
    expect(source.destroyed).toBe(true);
  });

  it('fails with RemoteTabernaRejected and the payload when the handler throws before taking the blob', async () => {
    const err = await rejection(
      client.sendBlob('file.refuse', { name: 'x' }, pieces(randomBytes(1024))),
    );
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toBe("the handler of 'file.refuse' failed: disk full");
    expect(err.cause).toEqual({ code: 'E_FULL', message: 'disk full' });
  });

  it('aborts the stream when the handler throws mid-stream, with the handler payload', async () => {
    const err = await rejection(
      client.sendBlob('file.quota', { name: `${transport}-quota` }, endless()),
    );
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.cause).toEqual({ code: 'E_QUOTA', message: 'over 1 MiB' });
  });

  it('aborts the remote stream when the source fails mid-stream, never a truncated success', async () => {
    const name = `${transport}-broken`;
    const source = new PassThrough();
    const sending = rejection(client.sendBlob('file.put', { name }, source));
    source.write(randomBytes(MiB));
    await board.reached(name, MiB);
    source.destroy(new Error('disk read failed'));
    const err = await sending;
    expect(err.kind).toBe(ErrorId.ConnectionLost);
    expect(err.message).toContain('disk read failed');
    expect((err.cause as Error).message).toBe('disk read failed');
    const outcome = await board.outcome(name);
    expect(outcome.ok).toBe(false);
    expect(outcome).toMatchObject({ error: expect.stringContaining('disk read failed') });
  });

  it('aborts the stream on both ends when the caller unsubscribes mid-stream', async () => {
    const name = `${transport}-unsubscribed`;
    const source = endless();
    const events: string[] = [];
    const subscription = client.sendBlob('file.put', { name }, source).subscribe({
      complete: () => events.push('complete'),
      error: () => events.push('error'),
    });
    await board.reached(name, 2 * MiB);
    subscription.unsubscribe();
    const outcome = await board.outcome(name);
    expect(outcome.ok).toBe(false);
    expect(outcome).toMatchObject({ error: expect.stringContaining('the caller unsubscribed') });
    expect(source.destroyed).toBe(true);
    expect(events).toEqual([]);
  });

  it('fails with SendTimeout at the deadline and aborts a stream the handler accepts later', async () => {
    const name = `${transport}-late`;
    const gate = board.gate(name);
    const hasty = new ClientAurelia(caller.get(ClientAurelia).unwrap<Domus>(), {
      requestTimeoutMs: 200,
    });
    const source = endless();
    const started = Date.now();
    const err = await rejection(hasty.sendBlob('file.late', { name }, source));
    expect(err.kind).toBe(ErrorId.SendTimeout);
    expectElapsedBetween(started, 200, 3500); // the domus's own deadline is 4 s
    expect(err.message).toContain("'file.late'");
    expect(source.destroyed).toBe(true);
    await gate.arrived;
    gate.open();
    const outcome = await board.outcome(name);
    expect(outcome).toMatchObject({ ok: false, bytes: 0 });
    await hasty.close();
  });

  it('aborts a stream accepted after the caller unsubscribed', async () => {
    const name = `${transport}-gone`;
    const gate = board.gate(name);
    const source = endless();
    const events: string[] = [];
    const subscription = client.sendBlob('file.late', { name }, source).subscribe({
      complete: () => events.push('complete'),
      error: () => events.push('error'),
    });
    await gate.arrived;
    subscription.unsubscribe();
    gate.open();
    expect(await board.outcome(name)).toMatchObject({
      ok: false,
      bytes: 0,
      error: expect.stringContaining('the caller unsubscribed'),
    });
    expect(source.destroyed).toBe(true);
    expect(events).toEqual([]);
  });

  it('validates the blob data with ValidationPipe, rejecting before any byte flows', async () => {
    const err = await rejection(
      client.sendBlob('file.validated', { name: '' }, pieces(randomBytes(1024))),
    );
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.cause).toEqual({
      status: 'error',
      message: 'invalid file note',
      fields: ['name'],
    });
    const data = randomBytes(100_000);
    const name = `${transport}-valid`;
    await lastValueFrom(client.sendBlob('file.validated', { name }, pieces(data)));
    expect(await board.outcome(name)).toMatchObject({ ok: true, sha256: sha256(data) });
  });

  it('aborts a blob the handler completed without taking', async () => {
    const name = `${transport}-ignored`;
    const err = await rejection(
      client.sendBlob('file.ignore', { name }, pieces(randomBytes(512 * 1024))),
    );
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain('completed without taking the blob');
    expect(await board.outcome(name)).toEqual({ ok: true, bytes: 0, sha256: '' });
  });

  it('completes when work the handler started reads the last byte after the handler returned', async () => {
    const data = randomBytes(3 * MiB);
    const name = `${transport}-background`;
    await lastValueFrom(client.sendBlob('file.background', { name }, pieces(data)));
    expect(await board.outcome(name)).toEqual({
      ok: true,
      bytes: data.length,
      sha256: sha256(data),
    });
  });

  it('aborts a blob the handler stopped reading before its end', async () => {
    const name = `${transport}-peeked`;
    const err = await rejection(client.sendBlob('file.peek', { name }, endless()));
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain('stopped reading the blob before its end');
    expect(await board.outcome(name)).toMatchObject({ ok: true });
  });

  it('refuses a blob sent to a @MessagePattern handler', async () => {
    const err = await rejection(client.sendBlob('file.rpc', {}, pieces(randomBytes(1024))));
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain("'file.rpc' is a message handler");
  });

  it('fails with UnknownTaberna for an unrouted pattern and EncodeFailure for unencodable data', async () => {
    const unrouted = pieces(randomBytes(1024));
    const lost = await rejection(client.sendBlob('file.nowhere', { name: 'x' }, unrouted));
    expect(lost.kind).toBe(ErrorId.UnknownTaberna);
    expect(unrouted.destroyed).toBe(true);
    const odd = await rejection(client.sendBlob('file.put', { size: 1n }, Readable.from([])));
    expect(odd.kind).toBe(ErrorId.EncodeFailure);
  });

  it('runs once: a second subscription errors instead of re-reading the source', async () => {
    const transfer = client.sendBlob('file.put', { name: `${transport}-once` }, Readable.from([]));
    await lastValueFrom(transfer);
    const err = await rejection(transfer);
    expect(err.kind).toBe(ErrorId.InvalidConfig);
  });
});

describe('blobs with short deadlines', () => {
  let pki: TestPki;
  let files: INestApplication;
  let caller: INestApplicationContext;

  beforeAll(async () => {
    pki = await makeTestPki();
    const config = {
      ...FAST,
      sendTimeoutMs: 750,
      callisConnectTimeoutMs: 500,
      acceptTimeoutMs: 500,
    };
    files = await hybridApp(await serviceOptions(pki, 'files', { config }), [FilesController]);
    const address = files.get(AureliaServer).unwrap<Domus>().localAddr.toString();
    caller = await callerApp(
      await serviceOptions(pki, 'orders', {
        config,
        routes: PATTERNS.map((pattern) => ({ pattern, address })),
      }),
    );
  });
  afterAll(async () => {
    await caller?.close();
    await files?.close();
  });

  it('stalls the sender, keeps other calls flowing, and ends with BlobStreamIdleTimeout', async () => {
    const client = caller.get(ClientAurelia);
    const source = endless();
    const sending = rejection(client.sendBlob('file.hold', { name: 'held' }, source));
    expect(await lastValueFrom(client.send('ping', {}))).toBe('pong');
    const err = await sending;
    expect(err.kind).toBe(ErrorId.BlobStreamIdleTimeout);
    expect(source.destroyed).toBe(true);
    expect(source.readableEnded).toBe(false);
    expect(await board.outcome('held')).toMatchObject({ ok: false });
  });

  it('ends a transfer whose source stalls with BlobStreamIdleTimeout on both ends', async () => {
    const client = caller.get(ClientAurelia);
    const source = new PassThrough();
    const sending = rejection(client.sendBlob('file.put', { name: 'stalled' }, source));
    source.write(Buffer.alloc(1000));
    const err = await sending;
    expect(err.kind).toBe(ErrorId.BlobStreamIdleTimeout);
    expect(await board.outcome('stalled')).toMatchObject({
      ok: false,
      bytes: 1000,
      error: expect.stringContaining('BlobStreamIdleTimeout'),
    });
  });

  it('fails instead of hanging when the receiving service shuts down mid-stream', async () => {
    const config = {
      ...FAST,
      sendTimeoutMs: 750,
      callisConnectTimeoutMs: 500,
      acceptTimeoutMs: 500,
    };
    const doomed = await hybridApp(await serviceOptions(pki, 'doomed', { config }), [
      FilesController,
    ]);
    const address = doomed.get(AureliaServer).unwrap<Domus>().localAddr.toString();
    const sender = await callerApp(
      await serviceOptions(pki, 'sender', { config, routes: [{ pattern: 'file.put', address }] }),
    );
    try {
      const source = endless();
      const sending = rejection(
        sender.get(ClientAurelia).sendBlob('file.put', { name: 'doomed' }, source),
      );
      await board.reached('doomed', MiB);
      await doomed.close();
      const err = await sending;
      // The receiving domus says why the stream ends: the sender fails at once, not at its idle
      // timeout.
      expect(err.kind).toBe(ErrorId.DomusClosed);
      expect(source.destroyed).toBe(true);
      expect(await board.outcome('doomed')).toMatchObject({ ok: false });
    } finally {
      await sender.close();
      await doomed.close();
    }
  });
});
