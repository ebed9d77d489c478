// AureliaModule: one domus per application, its client, server and reporting as providers.
import 'reflect-metadata';
import {
  type DynamicModule,
  type FactoryProvider,
  Inject,
  Injectable,
  Module,
  type ModuleMetadata,
  type OnApplicationShutdown,
  type Provider,
} from '@nestjs/common';
import { Aurelia } from '../engine/aurelia.js';
import { Domus } from '../engine/domus.js';
import type { AureliaMetricsRegistration } from '../engine/reporting/prometheus.js';
import { DomusReporting } from '../engine/reporting/reporting.js';
import { AureliaServer } from './aurelia.server.js';
import { ClientAurelia } from './client-aurelia.js';
import type { AureliaModuleOptions, ResolvedAureliaOptions } from './options.js';
import { registerModuleMetrics } from './observability.js';
import { buildDomus, resolveOnce } from './runtime.js';
import { AURELIA_ERRORS, AURELIA_EVENTS, AURELIA_METRICS, AURELIA_OPTIONS } from './tokens.js';

/** Options of `AureliaModule.forRoot`. */
export interface AureliaModuleRootOptions extends AureliaModuleOptions {
  /** Registers the providers globally (no need to import the module in feature modules). */
  readonly isGlobal?: boolean;
}

/** Options of `AureliaModule.forRootAsync` (works with `ConfigModule` / `ConfigService`). */
export interface AureliaModuleAsyncOptions {
  /** Modules whose providers the factory injects (for example `ConfigModule`). */
  readonly imports?: ModuleMetadata['imports'];
  /** Tokens passed to `useFactory`, in order. */
  readonly inject?: FactoryProvider['inject'];
  /** Returns the module options (may be async). */
  readonly useFactory: (...args: never[]) => AureliaModuleOptions | Promise<AureliaModuleOptions>;
  /** Registers the providers globally. */
  readonly isGlobal?: boolean;
}

/** Token of the module's Prometheus registration (`undefined` when not enabled). */
const AURELIA_PROMETHEUS = Symbol('AURELIA_PROMETHEUS');

/**
 * Shuts the domus down (after the server and the client) when the application shuts down, then
 * removes its Prometheus series and closes the DNS SRV resolver.
 */
@Injectable()
class AureliaLifecycle implements OnApplicationShutdown {
  constructor(
    @Inject(Aurelia) private readonly aurelia: Aurelia,
    @Inject(ClientAurelia) private readonly client: ClientAurelia,
    @Inject(AureliaServer) private readonly server: AureliaServer,
    @Inject(AURELIA_OPTIONS) private readonly options: ResolvedAureliaOptions,
    @Inject(AURELIA_PROMETHEUS)
    private readonly prometheus: AureliaMetricsRegistration | undefined,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    try {
      await this.server.close();
      await this.client.close();
      await this.aurelia.shutdown();
    } finally {
      this.prometheus?.dispose();
      this.options.discovery?.close();
    }
  }
}

/**
 * Wires Aurelia into a Nest application: validates the options (an invalid one fails the
 * bootstrap with `AureliaError(InvalidConfig)` naming it), builds and binds one domus, and
 * provides `Aurelia`, `Domus`, `DomusReporting`, `ClientAurelia` (connected), `AureliaServer`
 * (pass it to `app.connectMicroservice({ strategy })`) and the Observables `AURELIA_EVENTS`,
 * `AURELIA_ERRORS`, `AURELIA_METRICS`. The domus logs through a Nest `Logger` (context
 * `'Aurelia'`) unless the `logger` option says otherwise, registers its metrics with prom-client
 * when `metrics.prometheus` is set, and resolves targets through DNS SRV with `discovery`. The
 * domus shuts down with the application (`app.close()` or, with `enableShutdownHooks()`, a
 * signal), its Prometheus series are removed and the DNS resolver is closed.
 */
