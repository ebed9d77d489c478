// The soak run: a mesh of domus in this process, random traffic and faults, ledgers checked at the end.
import { randomBytes } from 'node:crypto';

import { DomusAddr } from '../../engine/addr.js';
import type { Domus } from '../../engine/domus.js';
import { AureliaError, ErrorId, errorIdName } from '../../engine/errors.js';
import { createCertificateAuthority, issueNodeCertificate, type NodeCertificate } from '../pki.js';
import { FaultProxy } from './fault-proxy.js';
import type { LedgerOutcome } from './ledger.js';
import {
  KEEPALIVE_MS,
  SEND_TIMEOUT_MS,
  SoakLedgers,
  SoakMesh,
  settleWithin,
  sleep,
} from './mesh.js';
import { REPLICATED_TABERNA, ReplicaGroup } from './replicas.js';
import type { FaultKind, SoakBlobReport, SoakReport } from './report.js';

/** What a soak run does; every field but `durationMs` has a default. */
export interface SoakOptions {
  /** How long traffic and faults run, in ms (1 000 .. 86 400 000). */
  readonly durationMs: number;
  /** Domus in the mesh (2..16, default 5). */
  readonly nodes?: number;
  /**
   * Replicas of the replicated service (0..8, default 3; 0: none). A caller domus sends them a
   * quarter of the traffic through one route while rolling restarts go through them.
   */
  readonly replicas?: number;
  /** Seed of the fault and traffic schedule (a u32; default random). */
  readonly seed?: number;
  /** Messages per second across the mesh (1..20 000, default 300). */
  readonly rate?: number;
  /** One send in `blobEvery` opens a blob stream (1..1 000 000, default 25). */
  readonly blobEvery?: number;
  /** Mean time between two faults, in ms (50..600 000, default 1 500). */
  readonly faultIntervalMs?: number;
  /**
   * How far past its deadline a send may settle before it counts as late, in ms (0..60 000,
   * default 1 000): timers fire late on a loaded machine.
   */
  readonly lateSlackMs?: number;
  /** Receives a line now and then while the run goes on. */
  readonly progress?: (line: string) => void;
}

/** One injected fault, in ms since the run started. */
interface FaultRecord {
  readonly at: number;
  end: number | undefined;
  /** What it hit: `soak-2`, or `replicas` for a rolling restart. */
  readonly target: string;
  readonly kind: FaultKind;
}

/** Faults on one domus of the mesh, by weight. */
const NODE_FAULTS: readonly [FaultKind, number][] = [
  ['cut', 3],
  ['stall', 2],
  ['partition', 2],
  ['delay', 2],
  ['restart', 1],
];
/** The weight of a rolling restart of the replicas among the faults, when there are replicas. */
const ROLLING_WEIGHT = 2;
/** The pause between two replicas of a rolling restart. */
const ROLLING_PAUSE_MS = 500;
/** The share of the traffic the caller sends to the replicated service. */
const REPLICATED_SHARE = 0.25;

const TABERNA_BASE = 100n;
const MAX_BLOB_BYTES = 256 * 1024;
/** How long after healing every domus gets to reach every other (each try is an ordinary send). */
const RECOVERY_WINDOW_MS = 30_000;
const TICK_MS = 20;

interface SoakNode {
  readonly index: number;
  readonly cert: NodeCertificate;
  readonly proxy: FaultProxy;
  readonly tabernaId: bigint;
  /** The current incarnation; undefined while it restarts. */
  domus: Domus | undefined;
  /** A fault is being applied to this node's link. */
  busy: boolean;
  seq: number;
}

/** A sender and a destination whose link must work again after healing. */
interface RecoveryPair {
  readonly label: string;
  /** Sends once (a recorded, ordinary send); the key, or undefined when the sender is down. */
  readonly send: () => string | undefined;
  readonly outcome: (key: string) => LedgerOutcome | undefined;
  last: string;
}

function check(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `soak ${name} ${value} is outside ${min}..${max}`,
    );
  }
  return value;
}

