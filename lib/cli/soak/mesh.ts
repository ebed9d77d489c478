// The soak mesh's plumbing: its settings, the domus it builds, and sends recorded in ledgers.
import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';

import { DomusAddr } from '../../engine/addr.js';
import { Aurelia } from '../../engine/aurelia.js';
import type { Pkcs8PemConfig } from '../../engine/auth.js';
import { BlobReceiver } from '../../engine/blob/receiver.js';
import { JsonCodec } from '../../engine/codec.js';
import { DomusConfigBuilder, type DomusConfig } from '../../engine/config.js';
import type { Domus } from '../../engine/domus.js';
import { AureliaError, ErrorId } from '../../engine/errors.js';
import { SimpleResolver } from '../../engine/resolver.js';
import { SendOptions } from '../../engine/send-options.js';
import type { Taberna } from '../../engine/taberna/taberna.js';
import type { NodeCertificate } from '../pki.js';
import { BlobLedger } from './blob-ledger.js';
import { DeliveryLedger } from './ledger.js';

/** Deadlines of the soak mesh: short, so faults outlive some sends and not others. */
export const SEND_TIMEOUT_MS = 3000;
/** Keepalive interval of the soak mesh: a stalled link is detected within 3 of these. */
export const KEEPALIVE_MS = 250;

/** What every soak send carries: a unique key and, for a blob, what the stream must deliver. */
export interface SoakMessage {
  readonly key: string;
  readonly size?: number;
  readonly sha256?: string;
}

/** The two ledgers of one kind of traffic: its sends and acceptances, and its blobs. */
export class SoakLedgers {
  readonly messages: DeliveryLedger;
  readonly blobs = new BlobLedger();

  constructor(lateSlackMs: number) {
    this.messages = new DeliveryLedger(lateSlackMs);
  }
}

