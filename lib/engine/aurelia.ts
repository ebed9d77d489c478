// The runtime entry point: builds domus and shuts them all down.
import { AureliaError, ErrorId } from './errors.js';
import { DomusAddr } from './addr.js';
import type { Pkcs8AuthConfig } from './auth.js';
import type { DomusConfig } from './config.js';
import { Domus, prepareDomus } from './domus.js';
import type { RouteResolver } from './resolver.js';
import type { DomusReportingFeeds } from './reporting/reporting.js';
import { type AureliaLogger, silentLogger } from './logger.js';

/**
 * Configures one domus. Nothing is checked or bound until `build()`, which validates the
 * configuration and the authentication material and binds the listener (when there is a listen
 * address).
 */
export class DomusBuilder {
  private log: AureliaLogger = silentLogger;

  /** Not for applications: use `Aurelia.domusBuilder`. */
  constructor(
    private readonly aurelia: Aurelia,
    private readonly config: DomusConfig,
    private readonly addr: DomusAddr | undefined,
    private readonly auth: Pkcs8AuthConfig,
    private readonly resolver: RouteResolver,
  ) {}

  /**
   * Sends the domus's lifecycle lines and background errors (dial failures, protocol violations,
   * refused handshakes) to `logger` — a Nest `Logger` works as is. Repeats of the same problem
   * are collapsed per `limitedLogIntervalMs`. Default: silent.
   */
  logger(logger: AureliaLogger): this {
    if (!logger || typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
      throw new AureliaError(ErrorId.InvalidConfig, 'the logger must have error, warn and log');
    }
    this.log = logger;
    return this;
  }

  /**
   * Validates everything, binds the listener (port 0 picks a free port; see `domus.localAddr`;
   * no listener without a listen address) and resolves with the running domus. Rejects with
   * `InvalidConfig` for a bad configuration, address, resolver or authentication material (the
   * message names the field or file) or when the address cannot be bound (no permission), and
   * with `AddressInUse` when another listener holds it.
   */
  async build(): Promise<Domus> {
    if (this.addr !== undefined && !(this.addr instanceof DomusAddr)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'the listen address must be a DomusAddr, or undefined for a domus that only calls out',
      );
    }
    if (!this.resolver || typeof this.resolver.resolve !== 'function') {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'the resolver must implement resolve(tabernaId)',
      );
    }
    const { config, auth } = prepareDomus(this.config, this.auth);
    return this.aurelia.adopt(config, auth, this.resolver, this.addr, this.log);
  }

  /** Like `build`, and also returns the live event and error feeds. */
  async buildWithReporting(): Promise<[Domus, DomusReportingFeeds]> {
    const domus = await this.build();
    return [domus, domus.reporting.feeds()];
  }
}

/**
 * Runtime owner and entry point. Builds domus with `domusBuilder(...)` and shuts every domus it
 * built down with `shutdown()`.
 */
export class Aurelia {
  private readonly domus = new Set<Domus>();
  /** Builds still binding their listener: a shutdown waits for them. */
  private readonly building = new Set<Promise<unknown>>();
  private closed = false;

  /**
   * Starts configuring a domus listening on `addr` with `auth`, routing sends through `resolver`.
   * With `addr` undefined the domus has no listener: it calls other domus (their replies come
   * back on the connections it dialed) but cannot host tabernae (see `Domus.hasListener`).
   */
  domusBuilder(
    config: DomusConfig,
    addr: DomusAddr | undefined,
    auth: Pkcs8AuthConfig,
    resolver: RouteResolver,
  ): DomusBuilder {
    return new DomusBuilder(this, config, addr, auth, resolver);
  }

  /** The domus built by this runtime and not yet shut down. */
  get running(): readonly Domus[] {
    return [...this.domus];
  }

  /**
   * Shuts down every domus this runtime built (gracefully, in parallel), including one whose
   * `build()` is still binding: that build rejects with `DomusClosed` once its domus is down.
   * Idempotent.
   */
  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.all([
      ...[...this.domus].map((d) => d.shutdown()),
      ...[...this.building].map((b) => b.then(noop, noop)),
    ]);
  }

  /** @internal */
  async adopt(
    config: DomusConfig,
    auth: Awaited<ReturnType<typeof prepareDomus>>['auth'],
    resolver: RouteResolver,
    addr: DomusAddr | undefined,
    logger: AureliaLogger = silentLogger,
  ): Promise<Domus> {
    if (this.closed) {
      throw new AureliaError(ErrorId.DomusClosed, 'this Aurelia runtime was shut down');
    }
    const domus = new Domus(config, auth, resolver, (d) => this.domus.delete(d), logger);
    const building = this.start(domus, addr);
    this.building.add(building);
    try {
      return await building;
    } finally {
      this.building.delete(building);
    }
  }

  private async start(domus: Domus, addr: DomusAddr | undefined): Promise<Domus> {
    await domus.start(addr);
    if (this.closed) {
      // shutdown() ran while the listener was binding: nobody else will ever close this domus.
      await domus.shutdown();
      throw new AureliaError(
        ErrorId.DomusClosed,
        'this Aurelia runtime was shut down while the domus was being built',
      );
    }
    this.domus.add(domus);
    return domus;
  }
}

function noop(): void {}
