// The RPC context Aurelia handlers receive with @Ctx(): who called, on which taberna.
import 'reflect-metadata';
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
  constructor(args: AureliaContextArgs) {
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
   * The blob stream attached to the message. Always `undefined` for now: blob transfer is not
   * available on the Nest transport yet.
   */
  getBlob(): undefined {
    return undefined;
  }
}
