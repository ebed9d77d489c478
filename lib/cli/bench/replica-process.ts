// Replica servers of the replicas workload, each a child process of the bench: started, asked for
// their counts and stopped with bounded waits, and killed whatever way the bench ends.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { AureliaError, ErrorId } from '../../engine/errors.js';

/** What the bench tells a replica server to start with (its first and only instruction). */
export interface ReplicaStart {
  readonly type: 'start';
  /** PEM material of the identity every replica shares. */
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** The taberna id the replica hosts. */
  readonly taberna: string;
}

/** What the bench asks a running replica server. */
export type ReplicaRequest = ReplicaStart | { readonly type: 'count'; readonly id: number };

/** What a replica server answers. */
export type ReplicaReply =
  | { readonly type: 'ready'; readonly port: number }
  | {
      readonly type: 'count';
      readonly id: number;
      readonly accepted: number;
      /** CPU time the replica process used so far (user + system), in µs. */
      readonly cpuUs: number;
    }
  | { readonly type: 'failed'; readonly message: string };

/** What a replica server counted so far. */
export interface ReplicaCounts {
  /** Messages its application accepted. */
  readonly accepted: number;
  /** CPU time its process used (user + system), in µs. */
  readonly cpuUs: number;
}

/** Bounds of every wait on a replica process, in ms. */
export interface ReplicaTimeouts {
  /** From fork to listening. */
  readonly startMs: number;
  /** One question (its count) answered. */
  readonly answerMs: number;
  /** From SIGTERM to exit, before SIGKILL. */
  readonly stopMs: number;
}

/** The bounds the bench uses. */
export const REPLICA_TIMEOUTS: ReplicaTimeouts = {
  startMs: 20_000,
  answerMs: 5_000,
  stopMs: 5_000,
};

/** How long to wait for the exit a SIGKILL causes. */
const KILL_WAIT_MS = 2_000;

/**
 * The replica server's script: the built `replica-server.js` beside this module, or — when this
 * module runs from its TypeScript source (the test runner) — the one in `dist/`. Throws
 * `AureliaError(InvalidConfig)` when it is missing (the package was not built).
 */
export function replicaServerScript(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = path.dirname(here);
  const script = here.endsWith('.ts')
    ? path.resolve(dir, '..', '..', '..', 'dist', 'lib', 'cli', 'bench', 'replica-server.js')
    : path.join(dir, 'replica-server.js');
  if (!existsSync(script)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `the replica server ${script} is missing: run \`npm run build\` first`,
    );
  }
  return script;
}

/**
 * Every live replica process of this bench process. On SIGINT, SIGTERM or exit each is killed
 * with SIGKILL before the bench process goes, so an interrupted run leaves no server behind (the
 * children also exit by themselves once their IPC channel to the bench closes).
 */
class Reaper {
  private readonly children = new Set<ChildProcess>();

  get size(): number {
    return this.children.size;
  }

  private readonly onExit = (): void => this.killAll();

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.killAll();
    this.uninstall();
    // Default behaviour once the children are gone: the signal ends this process.
    process.kill(process.pid, signal);
  };

  add(child: ChildProcess): void {
    if (this.children.size === 0) {
      process.on('exit', this.onExit);
      process.once('SIGINT', this.onSignal);
      process.once('SIGTERM', this.onSignal);
    }
    this.children.add(child);
  }

  remove(child: ChildProcess): void {
    if (!this.children.delete(child) || this.children.size > 0) return;
    this.uninstall();
  }

  private uninstall(): void {
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }

  private killAll(): void {
    for (const child of this.children) if (child.exitCode === null) child.kill('SIGKILL');
  }
}

const reaper = new Reaper();

/** Replica processes started and not yet reaped (stopped or killed) in this process. */
export function liveReplicaProcesses(): number {
  return reaper.size;
}

