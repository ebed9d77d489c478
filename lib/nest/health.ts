// The @nestjs/terminus health indicator of the module's domus (its own entry: terminus is optional).
import 'reflect-metadata';
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type { Subscription } from 'rxjs';
import { inspect } from 'node:util';
import { Aurelia } from '../engine/aurelia.js';
import { Domus } from '../engine/domus.js';
import { AureliaError, ErrorId } from '../engine/errors.js';

/** What `AureliaHealthIndicator.isHealthy` checks besides the listener. */
export interface AureliaHealthOptions {
  /**
   * Certificate identities (e.g. `spiffe://mesh/billing`) that must each have a live primary
   * callis with this domus, in either direction. Default: none.
   */
  readonly requiredPeers?: readonly string[];
  /**
   * How long before its certificate expires the domus reports down, in ms (0..31536000000;
   * default one day), so a renewal that never arrived is noticed while the certificate still works.
   */
  readonly expiryMarginMs?: number;
}

/** Default `AureliaHealthOptions.expiryMarginMs`: one day. */
export const DEFAULT_EXPIRY_MARGIN_MS = 86_400_000;
const EXPIRY_MARGIN_MAX_MS = 365 * 86_400_000;

/** Details reported with the indicator's status. */
export interface AureliaHealthDetails extends Record<string, unknown> {
  /** This domus's certificate identity. */
  readonly identity: string;
  /**
   * The bound listen address (as it was bound, also after shutdown); `'none'` for a domus built
   * without one (it only calls out).
   */
  readonly address: string;
  /** Whether the domus is running (and its listener bound, when it has one). */
  readonly listening: boolean;
  /** Identities with a live primary callis, sorted. */
  readonly connectedPeers: readonly string[];
  /** Required identities without a live primary callis, in the order they were required. */
  readonly missingPeers: readonly string[];
  /** When the certificate in force expires (ISO 8601). */
  readonly certificateExpiresAt: string;
  /** Why the status is down (absent when up). */
  readonly message?: string;
}

/**
 * A `@nestjs/terminus` health indicator for the domus of `AureliaModule`. Import it from
 * `aurelia-mesh/health` (not the main entry, so the package loads without terminus) and list it
 * in the `providers` of a module that imports `TerminusModule` and sees `AureliaModule`'s
 * providers:
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() {
 *   return this.health.check([
 *     () => this.mesh.isHealthy('mesh', { requiredPeers: ['spiffe://mesh/billing'] }),
 *   ]);
 * }
 * ```
 */
@Injectable()
export class AureliaHealthIndicator implements OnModuleDestroy {
  #stopping = false;
  readonly #subscription: Subscription;

  constructor(
    @Inject(Domus) private readonly domus: Domus,
    @Inject(Aurelia) private readonly aurelia: Aurelia,
    @Inject(HealthIndicatorService) private readonly indicators: HealthIndicatorService,
  ) {
    // A draining domus takes no new work, and the listener closes once shutdown drained; the
    // runtime forgets the domus only at the end of its shutdown.
    this.#subscription = domus.reporting.events$.subscribe((event) => {
      if (event.type === 'ShutdownStarted' || event.type === 'DrainStarted') this.#stopping = true;
    });
  }

  /**
   * The health of the domus under `key`: `up` while the domus runs (listener bound, no drain or
   * shutdown started), every identity in `options.requiredPeers` has a live primary callis
   * (`DomusReporting.connectedPeers()`) and the certificate in force is valid for longer than
   * `options.expiryMarginMs`; otherwise `down`. Either way the details name the identity,
   * address, connected and missing peers and the certificate's expiry (`AureliaHealthDetails`).
   * A drain or shutdown is seen within one event-loop turn of its start; a reloaded certificate at once.
   * Throws `AureliaError(InvalidConfig)` when `requiredPeers` is not an array of non-empty
   * strings or `expiryMarginMs` is out of range.
   */
  isHealthy<const Key extends string>(
    key: Key,
    options: AureliaHealthOptions = {},
  ): HealthIndicatorResult<Key> {
    const required = checkRequired(options.requiredPeers);
    const marginMs = checkMargin(options.expiryMarginMs);
    const session = this.indicators.check(key);
    const listening = !this.#stopping && this.aurelia.running.includes(this.domus);
    const connectedPeers = listening
      ? this.domus.reporting
          .connectedPeers()
          .filter((peer) => peer.primaryCallis > 0)
          .map((peer) => peer.identity)
          .sort()
      : [];
    const connected = new Set(connectedPeers);
    const missingPeers = required.filter((identity) => !connected.has(identity));
    const notAfter = this.domus.reporting.security.certificate?.notAfter ?? new Date(0);
    const details: AureliaHealthDetails = {
      identity: this.domus.identity,
      address: this.domus.hasListener ? this.domus.localAddr.toString() : 'none',
      listening,
      connectedPeers,
      missingPeers,
      certificateExpiresAt: notAfter.toISOString(),
    };
    if (!listening) {
      return session.down({ ...details, message: 'the domus is not running' });
    }
    if (missingPeers.length > 0) {
      return session.down({
        ...details,
        message: `no primary callis with ${missingPeers.join(', ')}`,
      });
    }
    if (notAfter.getTime() - Date.now() <= marginMs) {
      return session.down({
        ...details,
        message: `the certificate expires at ${details.certificateExpiresAt}, within the ${marginMs} ms margin: renew the certificate files`,
      });
    }
    return session.up(details);
  }

  /** Stops watching the domus's events. */
  onModuleDestroy(): void {
    this.#subscription.unsubscribe();
  }
}

function checkMargin(margin: unknown): number {
  if (margin === undefined) return DEFAULT_EXPIRY_MARGIN_MS;
  if (
    typeof margin !== 'number' ||
    !Number.isInteger(margin) ||
    margin < 0 ||
    margin > EXPIRY_MARGIN_MAX_MS
  ) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `expiryMarginMs must be an integer in 0..${EXPIRY_MARGIN_MAX_MS}, got ${inspect(margin)}`,
    );
  }
  return margin;
}

function checkRequired(required: unknown): readonly string[] {
  if (required === undefined) return [];
  if (
    !Array.isArray(required) ||
    !required.every((identity) => typeof identity === 'string' && identity !== '')
  ) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `requiredPeers must be an array of certificate identities, got ${inspect(required, { depth: 1 })}`,
    );
  }
  return required as readonly string[];
}
