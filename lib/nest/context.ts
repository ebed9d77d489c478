// The RPC context Aurelia handlers receive with @Ctx(): who called, on which taberna, the blob.
import 'reflect-metadata';
import { Readable } from 'node:stream';
import { BaseRpcContext } from '@nestjs/microservices';
import type { PacketMetadata } from '@nestjs/microservices';
import type { TabernaId } from '../engine/ids.js';
import type { PeerInfo } from '../engine/taberna/request.js';

/** Arguments held by an `AureliaContext`, in order. */
export type AureliaContextArgs = [
  peer: PeerInfo,
  tabernaId: TabernaId,
  pattern: string,
  metadata: PacketMetadata | undefined,
];

/**
 * Context of a message or event handled by `AureliaServer`, injected with `@Ctx()` and readable
 * in guards and interceptors via `context.switchToRpc().getContext<AureliaContext>()`.
 */
export class AureliaContext extends BaseRpcContext<AureliaContextArgs> {
  /**
   * `takeBlob` is given for a request carrying a blob: `getBlob()` returns what it returns (the
   * transport accepts the request on the first call).
   */
  constructor(
    args: AureliaContextArgs,
    private readonly takeBlob?: () => Readable,
  ) {
    super(args);
  }

  /**
   * The caller: its certificate identity (proved by mutual TLS, so guards may authorize on it),
   * the address its connection came from, and whether it is this domus itself.
   */
  getPeer(): PeerInfo {
    return this.args[0];
  }

  /** The taberna id the message arrived at. */
  getTabernaId(): TabernaId {
    return this.args[1];
  }

  /** The handler's normalized pattern. */
  getPattern(): string {
    return this.args[2];
  }

  /** Metadata the client attached with `setOnDispatchHook`, if any. */
  getMetadata(): PacketMetadata | undefined {
    return this.args[3];
  }

  /**
   * The blob stream the caller's `sendBlob()` attached to this event, or `undefined` for a
   * request without one. The first call accepts the request (the caller's stream starts), so a
   * later throw aborts the stream instead of rejecting the event. The stream ends after the last
   * byte in order and errors when the sender aborts, restarts, or stalls past the blob idle
   * timeout; reading it slowly slows the sender down.
   */
  getBlob(): Readable | undefined {
    return this.takeBlob?.();
  }
}

/**
 * The received blob as a handler sees it: the engine's stream, forwarded chunk by chunk with its
 * backpressure, whose destruction is reported to `onDestroyed` instead of aborting the transfer
 * on the spot. So a handler that throws out of a `for await` loop aborts the stream with its own
 * error, decided by the transport once the handler settled.
 */
export class HandlerBlob extends Readable {
  constructor(
    private readonly source: Readable,
    private readonly onDestroyed: (err: Error | null) => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
    // Flowing with pause/resume hands the engine's buffers on as they are (read() would concat).
    source.on('data', this.onData);
    source.on('end', this.onEnd);
    source.on('error', this.onError);
  }

  override _read(): void {
    this.source.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.source.off('data', this.onData);
    this.source.off('end', this.onEnd);
    this.source.off('error', this.onError);
    this.source.pause();
    this.onDestroyed(err);
    callback(err);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.push(chunk)) this.source.pause();
  };
  private readonly onEnd = (): void => {
    this.push(null);
  };
  private readonly onError = (err: Error): void => {
    // Like the engine's streams: without an 'error' listener, fail without crashing the process.
    if (this.listenerCount('error') > 0) this.destroy(err);
    else this.destroy();
  };
}