/** Resolves with `promise`, or rejects with `AureliaError(SendTimeout)` naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new AureliaError(ErrorId.SendTimeout, `${what} took over ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One replica server in a child process running the built package. */
export class ReplicaProcess {
  private nextQuestion = 1;
  private readonly answers = new Map<number, (counts: ReplicaCounts) => void>();
  private stderr = '';
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    /** Its name in messages, e.g. `replica 2`. */
    readonly name: string,
    private readonly timeouts: ReplicaTimeouts,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-2000);
    });
    child.on('message', (reply: ReplicaReply) => {
      if (reply.type === 'count') {
        this.answers.get(reply.id)?.({ accepted: reply.accepted, cpuUs: reply.cpuUs });
      }
    });
    // A child that is gone fails what it was asked instead of leaving it waiting.
    child.on('error', () => undefined);
  }

  /** The port on 127.0.0.1 the replica listens on (TLS). */
  port = 0;

  /**
   * Forks `script` and starts a replica with `start`; resolves once it listens. Rejects with
   * `AureliaError(PeerUnavailable)` when it fails or exits first and `SendTimeout` when it is not
   * listening within `timeouts.startMs`; the child is killed and reaped before either rejection.
   */
  static async start(
    script: string,
    name: string,
    start: ReplicaStart,
    timeouts: ReplicaTimeouts = REPLICA_TIMEOUTS,
  ): Promise<ReplicaProcess> {
    const child = fork(script, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    reaper.add(child);
    const replica = new ReplicaProcess(child, name, timeouts);
    try {
      const ready = new Promise<number>((resolve, reject) => {
        child.on('message', (reply: ReplicaReply) => {
          if (reply.type === 'ready') resolve(reply.port);
          else if (reply.type === 'failed') {
            reject(new AureliaError(ErrorId.PeerUnavailable, `${name} failed: ${reply.message}`));
          }
        });
        child.once('exit', (code, signal) =>
          reject(
            new AureliaError(
              ErrorId.PeerUnavailable,
              `${name} exited (${signal ?? `code ${code}`}) before listening${replica.stderrTail()}`,
            ),
          ),
        );
        child.once('error', (err) =>
          reject(new AureliaError(ErrorId.PeerUnavailable, `${name}: ${err.message}`)),
        );
      });
      child.send(start);
      replica.port = await within(ready, timeouts.startMs, `starting ${name}`);
      return replica;
    } catch (err) {
      await replica.kill();
      throw err;
    }
  }

  /**
   * How many messages the replica accepted so far, and the CPU time it used. Rejects with `AureliaError(SendTimeout)` when
   * it does not answer within `timeouts.answerMs`, `PeerUnavailable` when it is gone.
   */
  async counts(): Promise<ReplicaCounts> {
    if (!this.child.connected) {
      throw new AureliaError(ErrorId.PeerUnavailable, `${this.name} is gone${this.stderrTail()}`);
    }
    const id = this.nextQuestion++;
    const answer = new Promise<ReplicaCounts>((resolve) => this.answers.set(id, resolve));
    try {
      this.child.send({ type: 'count', id } satisfies ReplicaRequest);
      return await within(answer, this.timeouts.answerMs, `asking ${this.name} for its count`);
    } finally {
      this.answers.delete(id);
    }
  }

  /**
   * Stops the replica: SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within
   * `timeouts.stopMs`. Resolves once it exited or the kill wait ran out; never rejects.
   */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const stopped = await within(this.exited, this.timeouts.stopMs, 'stop').then(
        () => true,
        () => false,
      );
      if (!stopped) await this.kill();
    }
    reaper.remove(this.child);
  }

  /** Kills the replica with SIGKILL and waits (bounded) for its exit; never rejects. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await within(this.exited, KILL_WAIT_MS, 'kill').catch(() => undefined);
    }
    reaper.remove(this.child);
  }

  private stderrTail(): string {
    const tail = this.stderr.trim();
    return tail === '' ? '' : `; its stderr: ${tail.split('\n').slice(-3).join(' | ')}`;
  }
}