/** A small seeded generator (mulberry32): the same seed gives the same schedule. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function blobReport(ledgers: SoakLedgers): { report: SoakBlobReport; mismatches: string[] } {
  const { mismatches, ...report } = ledgers.blobs.compare();
  return { report, mismatches: [...mismatches] };
}

/**
 * Runs a soak: builds `nodes` domus in this process, each behind a fault proxy, sends random
 * messages and blobs between them for `durationMs` while cutting, stalling, partitioning and
 * delaying links and restarting domus; with `replicas`, a caller also sends to a service of that
 * many replicas behind one route while rolling restarts go through them. Then it heals
 * everything, waits for every send to settle, sends once between every pair (and from the caller
 * to the service), and compares the ledgers (see `DeliveryLedger` and `BlobLedger`). Resolves
 * with the report whether or not the run passed (check `mismatches`); rejects with
 * `AureliaError(InvalidConfig)` for an option out of range, and with the engine's error when
 * the mesh cannot be built.
 */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const durationMs = check('duration', options.durationMs, 1000, 86_400_000);
  const nodeCount = check('nodes', options.nodes ?? 5, 2, 16);
  const replicaCount = check('replicas', options.replicas ?? 3, 0, 8);
  const seed = check('seed', options.seed ?? randomBytes(4).readUInt32BE(0), 0, 0xffff_ffff);
  const rate = check('rate', options.rate ?? 300, 1, 20_000);
  const blobEvery = check('blobEvery', options.blobEvery ?? 25, 1, 1_000_000);
  const faultIntervalMs = check('faultIntervalMs', options.faultIntervalMs ?? 1500, 50, 600_000);
  const lateSlackMs = check('lateSlackMs', options.lateSlackMs ?? 1000, 0, 60_000);
  const progress = options.progress ?? (() => undefined);
  const random = generator(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  const mesh = new SoakMesh();
  const ledgers = new SoakLedgers(lateSlackMs);
  const replicaLedgers = new SoakLedgers(lateSlackMs);
  const mismatches = mesh.problems;
  const faults: Record<FaultKind, number> = {
    cut: 0,
    stall: 0,
    partition: 0,
    delay: 0,
    restart: 0,
    rolling: 0,
  };
  const nodes: SoakNode[] = [];
  const sentBy = new Map<
    string,
    { readonly from: string; readonly to: string; readonly at: number }
  >();
  const faultLog: FaultRecord[] = [];
  let startedAt = Date.now();
  const incarnate = async (node: SoakNode): Promise<Domus> => {
    const domus = await mesh.domus(node.cert, node.tabernaId, ledgers);
    node.proxy.retarget(domus.localAddr.port as number);
    return domus;
  };
  const blobOrNot = (blob: boolean): Buffer | undefined =>
    blob ? randomBytes(Math.floor(random() * MAX_BLOB_BYTES)) : undefined;

  const proxies: FaultProxy[] = [];
  try {
    const ca = await createCertificateAuthority({ commonName: 'Aurelia Soak CA' });
    for (let index = 0; index < nodeCount; index++) {
      const cert = await issueNodeCertificate(ca, { name: `soak-${index}` });
      const proxy = await FaultProxy.start(1);
      proxies.push(proxy);
      const node: SoakNode = {
        index,
        cert,
        proxy,
        tabernaId: TABERNA_BASE + BigInt(index),
        domus: undefined,
        busy: false,
        seq: 0,
      };
      node.domus = await incarnate(node);
      mesh.resolver.insert(node.tabernaId, DomusAddr.tcp('127.0.0.1', proxy.port));
      nodes.push(node);
    }
    let group: ReplicaGroup | undefined;
    let caller: Domus | undefined;
    let callerSeq = 0;
    if (replicaCount > 0) {
      const replicaCert = await issueNodeCertificate(ca, { name: 'soak-replica' });
      group = await ReplicaGroup.start(mesh, replicaCert, replicaCount, replicaLedgers, proxies);
      caller = await mesh.domus(await issueNodeCertificate(ca, { name: 'soak-caller' }));
    }

    const send = (from: SoakNode, to: SoakNode, blob: boolean): string | undefined => {
      const domus = from.domus;
      if (!domus) return undefined;
      const key = `${from.index}-${from.seq++}`;
      sentBy.set(key, {
        from: `soak-${from.index}`,
        to: `soak-${to.index}`,
        at: Date.now() - startedAt,
      });
      mesh.send(domus, to.tabernaId, ledgers, key, blobOrNot(blob));
      return key;
    };
    const call = (blob: boolean): string | undefined => {
      if (!caller) return undefined;
      const key = `c-${callerSeq++}`;
      sentBy.set(key, { from: 'the caller', to: 'the replicas', at: Date.now() - startedAt });
      mesh.send(caller, REPLICATED_TABERNA, replicaLedgers, key, blobOrNot(blob));
      return key;
    };

    // ---- traffic ----
    let credit = 0;
    const traffic = setInterval(() => {
      credit += (rate * TICK_MS) / 1000;
      for (; credit >= 1; credit--) {
        const blob = random() * blobEvery < 1;
        if (group && random() < REPLICATED_SHARE) {
          call(blob);
          continue;
        }
        const from = pick(nodes);
        const others = nodes.filter((n) => n !== from);
        send(from, pick(others), blob);
      }
    }, TICK_MS);

    // ---- faults ----
    const applyFault = async (
      target: string,
      kind: FaultKind,
      inject: () => Promise<void>,
    ): Promise<void> => {
      faults[kind]++;
      const record: FaultRecord = { at: Date.now() - startedAt, end: undefined, target, kind };
      faultLog.push(record);
      try {
        await inject();
      } catch (err) {
        mismatches.push(`fault ${kind} on ${target} failed: ${String(err)}`);
      } finally {
        record.end = Date.now() - startedAt;
      }
    };

    const injectFault = async (node: SoakNode, kind: FaultKind): Promise<void> => {
      const proxy = node.proxy;
      switch (kind) {
        case 'cut':
          proxy.cut();
          return;
        case 'stall':
          proxy.stall();
          await sleep(100 + random() * 4 * KEEPALIVE_MS);
          proxy.heal();
          return;
        case 'partition':
          proxy.refuse();
          proxy.stall();
          await sleep(300 + random() * 1.5 * SEND_TIMEOUT_MS);
          // Bytes were dropped: what the partition left of these connections is unusable.
          proxy.cut();
          proxy.heal();
          return;
        case 'delay':
          proxy.delayMs = 5 + Math.floor(random() * 45);
          await sleep(300 + random() * 1500);
          proxy.heal();
          return;
        case 'restart': {
          // A crash: the link dies first, then a new process with the same identity comes up.
          proxy.refuse();
          proxy.cut();
          const old = node.domus;
          node.domus = undefined;
          if (old) mesh.keep(old.shutdown());
          node.domus = await incarnate(node);
          proxy.heal();
          return;
        }
      }
    };

    startedAt = Date.now();
    const endAt = startedAt + durationMs;
    let lastProgress = startedAt;
    const weights: [FaultKind, number][] = [
      ...NODE_FAULTS,
      ...(group ? [['rolling', ROLLING_WEIGHT] as [FaultKind, number]] : []),
    ];
    const totalWeight = weights.reduce((sum, [, w]) => sum + w, 0);
    while (Date.now() < endAt) {
      await sleep(Math.min(endAt - Date.now(), faultIntervalMs * (0.5 + random())));
      if (Date.now() >= endAt) break;
      let roll = random() * totalWeight;
      const kind = weights.find(([, w]) => (roll -= w) < 0)?.[0] ?? 'cut';
      if (kind === 'rolling' && group && !group.busy) {
        const replicas = group;
        replicas.busy = true;
        mesh.keep(
          applyFault('replicas', kind, () =>
            replicas.rollingRestart(ROLLING_PAUSE_MS, mismatches),
          ).finally(() => {
            replicas.busy = false;
          }),
        );
      }
      const idle = nodes.filter((n) => !n.busy);
      if (kind !== 'rolling' && idle.length > 0) {
        const node = pick(idle);
        node.busy = true;
        mesh.keep(
          applyFault(`soak-${node.index}`, kind, () => injectFault(node, kind)).finally(() => {
            node.busy = false;
          }),
        );
      }
      if (Date.now() - lastProgress >= 10_000) {
        lastProgress = Date.now();
        progress(
          `${Math.round((lastProgress - startedAt) / 1000)} s: ${ledgers.messages.size + replicaLedgers.messages.size} sends, ${mesh.outstanding.size} in flight, ${Object.values(faults).reduce((a, b) => a + b, 0)} faults`,
        );
      }
    }
    clearInterval(traffic);
    const ranMs = Date.now() - startedAt;

    // ---- heal, settle, recover, compare ----
    while (nodes.some((n) => n.busy) || group?.busy) await sleep(20);
    for (const node of nodes) node.proxy.heal();
    await settleWithin([...mesh.outstanding], SEND_TIMEOUT_MS + lateSlackMs + 1000);
    // Every ordered pair (and the caller to the replicas) must get a send through; a failed try
    // (a reconnect still backing off on a loaded machine) is retried until the window closes.
    let unreached: RecoveryPair[] = nodes.flatMap((from) =>
      nodes
        .filter((to) => to !== from)
        .map((to) => ({
          label: `soak-${from.index} could not reach soak-${to.index}`,
          send: () => send(from, to, false),
          outcome: (key: string) => ledgers.messages.outcome(key),
          last: '',
        })),
    );
    if (group) {
      unreached.push({
        label: 'the caller could not reach the replicas',
        send: () => call(false),
        outcome: (key) => replicaLedgers.messages.outcome(key),
        last: '',
      });
    }
    const pairs = unreached.length;
    let recoverySends = 0;
    const recoveryFailures = new Map<string, number>();
    const recoveryEnd = Date.now() + RECOVERY_WINDOW_MS;
    while (unreached.length > 0 && Date.now() < recoveryEnd) {
      const tries = unreached.map((pair) => ({ pair, key: pair.send() }));
      recoverySends += tries.length;
      await settleWithin([...mesh.outstanding], SEND_TIMEOUT_MS + lateSlackMs + 1000);
      unreached = [];
      for (const { pair, key } of tries) {
        const outcome = key === undefined ? undefined : pair.outcome(key);
        if (outcome?.ok) continue;
        pair.last =
          outcome === undefined
            ? 'it never settled'
            : `${outcome.kind === undefined ? 'error' : (errorIdName(outcome.kind) ?? outcome.kind)}: ${outcome.reason}`;
        const reason = pair.last
          .replace(/tls:\/\/[^\s)]+/g, '<address>')
          .replace(/soak-\d+/g, 'soak-N')
          .replace(/\d+/g, 'N');
        recoveryFailures.set(reason, (recoveryFailures.get(reason) ?? 0) + 1);
        unreached.push(pair);
      }
    }
    for (const { label, last } of unreached) {
      mismatches.push(
        `${label} within ${RECOVERY_WINDOW_MS / 1000} s of healing every link (last try: ${last})`,
      );
    }
    // A blob stream still open (its send failed after the receiver accepted, or a link is still
    // coming back) ends by its idle timeout, 2 × the send timeout, checked once a second.
    await settleWithin([...mesh.background], 2 * SEND_TIMEOUT_MS + 2000);
    const messages = ledgers.messages.compare();
    const blobs = blobReport(ledgers);
    const replicaMessages = replicaLedgers.messages.compare();
    const replicaBlobs = blobReport(replicaLedgers);
    const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    const windows: { from: number; to: number }[] = [];
    const annotate = (line: string): string => {
      const key = /^(?:send|message|blob) (\S+)/.exec(line)?.[1];
      const sent = key === undefined ? undefined : sentBy.get(key);
      if (!sent) return line;
      windows.push({ from: sent.at - SEND_TIMEOUT_MS, to: sent.at + SEND_TIMEOUT_MS });
      return `${line} (${sent.from} to ${sent.to}, sent at ${seconds(sent.at)})`;
    };
    const annotated = [
      ...messages.mismatches,
      ...blobs.mismatches,
      ...(group ? [...replicaMessages.mismatches, ...replicaBlobs.mismatches] : []),
      ...mismatches,
    ].map(annotate);
    const faultsNearMismatches = faultLog
      .filter((f) => windows.some((w) => f.at <= w.to && (f.end ?? f.at) >= w.from))
      .map(
        (f) =>
          `${seconds(f.at)}..${f.end === undefined ? '?' : seconds(f.end)} ${f.kind} ${f.target}`,
      );
    return {
      nodes: nodeCount,
      seed,
      durationMs: ranMs,
      faults,
      messages,
      blobs: blobs.report,
      ...(group
        ? {
            replicas: {
              replicas: group.size,
              rollingRestarts: group.rollingRestarts,
              restarts: group.restarts,
              messages: replicaMessages,
              blobs: replicaBlobs.report,
            },
          }
        : {}),
      recovery: {
        pairs,
        reached: pairs - unreached.length,
        sends: recoverySends,
        failures: [...recoveryFailures]
          .sort((a, b) => b[1] - a[1])
          .map(([reason, count]) => ({ reason, count })),
      },
      mismatches: annotated,
      mismatchCount:
        messages.mismatchCount +
        blobs.mismatches.length +
        (group ? replicaMessages.mismatchCount + replicaBlobs.mismatches.length : 0) +
        mismatches.length,
      faultsNearMismatches,
    };
  } finally {
    await mesh.close();
    await Promise.all(proxies.map((p) => p.close()));
  }
}
