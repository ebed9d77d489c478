// Where a sample service listens, which certificate it presents, whom it routes to, and its trace.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { INestMicroservice, LoggerService, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { AureliaError, AureliaServer, ErrorId, type AureliaModuleOptions } from 'aurelia-mesh';
import { type ProcessName, type ServiceName, serviceOf } from './contracts.js';

/** Environment variable through which `main.ts` tells each service where the mesh lives. */
export const MESH_SETTINGS_ENV = 'AURELIA_SAMPLE_MESH';
/** Environment variable naming the process a service runs as (`billing-2` for the replica). */
export const PROCESS_ENV = 'AURELIA_SAMPLE_PROCESS';

/** Where the mesh lives on this machine; `main.ts` decides, every service reads the same. */
export interface MeshSettings {
  /** Directory with `ca.pem` and `<service>.pem` / `<service>-key.pem`. */
  readonly pkiDir: string;
  /** Private directory (mode 0700) holding one Unix socket per service for this run. */
  readonly runDir: string;
}

/**
 * Reads the settings `main.ts` passed in `AURELIA_SAMPLE_MESH`. Throws `AureliaError(InvalidConfig)`
 * when the service was started some other way.
 */
export function readMeshSettings(): MeshSettings {
  const raw = process.env[MESH_SETTINGS_ENV];
  let settings: Partial<MeshSettings> | undefined;
  try {
    settings = raw === undefined ? undefined : (JSON.parse(raw) as Partial<MeshSettings>);
  } catch {
    settings = undefined;
  }
  if (typeof settings?.pkiDir !== 'string' || typeof settings.runDir !== 'string') {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${MESH_SETTINGS_ENV} is missing or malformed; start the sample with 'npm run sample'`,
    );
  }
  return { pkiDir: settings.pkiDir, runDir: settings.runDir };
}

/**
 * The process this service runs as, from `AURELIA_SAMPLE_PROCESS` (`main.ts` sets it); `service`
 * itself when unset. Throws `AureliaError(InvalidConfig)` for a process of another service.
 */
export function processName(service: ServiceName): ProcessName {
  const name = (process.env[PROCESS_ENV] ?? service) as ProcessName;
  if (serviceOf(name) !== service) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${PROCESS_ENV}=${name} is not a process of ${service}; start the sample with 'npm run sample'`,
    );
  }
  return name;
}

/**
 * The address a process listens on: a Unix socket in the run directory, so runs never collide
 * on ports. TLS runs over it exactly as over TCP; `tls://10.0.0.5:7000` would work the same.
 */
export function addressOf(settings: MeshSettings, name: ProcessName): string {
  return `unix://${path.join(settings.runDir, `${name}.sock`)}`;
}

/** The process listening at `address` (an `addressOf` address), for the trace. */
export function processAt(address: string): string {
  return path.basename(address, '.sock');
}

/**
 * `AureliaModule` options of `service` running as process `name`: its listen address, its
 * service's certificate and key (the CA verifies every peer; replicas share one), and a route
 * for every pattern it calls — to one process, or to several replicas the calls are balanced
 * over. Deadlines are short because everything runs on one machine: no call waits more than
 * 5 s, a stopping service gives the calls it accepted 3 s to finish (`drainTimeoutMs`), and a
 * replica that went away is tried again within a second.
 */
export function meshOptions(
  settings: MeshSettings,
  service: ServiceName,
  routes: Readonly<Record<string, ProcessName | readonly ProcessName[]>> = {},
  name: ProcessName = service,
): AureliaModuleOptions {
  const to = (target: ProcessName | readonly ProcessName[]): string | string[] =>
    typeof target === 'string'
      ? addressOf(settings, target)
      : target.map((replica) => addressOf(settings, replica));
  return {
    listen: addressOf(settings, name),
    auth: {
      ca: path.join(settings.pkiDir, 'ca.pem'),
      cert: path.join(settings.pkiDir, `${service}.pem`),
      key: path.join(settings.pkiDir, `${service}-key.pem`),
    },
    routes: Object.fromEntries(
      Object.entries(routes).map(([pattern, target]) => [pattern, to(target)]),
    ),
    requestTimeoutMs: 5000,
    config: {
      sendTimeoutMs: 5000,
      callisConnectTimeoutMs: 2000,
      drainTimeoutMs: 3000,
      // A replica that is gone is tried again soon: a restart here takes a second or two.
      replicaEjectionMs: 250,
      replicaMaxEjectionMs: 1000,
    },
    logger: traceLogger(name),
  };
}

/**
 * The domus's own log lines (lifecycle, and background problems such as a dropped connection)
 * written into the trace; any Nest `LoggerService` works here, e.g. a pino adapter.
 */
export function traceLogger(service: ProcessName): LoggerService {
  const line =
    (level: string) =>
    (message: unknown): void =>
      trace(service, `aurelia ${level}: ${String(message)}`);
  return { log: line('log'), warn: line('warn'), error: line('error') };
}

/**
 * Starts `module` as a standalone Nest microservice served by the `AureliaServer` its
 * `AureliaModule` provides, so the handlers and `ClientAurelia` share one domus (one listener,
 * one certificate identity). Nest's own start-up lines are left out of the trace; warnings and
 * errors still show.
 */
export async function startService(module: Type): Promise<INestMicroservice> {
  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(module, {
    inject: [AureliaServer],
    useFactory: (server: AureliaServer) => ({ strategy: server }),
    logger: ['error', 'warn'],
    // A failed bootstrap rejects (and is reported) instead of aborting the process.
    abortOnError: false,
  });
  await app.listen();
  return app;
}

/** Prints one line of the trace, prefixed with the service that speaks. */
export function trace(service: ProcessName | 'main', text: string): void {
  process.stdout.write(`[${service}] ${text}\n`);
}

/** Milliseconds since `startedAt` (a `performance.now()` value), for the trace. */
export function since(startedAt: number): string {
  return `${(performance.now() - startedAt).toFixed(1)} ms`;
}
