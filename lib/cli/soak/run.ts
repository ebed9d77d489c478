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
import { BlobLedger } from './blob-ledger.js';
import { DeliveryLedger } from './ledger.js';
import type { FaultKind, SoakReport } from './report.js';

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

/** One injected fault, in ms since the run started. */
interface FaultRecord {
  readonly at: number;
  end: number | undefined;
  readonly node: number;
  readonly kind: FaultKind;
}

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
  const blobLedger = new BlobLedger();
  const mismatches: string[] = [];
  const faults: Record<FaultKind, number> = {
    cut: 0,
    stall: 0,
    partition: 0,
    delay: 0,
    restart: 0,
  };
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

  const verifyBlob = (receiver: BlobReceiver, key: string): Promise<void> => {
    const hash = createHash('sha256');
    let size = 0;
    receiver.on('data', (chunk: Buffer) => {
      size += chunk.length;
      hash.update(chunk);
    });
    return finished(receiver).then(
      () => blobLedger.received(key, size, hash.digest('hex')),
      (err: unknown) => blobLedger.receiveFailed(key, receiver.failure ?? err),
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
        if (receiver) {
          blobLedger.receiving(message.key);
          keep(verifyBlob(receiver, message.key));
        }
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
        blobLedger.sent(key, data.length, message.sha256!);
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
              if (outcome.kind !== 'blob') {
                blobLedger.streamFailed(
                  key,
                  new Error(`a BLOB send resolved with ${outcome.kind}`),
                );
                return;
              }
              const sender = outcome.sender;
              sender.on('error', (err) => blobLedger.streamFailed(key, err));
              sender.on('finish', () => blobLedger.finished(key));
              sender.on('close', () => blobLedger.closed(key));
              sender.end(bytes);
              return finished(sender).catch(() => undefined);
            },
            (err: unknown) => blobLedger.sendFailed(key, err),
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
    // A blob stream still open (its send failed after the receiver accepted, or a link is still
    // coming back) ends by its idle timeout, 2 × the send timeout, checked once a second.
    await settleWithin([...background], 2 * SEND_TIMEOUT_MS + 2000);
    const messages = ledger.compare();
    const blobs = blobLedger.compare();
    const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    const windows: { from: number; to: number }[] = [];
    const annotate = (line: string): string => {
      const key = /^(?:send|message|blob) (\S+)/.exec(line)?.[1];
      const sent = key === undefined ? undefined : sentBy.get(key);
      if (!sent) return line;
      windows.push({ from: sent.at - SEND_TIMEOUT_MS, to: sent.at + SEND_TIMEOUT_MS });
      return `${line} (soak-${sent.from} to soak-${sent.to}, sent at ${seconds(sent.at)})`;
    };
    const annotated = [...messages.mismatches, ...blobs.mismatches, ...mismatches].map(annotate);
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
      blobs: {
        sent: blobs.sent,
        intact: blobs.intact,
        aborted: blobs.aborted,
        abortedBy: blobs.abortedBy,
        abortedButIntact: blobs.abortedButIntact,
        corrupted: blobs.corrupted,
        unsettled: blobs.unsettled,
      },
      recovery: {
        pairs,
        reached: pairs - unreached.length,
        sends: recoverySends,
        failures: [...recoveryFailures]
          .sort((a, b) => b[1] - a[1])
          .map(([reason, count]) => ({ reason, count })),
      },
      mismatches: annotated,
      mismatchCount: messages.mismatchCount + blobs.mismatches.length + mismatches.length,
      faultsNearMismatches,
    };
  } finally {
    await aurelia.shutdown();
    await settleWithin([...background], SEND_TIMEOUT_MS);
    await Promise.all(proxies.map((p) => p.close()));
  }
}
