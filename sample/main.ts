// `npm run sample`: makes the dev certificates on first run, starts orders, billing and audit as
// processes of their own, walks them through the scenario step by step, and stops them.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { PROCESSES, type ProcessName, SERVICES, serviceOf } from './contracts.js';
import { MESH_SETTINGS_ENV, type MeshSettings, PROCESS_ENV, since, trace } from './mesh.js';
import { ensureSamplePki } from './pki.js';
import { type FromService, type ToService, describeError } from './supervision.js';
import { type SampleSpan, SpanBoard, traceTree } from './tracing.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/**
 * Where the certificates live: `.sample-pki/` at the repository root (this file runs as
 * dist/sample/main.js), unless `AURELIA_SAMPLE_PKI_DIR` names another directory.
 */
const PKI_DIR = path.resolve(
  process.env.AURELIA_SAMPLE_PKI_DIR ?? path.join(HERE, '..', '..', '.sample-pki'),
);

/** The whole scenario, start-up and a replica's restart included, must finish within this. */
const RUN_BUDGET_MS = 40_000;
/** Longest wait for the services to start (Nest and the certificates load in each process). */
const START_MS = 15_000;
/** Longest wait for one step. */
const STEP_MS = 10_000;
/** Longest wait for a service to exit once asked to stop. */
const STOP_MS = 5_000;

/**
 * One step of the scenario: which process acts, and what the trace shows. A step that names a
 * process to `restart` runs as `<step>-start`, the restart of that process, then `<step>-finish`.
 */
interface ScenarioStep {
  readonly service: ProcessName;
  readonly step: string;
  readonly title: string;
  readonly restart?: ProcessName;
}

const SCENARIO: readonly ScenarioStep[] = [
  {
    service: 'orders',
    step: 'charge',
    title: 'send() with a reply — orders charges two orders at billing',
  },
  {
    service: 'audit',
    step: 'charge-as-audit',
    title: "a guard on the caller's certificate — billing refuses a charge from audit",
  },
  {
    service: 'orders',
    step: 'record',
    title: 'emit() accepted — orders adds a record to the audit trail',
  },
  {
    service: 'orders',
    step: 'record-invalid',
    title: 'emit() rejected — audit refuses an invalid record',
  },
  {
    service: 'orders',
    step: 'statement',
    title: 'a streamed reply — billing returns a statement line by line',
  },
  {
    service: 'orders',
    step: 'quotes',
    title: 'replicas — billing-2 restarts while orders asks both billing replicas for quotes',
    restart: 'billing-2',
  },
  {
    service: 'orders',
    step: 'archive',
    title: 'a file as a blob — orders archives 4 MiB at audit, both sides hash it',
  },
  { service: 'orders', step: 'metrics', title: 'reporting — what the orders domus counted' },
];

/** Callers stop before the services they call, so no call is left waiting on a stopped service. */
const STOP_ORDER: readonly ProcessName[] = ['orders', 'audit', 'billing-2', 'billing'];

/** One service process and the waits on it, each bounded. */
class ServiceProcess {
  private readonly child: ChildProcess;
  private exit: string | undefined;
  private exitCode: number | null = null;
  private nextStepId = 1;