/** Resolves when `promises` all settled or `ms` passed, whichever is first. */
export async function settleWithin(
  promises: Iterable<Promise<unknown>>,
  ms: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

// A graceful shutdown (a rolling restart) gets a send timeout to finish what it accepted.
function soakConfig(): DomusConfig {
  return new DomusConfigBuilder()
    .sendTimeoutMs(SEND_TIMEOUT_MS)
    .callisConnectTimeoutMs(2500)
    .acceptTimeoutMs(2000)
    .keepaliveIntervalMs(KEEPALIVE_MS)
    .reconnectBackoffMs([20, 100, 250])
    .sendQueueSize(1024)
    .tabernaAcceptQueueSize(256)
    .tcpHandshakeTimeoutMs(3000)
    .blobWindow({ chunkSize: 16 * 1024, ackWindow: 16 })
    .drainTimeoutMs(SEND_TIMEOUT_MS)
    .build();
}

function authOf(cert: NodeCertificate): Pkcs8PemConfig {
  return {
    format: 'pem',
    caPem: Buffer.from(cert.caPem),
    certPem: Buffer.from(cert.chainPem),
    pkcs8KeyPem: Buffer.from(cert.keyPem),
  };
}

/**
 * Every domus of a soak run, built by one runtime over one resolver, and the promises still
 * running for them: sends in flight (`outstanding`) and receiving loops, blob streams and
 * shutdowns (`background`). What a receiving application saw go wrong lands in `problems`.
 */
export class SoakMesh {
  readonly aurelia = new Aurelia();
  readonly resolver = new SimpleResolver();
  readonly codec = new JsonCodec<SoakMessage>();
  readonly outstanding = new Set<Promise<void>>();
  readonly background = new Set<Promise<unknown>>();
  readonly problems: string[] = [];
  private readonly config = soakConfig();

  /** Keeps `promise` among the background work the end of the run waits for. */
  keep(promise: Promise<unknown>): void {
    this.background.add(promise);
    void promise.finally(() => this.background.delete(promise));
  }

  /**
   * Builds a domus presenting `cert` on a fresh loopback port. With `tabernaId`, it hosts that
   * taberna and accepts every message into `ledgers`, reading and checking every blob.
   */
  async domus(cert: NodeCertificate, tabernaId?: bigint, ledgers?: SoakLedgers): Promise<Domus> {
    const domus = await this.aurelia
      .domusBuilder(this.config, DomusAddr.tcp('127.0.0.1', 0), authOf(cert), this.resolver)
      .build();
    if (tabernaId !== undefined && ledgers) {
      const taberna = await domus.taberna(tabernaId, this.codec);
      this.keep(this.serve(taberna, ledgers));
    }
    return domus;
  }

  /**
   * Sends `message` (with `blob`'s bytes as a blob stream when given) from `domus` to
   * `tabernaId`, recording the send in `ledgers` with its deadline and, for a blob, both ends of
   * the stream.
   */
  send(
    domus: Domus,
    tabernaId: bigint,
    ledgers: SoakLedgers,
    key: string,
    blob: Buffer | undefined,
  ): void {
    let message: SoakMessage = { key };
    if (blob) {
      const sha256 = createHash('sha256').update(blob).digest('hex');
      message = { key, size: blob.length, sha256 };
      ledgers.blobs.sent(key, blob.length, sha256);
    }
    const sending = domus.send(this.codec, tabernaId, message, blob && SendOptions.BLOB);
    const tracked = ledgers.messages.track(key, Date.now() + SEND_TIMEOUT_MS, sending);
    this.outstanding.add(tracked);
    void tracked.finally(() => this.outstanding.delete(tracked));
    if (!blob) return;
    const blobs = ledgers.blobs;
    this.keep(
      sending.then(
        (outcome) => {
          if (outcome.kind !== 'blob') {
            blobs.streamFailed(key, new Error(`a BLOB send resolved with ${outcome.kind}`));
            return;
          }
          const sender = outcome.sender;
          sender.on('error', (err) => blobs.streamFailed(key, err));
          sender.on('finish', () => blobs.finished(key));
          sender.on('close', () => blobs.closed(key));
          sender.end(blob);
          return finished(sender).catch(() => undefined);
        },
        (err: unknown) => blobs.sendFailed(key, err),
      ),
    );
  }

  /** Shuts every domus down and waits, bounded, for the background work to end. */
  async close(): Promise<void> {
    await this.aurelia.shutdown();
    await settleWithin([...this.background], SEND_TIMEOUT_MS);
  }

  private async serve(taberna: Taberna<SoakMessage>, ledgers: SoakLedgers): Promise<void> {
    try {
      for await (const request of taberna) {
        const message = request.message;
        const receiver =
          request.blobReceiver instanceof BlobReceiver ? request.blobReceiver : undefined;
        if (!request.accept()) {
          receiver?.destroy();
          continue;
        }
        ledgers.messages.accept(message.key);
        if (receiver) {
          ledgers.blobs.receiving(message.key);
          this.keep(verifyBlob(receiver, message.key, ledgers.blobs));
        }
      }
    } catch (err) {
      if (
        !AureliaError.is(err, ErrorId.DomusClosed) &&
        !AureliaError.is(err, ErrorId.TabernaShutdown)
      ) {
        this.problems.push(`a receiving application failed: ${String(err)}`);
      }
    }
  }
}

/** Reads `receiver` to its end, recording its size and SHA-256 (or its failure) in `blobs`. */
function verifyBlob(receiver: BlobReceiver, key: string, blobs: BlobLedger): Promise<void> {
  const hash = createHash('sha256');
  let size = 0;
  receiver.on('data', (chunk: Buffer) => {
    size += chunk.length;
    hash.update(chunk);
  });
  return finished(receiver).then(
    () => blobs.received(key, size, hash.digest('hex')),
    (err: unknown) => blobs.receiveFailed(key, receiver.failure ?? err),
  );
}
