// The soak's replicated service: replicas sharing one certificate behind one route, a caller
// that only talks to them, and rolling restarts (a graceful shutdown, then a new process).
import { DomusAddr } from '../../engine/addr.js';
import type { Domus } from '../../engine/domus.js';
import type { NodeCertificate } from '../pki.js';
import { FaultProxy } from './fault-proxy.js';
import { SEND_TIMEOUT_MS, sleep, type SoakLedgers, type SoakMesh } from './mesh.js';

/** The taberna every replica hosts. */
export const REPLICATED_TABERNA = 99n;

/** How long a replica's graceful shutdown may take before the run counts it as a problem. */
const SHUTDOWN_BOUND_MS = 4 * SEND_TIMEOUT_MS;

/** One replica: its address (a proxy, so a restarted replica keeps it) and its incarnation. */
interface SoakReplica {
  readonly index: number;
  readonly proxy: FaultProxy;
  /** The current incarnation; undefined between its shutdown and its successor's start. */
  domus: Domus | undefined;
}

/**
 * `count` replicas of one service in the soak mesh, sharing one certificate (as the pods of a
 * deployment do), each behind its own address, all named by one route balanced
 * `'least-loaded'`; their applications accept into `ledgers`. A rolling restart stops each in
 * turn the way SIGTERM does (`shutdown()`), starts a new incarnation with the same identity at
 * the same address, pauses, and moves to the next.
 */
export class ReplicaGroup {
  /** A rolling restart is under way. */
  busy = false;
  /** Rolling restarts completed or under way. */
  rollingRestarts = 0;
  /** Replica restarts in all (each rolling restart restarts every replica). */
  restarts = 0;

  private constructor(
    private readonly mesh: SoakMesh,
    private readonly cert: NodeCertificate,
    private readonly ledgers: SoakLedgers,
    private readonly replicas: readonly SoakReplica[],
  ) {}

  /** Starts `count` replicas and routes `REPLICATED_TABERNA` to them. */
  static async start(
    mesh: SoakMesh,
    cert: NodeCertificate,
    count: number,
    ledgers: SoakLedgers,
    proxies: FaultProxy[],
  ): Promise<ReplicaGroup> {
    const replicas: SoakReplica[] = [];
    for (let index = 0; index < count; index++) {
      const proxy = await FaultProxy.start(1);
      proxies.push(proxy);
      replicas.push({ index, proxy, domus: undefined });
    }
    const group = new ReplicaGroup(mesh, cert, ledgers, replicas);
    for (const replica of replicas) await group.incarnate(replica);
    mesh.resolver.insert(
      REPLICATED_TABERNA,
      replicas.map((r) => DomusAddr.tcp('127.0.0.1', r.proxy.port)),
    );
    return group;
  }

  /** How many replicas there are. */
  get size(): number {
    return this.replicas.length;
  }

  /**
   * Restarts every replica in turn: a graceful shutdown (what SIGTERM runs), a new incarnation
   * with the same identity at the same address, then `pauseMs` before the next. Rejects with the
   * engine's error when a new incarnation cannot start; a shutdown that takes longer than its
   * bound is reported to `problems` and the run moves on.
   */
  async rollingRestart(pauseMs: number, problems: string[]): Promise<void> {
    this.rollingRestarts++;
    for (const replica of this.replicas) {
      const old = replica.domus;
      replica.domus = undefined;
      if (old) {
        const started = Date.now();
        const stopped = old.shutdown();
        this.mesh.keep(stopped);
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([
          stopped.then(
            () => true,
            () => true,
          ),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(false), SHUTDOWN_BOUND_MS);
          }),
        ]);
        clearTimeout(timer);
        if (!inTime) {
          problems.push(
            `replica ${replica.index} took over ${SHUTDOWN_BOUND_MS} ms to shut down (started ${Date.now() - started} ms ago)`,
          );
        }
      }
      await this.incarnate(replica);
      this.restarts++;
      await sleep(pauseMs);
    }
  }

  private async incarnate(replica: SoakReplica): Promise<void> {
    const domus = await this.mesh.domus(this.cert, REPLICATED_TABERNA, this.ledgers);
    replica.proxy.retarget(domus.localAddr.port as number);
    replica.domus = domus;
  }
}