@Module({})
export class AureliaModule {
  /** The module for fixed options. */
  static forRoot(options: AureliaModuleRootOptions): DynamicModule {
    const { isGlobal, ...rest } = options;
    return AureliaModule.build(
      [{ provide: AURELIA_OPTIONS, useFactory: () => resolveOnce(rest) }],
      [],
      isGlobal,
    );
  }

  /** The module for options computed by a factory (e.g. from `ConfigService`). */
  static forRootAsync(options: AureliaModuleAsyncOptions): DynamicModule {
    return AureliaModule.build(
      [
        {
          provide: AURELIA_OPTIONS,
          useFactory: async (...args: never[]) => resolveOnce(await options.useFactory(...args)),
          inject: options.inject ?? [],
        },
      ],
      options.imports ?? [],
      options.isGlobal,
    );
  }

  private static build(
    optionsProviders: Provider[],
    imports: NonNullable<ModuleMetadata['imports']>,
    isGlobal: boolean | undefined,
  ): DynamicModule {
    const providers: Provider[] = [
      ...optionsProviders,
      { provide: Aurelia, useFactory: () => new Aurelia() },
      {
        provide: Domus,
        useFactory: (aurelia: Aurelia, options: ResolvedAureliaOptions) =>
          buildDomus(aurelia, options),
        inject: [Aurelia, AURELIA_OPTIONS],
      },
      { provide: DomusReporting, useFactory: (domus: Domus) => domus.reporting, inject: [Domus] },
      {
        provide: AURELIA_EVENTS,
        useFactory: (r: DomusReporting) => r.events$,
        inject: [DomusReporting],
      },
      {
        provide: AURELIA_ERRORS,
        useFactory: (r: DomusReporting) => r.errors$,
        inject: [DomusReporting],
      },
      {
        provide: AURELIA_METRICS,
        useFactory: (r: DomusReporting, options: ResolvedAureliaOptions) =>
          r.metrics$(options.metricsIntervalMs),
        inject: [DomusReporting, AURELIA_OPTIONS],
      },
      {
        provide: ClientAurelia,
        useFactory: async (domus: Domus, options: ResolvedAureliaOptions, aurelia: Aurelia) => {
          const client = new ClientAurelia(domus, {
            codec: options.codec,
            client: options.client,
            requestTimeoutMs: options.requestTimeoutMs,
          });
          try {
            await client.connect();
          } catch (err) {
            // A failed bootstrap must not leave the listener bound.
            await aurelia.shutdown();
            throw err;
          }
          return client;
        },
        inject: [Domus, AURELIA_OPTIONS, Aurelia],
      },
      {
        // Registered after the client connected (it is injected for that order only), so a
        // failed bootstrap never leaves series behind for a domus that was shut down.
        provide: AURELIA_PROMETHEUS,
        useFactory: async (
          domus: Domus,
          options: ResolvedAureliaOptions,
          aurelia: Aurelia,
          _client: ClientAurelia,
        ) => {
          try {
            return registerModuleMetrics(domus, options);
          } catch (err) {
            // A failed bootstrap must not leave the listener bound.
            await aurelia.shutdown();
            throw err;
          }
        },
        inject: [Domus, AURELIA_OPTIONS, Aurelia, ClientAurelia],
      },
      {
        provide: AureliaServer,
        useFactory: (domus: Domus, options: ResolvedAureliaOptions) =>
          new AureliaServer(domus, {
            codec: options.codec,
            server: options.server,
            authorization: options.authorization,
            logger: options.logger,
          }),
        inject: [Domus, AURELIA_OPTIONS],
      },
      AureliaLifecycle,
    ];
    return {
      module: AureliaModule,
      global: isGlobal ?? false,
      imports,
      providers,
      exports: [
        Aurelia,
        Domus,
        DomusReporting,
        ClientAurelia,
        AureliaServer,
        AURELIA_EVENTS,
        AURELIA_ERRORS,
        AURELIA_METRICS,
      ],
    };
  }
}
