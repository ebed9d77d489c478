// Replicas of a Nest billing service in child processes (`replica-process.mjs`), and the calls a
// test makes to them through one ClientAurelia, with a ledger of both sides.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { lastValueFrom } from 'rxjs';
import { AureliaError } from '../../lib/index.js';
import type { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { builtEntry, repoRoot } from './built.js';
import type { TestPkiFiles } from './pki.js';
import { EventQueue, within } from './transport.js';

const script = path.join(repoRoot, 'test', 'support', 'replica-process.mjs');

/** Where every handled call and event went, across every process a test started. */
export class ReplicaLedger {
  /** billing.charge handlers started, by key: the replicas that ran them (one, or it ran twice). */
  readonly calls = new Map<string, string[]>();
  /** billing.record handlers run, by key. */
  readonly events = new Map<string, string[]>();

  record(kind: 'call' | 'event', key: string, replica: string): void {
    const book = kind === 'call' ? this.calls : this.events;
    const list = book.get(key);
    if (list) list.push(replica);
    else book.set(key, [replica]);
  }

  /** Keys some handler ran more than once (in any replicas). */
  duplicates(): string[] {
    const out: string[] = [];
    for (const book of [this.calls, this.events]) {
      for (const [key, replicas] of book) if (replicas.length > 1) out.push(key);
    }
    return out;
  }

  /** How many handlers of either kind `replica` ran. */
  servedBy(replica: string): number {
    let n = 0;
    for (const book of [this.calls, this.events]) {
      for (const replicas of book.values()) n += replicas.filter((r) => r === replica).length;
    }
    return n;
  }
}

/** One replica process: `replica-process.mjs` on a fixed address, read line by line. */
export class ReplicaProcess {
  readonly ready = new EventQueue<string>('the replica to serve');
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly unexpected: string[] = [];
  stopped = false;
  private stderr = '';

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    ledger: ReplicaLedger,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const space = line.indexOf(' ');
      const word = space < 0 ? line : line.slice(0, space);
      const rest = line.slice(space + 1);
      if (word === 'ready') this.ready.push(rest);
      else if (word === 'call' || word === 'event') ledger.record(word, rest, name);
      else if (word === 'stopped') this.stopped = true;
      else this.unexpected.push(line);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal })),
    );
  }

  /**
   * Starts replica `name` listening on `listen` with the certificate in `files`; resolves once it
   * serves. `delayMs` slows every handler; `config` patches its module config.
   */
  static async start(
    name: string,
    listen: string,
    files: TestPkiFiles,
    ledger: ReplicaLedger,
    options: { delayMs?: number; config?: Record<string, unknown> } = {},
  ): Promise<ReplicaProcess> {
    const child = spawn(process.execPath, [script], {
      env: {
        ...process.env,
        AURELIA_ENTRY: builtEntry,
        AURELIA_SERVER_DIR: files.dir,
        REPLICA_NAME: name,
        REPLICA_LISTEN: listen,
        REPLICA_DELAY_MS: String(options.delayMs ?? 0),
        AURELIA_CONFIG: JSON.stringify(options.config ?? {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const replica = new ReplicaProcess(name, child, ledger);
    await Promise.race([
      replica.ready.next(20_000),
      replica.exited.then(({ code, signal }) => {
        throw new Error(`replica ${name} exited (${code ?? signal}): ${replica.stderr}`);
      }),
    ]);
    return replica;
  }

  /** Sends `signal` and resolves when the process is gone (within 20 s). */
  async stop(
    signal: NodeJS.Signals,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return within(this.exited, 20_000, `replica ${this.name} to exit on ${signal}`);
  }

  /** Kills the process if it still runs (test cleanup). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  get errors(): string {
    return this.stderr;
  }
}

/** How one call or emit of a `Traffic` ended. */
export interface TrafficOutcome {
  readonly key: string;
  readonly kind: 'call' | 'event';
  /** When it started (`Date.now()`). */
  readonly startedAt: number;
  /** `'ok'`, or the `ErrorId` name of its failure (anything else is recorded as `'other: …'`). */
  readonly result: string;
  /** For a successful call: the replica that answered. */
  readonly replica?: string;
}

/**
 * `loops` concurrent loops, half calling `billing.charge`, half emitting `billing.record`, each
 * with a fresh key, until `stop()`.
 */
export class Traffic {
  readonly outcomes: TrafficOutcome[] = [];
  private running = true;
  private next = 0;
  private readonly done: Promise<void>;

  constructor(
    private readonly client: ClientAurelia,
    loops: number,
  ) {
    this.done = Promise.all(
      Array.from({ length: loops }, (_, i) => this.loop(i % 2 === 0 ? 'call' : 'event')),
    ).then(() => undefined);
  }

  /** Outcomes so far that are not `'ok'`. */
  get failed(): TrafficOutcome[] {
    return this.outcomes.filter((o) => o.result !== 'ok');
  }

  /** Successful calls answered by `replica` so far. */
  answeredBy(replica: string): number {
    return this.outcomes.filter((o) => o.replica === replica).length;
  }

  /** Stops the loops and resolves once every call and emit in flight settled. */
  async stop(): Promise<void> {
    this.running = false;
    await within(this.done, 30_000, 'the traffic in flight to settle');
  }

  private async loop(kind: 'call' | 'event'): Promise<void> {
    while (this.running) {
      const key = `${kind}-${this.next++}`;
      const startedAt = Date.now();
      try {
        if (kind === 'call') {
          const answer = await lastValueFrom(
            this.client.send<{ replica: string; key: string }>('billing.charge', { key }),
          );
          const result = answer.key === key ? 'ok' : `other: answer for ${answer.key}`;
          this.outcomes.push({ key, kind, startedAt, result, replica: answer.replica });
        } else {
          await lastValueFrom(this.client.emit('billing.record', { key }), {
            defaultValue: undefined,
          });
          this.outcomes.push({ key, kind, startedAt, result: 'ok' });
        }
      } catch (err) {
        const result = AureliaError.is(err) ? err.kindName : `other: ${String(err)}`;
        this.outcomes.push({ key, kind, startedAt, result });
      }
    }
  }
}

/** Counts outcomes by result: `{ ok: 1200, OutcomeUnknown: 3 }`. */
export function tally(outcomes: readonly TrafficOutcome[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of outcomes) out[o.result] = (out[o.result] ?? 0) + 1;
  return out;
}
