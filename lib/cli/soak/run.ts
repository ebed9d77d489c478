// The soak run: a mesh of domus in this process, random traffic and faults, ledgers checked at the end.
import { createHash, randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';

import { DomusAddr } from '../../engine/addr.js';
import { Aurelia } from '../../engine/aurelia.js';
import type { Pkcs8PemConfig } from '../../engine/auth.js';
import { BlobReceiver } from '../../engine/blob/receiver.js';
import { JsonCodec } from '../../engine/codec.js';
import { DomusConfigBuilder, type DomusConfig } from '../../engine/config.js';
import type { Domus } from '../../engine/domus.js';
import { AureliaError, ErrorId, errorIdName } from '../../engine/errors.js';
import { SimpleResolver } from '../../engine/resolver.js';
import { SendOptions } from '../../engine/send-options.js';
import type { Taberna } from '../../engine/taberna/taberna.js';
import { createCertificateAuthority, issueNodeCertificate, type NodeCertificate } from '../pki.js';
import { FaultProxy } from './fault-proxy.js';
import { DeliveryLedger, type LedgerReport } from './ledger.js';

/** What a soak run does; every field but `durationMs` has a default. */
export interface SoakOptions {
  /** How long traffic and faults run, in ms (1 000 .. 86 400 000). */
  readonly durationMs: number;
  /** Domus in the mesh (2..16, default 5). */
  readonly nodes?: number;
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

/** What the blob streams of a run did. */
export interface SoakBlobReport {
  /** Blob sends started. */
  readonly sent: number;
  /** Streams a receiving application read to the end with the right size and SHA-256. */
  readonly intact: number;
  /** Streams that ended in an error at the receiver (an abort the sender saw too). */
  readonly aborted: number;
  /** Streams that ended cleanly with the wrong bytes: always a failure of the run. */
  readonly corrupted: number;
}

/** What the recovery check after healing found. */
export interface SoakRecoveryReport {
  /** Ordered pairs of domus (sender, receiver) checked. */
  readonly pairs: number;
  /** Pairs where a send succeeded within `RECOVERY_WINDOW_MS` of healing. */
  readonly reached: number;
  /** Recovery sends made, retries included. */
  readonly sends: number;
  /** Why recovery sends failed, by error text (numbers and addresses elided), most frequent first. */
  readonly failures: readonly { readonly reason: string; readonly count: number }[];
}

/** The outcome of a soak run. */
export interface SoakReport {
  readonly nodes: number;
  readonly seed: number;
  /** How long traffic and faults ran, in ms. */
  readonly durationMs: number;
  /** Faults injected, by kind: cut, stall, partition, delay, restart. */
  readonly faults: Readonly<Record<FaultKind, number>>;
  /** The message ledgers compared. */
  readonly messages: LedgerReport;
  readonly blobs: SoakBlobReport;
  /** After healing every link, one send between every ordered pair of domus. */
  readonly recovery: SoakRecoveryReport;
  /**
   * Every broken promise found (ledger, blob bytes, recovery), each naming the sender, receiver
   * and send time where known; empty when the run passed.
   */
  readonly mismatches: readonly string[];
  /** How many promises were broken in all (the ledger lists at most 50 of its own). */
  readonly mismatchCount: number;
  /** The faults that overlapped a listed mismatch's send window, for reproducing it. */
  readonly faultsNearMismatches: readonly string[];
}

/** One injected fault, in ms since the run started. */
interface FaultRecord {
  readonly at: number;
  end: number | undefined;
  readonly node: number;
  readonly kind: FaultKind;
}

/** The kinds of fault a soak run injects. */
export type FaultKind = 'cut' | 'stall' | 'partition' | 'delay' | 'restart';

const FAULT_WEIGHTS: readonly [FaultKind, number][] = [
  ['cut', 3],
  ['stall', 2],
  ['partition', 2],
  ['delay', 2],
  ['restart', 1],
];

/** Deadlines of the soak mesh: short, so faults outlive some sends and not others. */
const SEND_TIMEOUT_MS = 3000;
const KEEPALIVE_MS = 250;
const TABERNA_BASE = 100n;
const MAX_BLOB_BYTES = 256 * 1024;
/** How long after healing every domus gets to reach every other (each try is an ordinary send). */
const RECOVERY_WINDOW_MS = 30_000;
const TICK_MS = 20;

interface SoakMessage {
  readonly key: string;
  readonly size?: number;
  readonly sha256?: string;
}

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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves when `promises` all settled or `ms` passed, whichever is first. */
async function settleWithin(promises: Iterable<Promise<unknown>>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

function soakConfig(): DomusConfig {
  return new DomusConfigBuilder()
    .sendTimeoutMs(SEND_TIMEOUT_MS)
    .callisConnectTimeoutMs(2500)
    .acceptTimeoutMs(2000)
    .keepaliveIntervalMs(KEEPALIVE_MS)
    .reconnectBackoffMs([20, 100, 250])
    .sendQueueSize(1024)
    .tabernaAcceptQueueSize(256)
    .tcpHandshakeTimeoutMs(3000)
    .blobWindow({ chunkSize: 16 * 1024, ackWindow: 16 })
    .build();
}

function authOf(cert: NodeCertificate): Pkcs8PemConfig {
  return {
    format: 'pem',
    caPem: Buffer.from(cert.caPem),
    certPem: Buffer.from(cert.chainPem),
    pkcs8KeyPem: Buffer.from(cert.keyPem),
  };
}

/**
 * Runs a soak: builds `nodes` domus in this process, each behind a fault proxy, sends random
 * messages and blobs between them for `durationMs` while cutting, stalling, partitioning and
 * delaying links and restarting domus, then heals everything, waits for every send to settle,
 * sends once between every pair, and compares the ledgers (see `DeliveryLedger`). Resolves with
 * the report whether or not the run passed (check `mismatches`); rejects with
 * `AureliaError(InvalidConfig)` for an option out of range, and with the engine's error when
 * the mesh cannot be built.
 */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const durationMs = check('duration', options.durationMs, 1000, 86_400_000);
  const nodeCount = check('nodes', options.nodes ?? 5, 2, 16);
  const seed = check('seed', options.seed ?? randomBytes(4).readUInt32BE(0), 0, 0xffff_ffff);
  const rate = check('rate', options.rate ?? 300, 1, 20_000);
  const blobEvery = check('blobEvery', options.blobEvery ?? 25, 1, 1_000_000);
  const faultIntervalMs = check('faultIntervalMs', options.faultIntervalMs ?? 1500, 50, 600_000);
  const lateSlackMs = check('lateSlackMs', options.lateSlackMs ?? 1000, 0, 60_000);
  const progress = options.progress ?? (() => undefined);
  const random = generator(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  const aurelia = new Aurelia();
  const resolver = new SimpleResolver();
  const codec = new JsonCodec<SoakMessage>();
  const config = soakConfig();
  const ledger = new DeliveryLedger(lateSlackMs);
  const mismatches: string[] = [];
  const faults: Record<FaultKind, number> = {
    cut: 0,
    stall: 0,
    partition: 0,
    delay: 0,
    restart: 0,
  };
  const blobs = { sent: 0, intact: 0, aborted: 0, corrupted: 0 };
  const outstanding = new Set<Promise<void>>();
  const background = new Set<Promise<unknown>>();
  const nodes: SoakNode[] = [];
  const sentBy = new Map<
    string,
    { readonly from: number; readonly to: number; readonly at: number }
  >();
  const faultLog: FaultRecord[] = [];
  let startedAt = Date.now();
  const keep = (p: Promise<unknown>): void => {
    background.add(p);
    void p.finally(() => background.delete(p));
  };

  const verifyBlob = (receiver: BlobReceiver, message: SoakMessage): Promise<void> => {
    const hash = createHash('sha256');
    let size = 0;
    receiver.on('data', (chunk: Buffer) => {
      size += chunk.length;
      hash.update(chunk);
    });
    return finished(receiver).then(
      () => {
        const digest = hash.digest('hex');
        if (size === message.size && digest === message.sha256) blobs.intact++;
        else {
          blobs.corrupted++;
          mismatches.push(
            `blob ${message.key} ended cleanly with ${size} bytes (sha256 ${digest.slice(0, 12)}), sent ${message.size} bytes (sha256 ${message.sha256?.slice(0, 12)})`,
          );
        }
      },
      () => {
        blobs.aborted++;
      },
    );
  };

  const serve = async (taberna: Taberna<SoakMessage>): Promise<void> => {
    try {
      for await (const request of taberna) {
        const message = request.message;
        const receiver =
          request.blobReceiver instanceof BlobReceiver ? request.blobReceiver : undefined;
        if (!request.accept()) {
          receiver?.destroy();
          continue;
        }
        ledger.accept(message.key);
        if (receiver) keep(verifyBlob(receiver, message));
      }
    } catch (err) {
      if (
        !AureliaError.is(err, ErrorId.DomusClosed) &&
        !AureliaError.is(err, ErrorId.TabernaShutdown)
      ) {
        mismatches.push(`a receiving application failed: ${String(err)}`);
      }
    }
  };

  const incarnate = async (node: SoakNode): Promise<Domus> => {
    const domus = await aurelia
      .domusBuilder(config, DomusAddr.tcp('127.0.0.1', 0), authOf(node.cert), resolver)
      .build();
    const taberna = await domus.taberna(node.tabernaId, codec);
    keep(serve(taberna));
    node.proxy.retarget(domus.localAddr.port as number);
    return domus;
  };

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
      resolver.insert(node.tabernaId, DomusAddr.tcp('127.0.0.1', proxy.port));
      nodes.push(node);
    }

    const send = (from: SoakNode, to: SoakNode, blob: boolean): string | undefined => {
      const domus = from.domus;
      if (!domus) return undefined;
      const key = `${from.index}-${from.seq++}`;
      sentBy.set(key, { from: from.index, to: to.index, at: Date.now() - startedAt });
      let data: Buffer | undefined;
      let message: SoakMessage = { key };
      if (blob) {
        data = randomBytes(Math.floor(random() * MAX_BLOB_BYTES));
        message = {
          key,
          size: data.length,
          sha256: createHash('sha256').update(data).digest('hex'),
        };
        blobs.sent++;
      }
      const sending = domus.send(codec, to.tabernaId, message, blob ? SendOptions.BLOB : undefined);
      const tracked = ledger.track(key, Date.now() + SEND_TIMEOUT_MS, sending);
      outstanding.add(tracked);
      void tracked.finally(() => outstanding.delete(tracked));
      if (data) {
        const bytes = data;
        keep(
          sending.then(
            (outcome) => {
              if (outcome.kind !== 'blob') return;
              outcome.sender.on('error', () => undefined);
              outcome.sender.end(bytes);
              return finished(outcome.sender).catch(() => undefined);
            },
            () => undefined,
          ),
        );
      }
      return key;
    };

    // ---- traffic ----
    let credit = 0;
    const traffic = setInterval(() => {
      credit += (rate * TICK_MS) / 1000;
      for (; credit >= 1; credit--) {
        const from = pick(nodes);
        const others = nodes.filter((n) => n !== from);
        send(from, pick(others), random() * blobEvery < 1);
      }
    }, TICK_MS);

    // ---- faults ----
    const applyFault = async (node: SoakNode, kind: FaultKind): Promise<void> => {
      faults[kind]++;
      const record: FaultRecord = {
        at: Date.now() - startedAt,
        end: undefined,
        node: node.index,
        kind,
      };
      faultLog.push(record);
      try {
        await injectFault(node, kind);
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
          if (old) keep(old.shutdown());
          node.domus = await incarnate(node);
          proxy.heal();
          return;
        }
      }
    };

    startedAt = Date.now();
    const endAt = startedAt + durationMs;
    let lastProgress = startedAt;
    const totalWeight = FAULT_WEIGHTS.reduce((sum, [, w]) => sum + w, 0);
    while (Date.now() < endAt) {
      await sleep(Math.min(endAt - Date.now(), faultIntervalMs * (0.5 + random())));
      if (Date.now() >= endAt) break;
      const idle = nodes.filter((n) => !n.busy);
      if (idle.length > 0) {
        const node = pick(idle);
        let roll = random() * totalWeight;
        const kind = FAULT_WEIGHTS.find(([, w]) => (roll -= w) < 0)?.[0] ?? 'cut';
        node.busy = true;
        keep(
          applyFault(node, kind)
            .catch((err: unknown) =>
              mismatches.push(`fault ${kind} on soak-${node.index} failed: ${String(err)}`),
            )
            .finally(() => {
              node.busy = false;
            }),
        );
      }
      if (Date.now() - lastProgress >= 10_000) {
        lastProgress = Date.now();
        progress(
          `${Math.round((lastProgress - startedAt) / 1000)} s: ${ledger.size} sends, ${outstanding.size} in flight, ${Object.values(faults).reduce((a, b) => a + b, 0)} faults`,
        );
      }
    }
    clearInterval(traffic);
    const ranMs = Date.now() - startedAt;

    // ---- heal, settle, recover, compare ----
    while (nodes.some((n) => n.busy)) await sleep(20);
    for (const node of nodes) node.proxy.heal();
    await settleWithin([...outstanding], SEND_TIMEOUT_MS + lateSlackMs + 1000);
    // Every ordered pair must get a send through; a failed try (a reconnect still backing off on
    // a loaded machine) is retried until the recovery window closes.
    let unreached = nodes.flatMap((from) =>
      nodes.filter((to) => to !== from).map((to) => ({ from, to, last: '' })),
    );
    const pairs = unreached.length;
    let recoverySends = 0;
    const recoveryFailures = new Map<string, number>();
    const recoveryEnd = Date.now() + RECOVERY_WINDOW_MS;
    while (unreached.length > 0 && Date.now() < recoveryEnd) {
      const tries = unreached.map((pair) => ({ pair, key: send(pair.from, pair.to, false) }));
      recoverySends += tries.length;
      await settleWithin([...outstanding], SEND_TIMEOUT_MS + lateSlackMs + 1000);
      unreached = [];
      for (const { pair, key } of tries) {
        const outcome = key === undefined ? undefined : ledger.outcome(key);
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
    for (const { from, to, last } of unreached) {
      mismatches.push(
        `soak-${from.index} could not reach soak-${to.index} within ${RECOVERY_WINDOW_MS / 1000} s of healing every link (last try: ${last})`,
      );
    }
    await settleWithin([...background], 2 * SEND_TIMEOUT_MS);
    const messages = ledger.compare();
    const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    const windows: { from: number; to: number }[] = [];
    const annotate = (line: string): string => {
      const key = /^(?:send|message) (\S+)/.exec(line)?.[1];
      const sent = key === undefined ? undefined : sentBy.get(key);
      if (!sent) return line;
      windows.push({ from: sent.at - SEND_TIMEOUT_MS, to: sent.at + SEND_TIMEOUT_MS });
      return `${line} (soak-${sent.from} to soak-${sent.to}, sent at ${seconds(sent.at)})`;
    };
    const annotated = [...messages.mismatches, ...mismatches].map(annotate);
    const faultsNearMismatches = faultLog
      .filter((f) => windows.some((w) => f.at <= w.to && (f.end ?? f.at) >= w.from))
      .map(
        (f) =>
          `${seconds(f.at)}..${f.end === undefined ? '?' : seconds(f.end)} ${f.kind} soak-${f.node}`,
      );
    return {
      nodes: nodeCount,
      seed,
      durationMs: ranMs,
      faults,
      messages,
      blobs,
      recovery: {
        pairs,
        reached: pairs - unreached.length,
        sends: recoverySends,
        failures: [...recoveryFailures]
          .sort((a, b) => b[1] - a[1])
          .map(([reason, count]) => ({ reason, count })),
      },
      mismatches: annotated,
      mismatchCount: messages.mismatchCount + mismatches.length,
      faultsNearMismatches,
    };
  } finally {
    await aurelia.shutdown();
    await settleWithin([...background], SEND_TIMEOUT_MS);
    await Promise.all(proxies.map((p) => p.close()));
  }
}

/** Renders `report` as the lines `aurelia-mesh soak` prints. */
export function formatSoakReport(report: SoakReport): string {
  const m = report.messages;
  const failed = Object.entries(m.failed)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
  const lines = [
    `soak: ${report.nodes} domus for ${(report.durationMs / 1000).toFixed(1)} s, seed ${report.seed}`,
    `faults: ${Object.entries(report.faults)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(', ')}`,
    `messages: ${m.sends} sent, ${m.succeeded} succeeded, ${m.delivered} accepted by receivers` +
      (failed ? `; failed: ${failed}` : '') +
      `; ${m.failedButDelivered} failed after the receiver accepted (ack lost)` +
      (m.lost > 0 ? `; ${m.lost} succeeded but never reached an application (LOST)` : ''),
    `blobs: ${report.blobs.sent} sent, ${report.blobs.intact} intact, ${report.blobs.aborted} aborted, ${report.blobs.corrupted} corrupted`,
    `recovery: ${report.recovery.reached}/${report.recovery.pairs} pairs reached after healing (${report.recovery.sends} sends)` +
      report.recovery.failures.map((f) => `\n  retried ${f.count}× after ${f.reason}`).join(''),
    report.mismatches.length === 0
      ? 'ledger: consistent'
      : `ledger: ${report.mismatchCount} mismatches\n${report.mismatches.map((l) => `  ${l}`).join('\n')}`,
  ];
  if (report.faultsNearMismatches.length > 0) {
    lines.push(
      `faults near the mismatches (seconds since the start):\n${report.faultsNearMismatches.map((l) => `  ${l}`).join('\n')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
