// The domus's tabernae by id: registration, routing of deliveries, and their shutdown.
import { AureliaError, ErrorId } from '../errors.js';
import type { MessageCodec } from '../codec.js';
import { assertTabernaId, tabernaIdText, type TabernaId } from '../ids.js';
import { type Decision, type Delivery, refusal } from './request.js';
import { Taberna, type TabernaHost, type TabernaOptions } from './taberna.js';

/** Ends the refusal of an unknown taberna, so callers can tell it from a missing route. */
export const NOT_SERVED_THERE = 'nothing serves it there';

/** Live settings and observers the registry needs from its domus. */
export interface RegistryHost {
  queueSize(): number;
  acceptTimeoutMs(): number;
  /** Current `maxTabernaOverflowPerPeer`. */
  overflowPerPeer(): number;
  /** Every decision on every delivery, once (metrics). */
  onDecided(id: TabernaId, delivery: Delivery, decision: Decision): void;
}

/** Counts of registered tabernae and their backlog, for metrics. */
export interface RegistryStats {
  tabernae: number;
  backlog: number;
}

/** Owns every taberna of one domus and routes deliveries to them by id. */
export class TabernaRegistry implements TabernaHost {
  private readonly tabernae = new Map<TabernaId, Taberna<unknown>>();
  private shutDown = false;

  constructor(private readonly host: RegistryHost) {}

  /**
   * Registers a taberna. Throws `TabernaAlreadyRegistered` when the id is taken, `InvalidConfig`
   * for an id that is not a u64 bigint, `DomusClosed` after shutdown.
   */
  register<T>(id: TabernaId, codec: MessageCodec<T>, options: TabernaOptions = {}): Taberna<T> {
    assertTabernaId(id, ErrorId.InvalidConfig);
    if (this.shutDown) throw new AureliaError(ErrorId.DomusClosed, 'the domus is shut down');
    if (!codec || typeof codec.decodeApp !== 'function') {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `taberna ${tabernaIdText(id)} needs a codec with decodeApp`,
      );
    }
    if (this.tabernae.has(id)) {
      throw new AureliaError(
        ErrorId.TabernaAlreadyRegistered,
        `taberna ${tabernaIdText(id)} is already registered on this domus`,
      );
    }
    checkOptions(id, options);
    const taberna = new Taberna<T>(id, codec, this, { ...options });
    this.tabernae.set(id, taberna as Taberna<unknown>);
    return taberna;
  }

  /** True when a taberna with this id is registered. */
  has(id: TabernaId): boolean {
    return this.tabernae.has(id);
  }

  /**
   * Routes a delivery to its taberna. An unknown id is refused with `UnknownTaberna` through the
   * delivery's sink, so local and remote senders hear the same answer.
   */
  deliver(dst: TabernaId, delivery: Delivery): void {
    const taberna = this.tabernae.get(dst);
    if (taberna) {
      taberna.deliver(delivery);
      return;
    }
    const decision = this.shutDown
      ? refusal(ErrorId.DomusClosed, 'the domus is shut down')
      : refusal(
          ErrorId.UnknownTaberna,
          `no taberna ${tabernaIdText(dst)} is registered at the destination; ${NOT_SERVED_THERE}`,
        );
    if (delivery.settle(decision)) this.host.onDecided(dst, delivery, decision);
  }

  /** Fails everything queued or pending in every taberna with `DomusClosed`. */
  /** The domus drains: each taberna refuses the remote requests its application has not taken. */
  refuseUntaken(reason: AureliaError): void {
    for (const taberna of this.tabernae.values()) taberna.refuseUntaken(reason);
  }

  shutdown(): void {
    this.shutDown = true;
    for (const taberna of this.tabernae.values()) taberna.shutdown();
  }

  stats(): RegistryStats {
    let backlog = 0;
    for (const taberna of this.tabernae.values()) backlog += taberna.backlog;
    return { tabernae: this.tabernae.size, backlog };
  }

  /** TabernaHost */
  queueSize(): number {
    return this.host.queueSize();
  }

  /** TabernaHost */
  acceptTimeoutMs(): number {
    return this.host.acceptTimeoutMs();
  }

  /** TabernaHost */
  overflowPerPeer(): number {
    return this.host.overflowPerPeer();
  }

  /** TabernaHost */
  onDecided(id: TabernaId, delivery: Delivery, decision: Decision): void {
    this.host.onDecided(id, delivery, decision);
  }

  /** TabernaHost */
  onClosed(taberna: Taberna<unknown>): void {
    if (this.tabernae.get(taberna.id) === taberna) this.tabernae.delete(taberna.id);
  }
}

function checkOptions(id: TabernaId, options: TabernaOptions): void {
  const check = (name: keyof TabernaOptions, max: number): void => {
    const value = options[name];
    if (value === undefined) return;
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `taberna ${tabernaIdText(id)}: ${name} must be an integer in 1..${max}, got ${String(value)}`,
      );
    }
  };
  check('queueSize', 1024);
  check('acceptTimeoutMs', 300_000);
}