  constructor(
    readonly name: ProcessName,
    settings: MeshSettings,
    onSpan: (span: SampleSpan) => void,
  ) {
    this.child = fork(path.join(HERE, `${serviceOf(name)}.js`), [], {
      env: {
        ...process.env,
        [MESH_SETTINGS_ENV]: JSON.stringify(settings),
        [PROCESS_ENV]: name,
      },
      // Services write the trace straight to our stdout, so lines stay in the order they happen.
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (message: FromService) => {
      if (message.kind === 'span') onSpan(message.span);
    });
    this.child.once('exit', (code, signal) => {
      this.exitCode = code;
      this.exit = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
    });
    this.child.on('error', (err) => {
      this.exit ??= `could not be started: ${err.message}`;
    });
  }

  /** Resolves once the service listens; rejects if it fails to start, exits, or takes too long. */
  async ready(timeoutMs: number): Promise<void> {
    const message = await this.waitFor(
      (m) => m.kind === 'ready' || m.kind === 'failed',
      'start',
      timeoutMs,
    );
    if (message.kind === 'failed')
      throw new Error(`${this.name} failed to start: ${message.error}`);
  }

  /** Runs one step in the service; rejects with the service's error when the step failed. */
  async run(step: string, timeoutMs: number): Promise<void> {
    const id = this.nextStepId++;
    this.send({ kind: 'run', step, id });
    const done = await this.waitFor(
      (m) => m.kind === 'done' && m.id === id,
      `finish '${step}'`,
      timeoutMs,
    );
    if (done.kind === 'done' && done.error !== undefined) {
      throw new Error(`${this.name} '${step}': ${done.error}`);
    }
  }

  /**
   * Asks the service to close and waits for its process to end. One still running after
   * `STOP_MS` has left something open: it is killed and the stop fails.
   */
  async stop(): Promise<void> {
    if (this.exit === undefined) {
      this.requestStop();
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_MS);
      });
      const late = await Promise.race([exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        this.child.kill('SIGKILL');
        throw new Error(`${this.name} did not exit within ${STOP_MS} ms of stopping`);
      }
    }
    if (this.exitCode !== 0) throw new Error(`${this.name} ${this.exit ?? 'did not exit'}`);
  }

  /** Asks the service to close, without waiting (see `stop`). */
  requestStop(): void {
    this.send({ kind: 'stop' });
  }

  private send(message: ToService): void {
    if (this.child.connected) this.child.send(message);
  }

  private waitFor(
    match: (message: FromService) => boolean,
    what: string,
    timeoutMs: number,
  ): Promise<FromService> {
    return new Promise((resolve, reject) => {
      if (this.exit !== undefined) {
        reject(new Error(`${this.name} ${this.exit} before it could ${what}`));
        return;
      }
      const finish = (err: Error | undefined, message?: FromService): void => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
        if (err) reject(err);
        else resolve(message!);
      };
      const onMessage = (message: FromService): void => {
        if (match(message)) finish(undefined, message);
      };
      const onExit = (): void =>
        finish(new Error(`${this.name} ${this.exit ?? 'exited'} before it could ${what}`));
      const timer = setTimeout(
        () => finish(new Error(`${this.name} did not ${what} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.child.on('message', onMessage);
      // Registered after the 'exit' listener of the constructor, so `this.exit` is already set.
      this.child.on('exit', onExit);
    });
  }
}

async function main(): Promise<number> {
  const startedAt = performance.now();
  const deadline = startedAt + RUN_BUDGET_MS;
  const remaining = (capMs: number): number =>
    Math.max(0, Math.min(capMs, deadline - performance.now()));
  const services = new Map<ProcessName, ServiceProcess>();
  // Ctrl-C or a SIGTERM stops the services and ends the run early, still cleaning up.
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    for (const service of services.values()) service.requestStop();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const pki = await ensureSamplePki(PKI_DIR, SERVICES);
  const where = displayPath(PKI_DIR);
  trace(
    'main',
    pki.created
      ? `certificates: ${pki.reason}, so made a dev CA and certificates for ${SERVICES.join(', ')} in ${where}`
      : `certificates: reusing ${where} (valid until ${pki.notAfter.toISOString()})`,
  );

  // A private directory (mode 0700) for the services' Unix sockets: no ports to collide on.
  const runDir = await mkdtemp(path.join(os.tmpdir(), 'aurelia-sample-'));
  const settings: MeshSettings = { pkiDir: PKI_DIR, runDir };
  const spans = new SpanBoard();
  const onSpan = (span: SampleSpan): void => spans.add(span);
  if (!interrupted) {
    for (const name of PROCESSES) services.set(name, new ServiceProcess(name, settings, onSpan));
  }

  let failure: unknown;
  try {
    await Promise.all([...services.values()].map((service) => service.ready(remaining(START_MS))));
    trace('main', `${PROCESSES.join(', ')} are up, each in its own process (${since(startedAt)})`);
    for (const [index, { service, step, title, restart }] of SCENARIO.entries()) {
      if (interrupted) break;
      trace('main', `step ${index + 1}/${SCENARIO.length}: ${title}`);
      const actor = services.get(service)!;
      if (restart === undefined) {
        await actor.run(step, remaining(STEP_MS));
      } else {
        await actor.run(`${step}-start`, remaining(STEP_MS));
        await restartProcess(restart, services, settings, onSpan, remaining);
        await actor.run(`${step}-finish`, remaining(STEP_MS));
      }
      if (step === 'charge') await printTrace(spans, remaining(STEP_MS));
    }
  } catch (err) {
    failure = err;
  }
  for (const name of STOP_ORDER) {
    try {
      await services.get(name)?.stop();
    } catch (err) {
      failure ??= err;
    }
  }
  await rm(runDir, { recursive: true, force: true });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);

  if (interrupted) {
    trace('main', 'interrupted');
    return 130;
  }
  if (failure !== undefined) {
    trace('main', `FAILED: ${describeError(failure)}`);
    return 1;
  }
  trace(
    'main',
    `done in ${since(startedAt)}: every step behaved as expected, all services stopped`,
  );
  return 0;
}

/**
 * Stops process `name` as a deployment would (its application closes: it drains first) and
 * starts it again at the same address, while the traffic of the current step goes on.
 */
async function restartProcess(
  name: ProcessName,
  services: Map<ProcessName, ServiceProcess>,
  settings: MeshSettings,
  onSpan: (span: SampleSpan) => void,
  remaining: (capMs: number) => number,
): Promise<void> {
  const stoppedAt = performance.now();
  trace('main', `stopping ${name} in the middle of the traffic`);
  await services.get(name)!.stop();
  trace('main', `${name} stopped (${since(stoppedAt)}); starting it again`);
  const again = new ServiceProcess(name, settings, onSpan);
  services.set(name, again);
  await again.ready(remaining(START_MS));
  trace('main', `${name} is back (${since(stoppedAt)} after the stop began)`);
}

/**
 * Prints the trace of charge #1, put together from the spans orders and billing reported: the
 * `checkout` span orders started, the client span of its `send()`, billing's server span.
 */
async function printTrace(board: SpanBoard, timeoutMs: number): Promise<void> {
  const spans = await board.trace('checkout #1', 3, timeoutMs);
  trace('main', `trace of charge #1 (trace id ${spans[0]!.traceId}):`);
  for (const line of traceTree(spans)) trace('main', `  ${line}`);
}

/** `dir` relative to the working directory when inside it, else absolute. */
function displayPath(dir: string): string {
  const relative = path.relative(process.cwd(), dir);
  const outside = relative === '' || relative.startsWith('..') || path.isAbsolute(relative);
  return outside ? dir : `${relative}/`;
}

process.exitCode = await main().catch((err: unknown) => {
  trace('main', `FAILED: ${describeError(err)}`);
  return 1;
});
