// Nodes as child processes: SIGKILL and restart a peer, and check what its senders see.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { DomusAddr, ErrorId, type Domus, type DomusReportingEvent } from '../../lib/index.js';
import { DeliveryLedger } from '../../lib/cli/soak/ledger.js';
import { tracked } from '../support/ledger.js';
import { unusedPort } from '../support/ports.js';
import { builtEntry, repoRoot, requireBuild } from '../support/built.js';
import { TestMesh, fastConfig, firstMatch } from '../support/mesh.js';
import { writeTestNodeFiles, type TestPkiFiles } from '../support/pki.js';
import { EventQueue, within } from '../support/transport.js';

const script = path.join(repoRoot, 'test', 'support', 'node-process.mjs');

requireBuild();

const TABERNA = 10n;
/** How late past its deadline a send may settle: timers fire late on a loaded CI machine. */
const LATE_SLACK_MS = 1500;
const CHILD_CONFIG = {
  sendTimeoutMs: 8000,
  callisConnectTimeoutMs: 2000,
  acceptTimeoutMs: 8000,
  tabernaAcceptQueueSize: 256,
  drainTimeoutMs: 1000,
};
/**
 * How long the child's application takes per decision in the mid-traffic test: slow enough that
 * a backlog of undecided messages sits on the peer when it is killed.
 */
const PACE_MS = 5;

/** A domus running `node-process.mjs` in a child process, read line by line. */
class NodeProcess {
  /** `ready <address> <epoch>` lines. */
  readonly ready = new EventQueue<string>('the child domus to listen');
  /** Keys of messages handed to the child's application. */
  readonly got = new EventQueue<string>('a message handed to the child application');
  /** Resolves once the process is gone and every line it wrote was read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  closedGracefully = false;
  private stderr = '';

  private constructor(
    readonly child: ChildProcess,
    ledger: DeliveryLedger,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [word, rest] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)];
      if (line === 'closed') this.closedGracefully = true;
      else if (word === 'ready') this.ready.push(rest);
      else if (word === 'got') this.got.push(rest);
      else if (word === 'accepted') ledger.accept(rest);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal })),
    );
  }

  /**
   * Starts a child domus on `port`, recording what its application accepts in `ledger`, and
   * resolves once it listens, with its session epoch. `paceMs` delays each decision.
   */
  static async start(
    files: TestPkiFiles,
    port: number,
    mode: 'accept' | 'hold',
    ledger: DeliveryLedger,
    paceMs = 0,
  ): Promise<{ node: NodeProcess; epoch: string }> {
    const child = spawn(process.execPath, [script], {
      env: {
        ...process.env,
        AURELIA_ENTRY: builtEntry,
        AURELIA_CA: files.ca,
        AURELIA_CERT: files.cert,
        AURELIA_KEY: files.key,
        AURELIA_LISTEN: `tls://127.0.0.1:${port}`,
        AURELIA_TABERNA: String(TABERNA),
        AURELIA_MODE: mode,
        AURELIA_ACCEPT_PACE_MS: String(paceMs),
        AURELIA_CONFIG: JSON.stringify(CHILD_CONFIG),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const node = new NodeProcess(child, ledger);
    const ready = await Promise.race([
      node.ready.next(10_000),
      node.exited.then(({ code, signal }) => {
        throw new Error(`the child domus exited (${code ?? signal}): ${node.stderr}`);
      }),
    ]);
    const [, epoch] = ready.split(' ');
    return { node, epoch: epoch! };
  }

  /** Sends `signal` and resolves when the process is gone. */
  async stop(
    signal: NodeJS.Signals,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return within(this.exited, 10_000, `the child domus to exit on ${signal}`);
  }
}

describe('peers in child processes', () => {
  let mesh: TestMesh;
  let alpha: Domus;
  let files: TestPkiFiles;
  let port: number;
  const children: NodeProcess[] = [];

  beforeEach(async () => {
    mesh = await TestMesh.create();
    alpha = await mesh.add('alpha', {
      config: fastConfig((b) => b.sendTimeoutMs(8000).sendQueueSize(1024)),
    });
    files = await writeTestNodeFiles(await mesh.pki.node('beta'));
    port = await unusedPort();
    mesh.resolver.insert(TABERNA, DomusAddr.tcp('127.0.0.1', port));
  });
  afterEach(async () => {
    for (const child of children.splice(0)) await child.stop('SIGKILL');
    await mesh.close();
    await files.cleanup();
  });

  async function startChild(mode: 'accept' | 'hold', ledger: DeliveryLedger, paceMs = 0) {
    const started = await NodeProcess.start(files, port, mode, ledger, paceMs);
    children.push(started.node);
    return started;
  }

  it('fails retained work with PeerRestarted after a SIGKILL and restart, then recovers', async () => {
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const first = await startChild('hold', ledger);
    const held = ['r1', 'r2', 'r3'].map((key) => tracked(ledger, alpha, TABERNA, key));
    expect(await first.node.got.take(3, 5000)).toEqual(['r1', 'r2', 'r3']);
    const restarted = firstMatch<DomusReportingEvent>(
      alpha.reporting.events$,
      (e) => e.type === 'PeerSessionRestarted',
      'alpha to see the new session',
      15_000,
    );
    expect((await first.node.stop('SIGKILL')).signal).toBe('SIGKILL');

    const second = await startChild('accept', ledger);
    expect(second.epoch).not.toBe(first.epoch);
    await within(Promise.all(held), 10_000, 'the retained sends to fail');
    for (const key of ['r1', 'r2', 'r3']) {
      expect(ledger.outcome(key)).toMatchObject({ ok: false, kind: ErrorId.PeerRestarted });
    }
    expect(await restarted).toMatchObject({ failedMessages: 3 });
    await within(tracked(ledger, alpha, TABERNA, 'after'), 5000, 'a send to the restarted peer');
    expect(ledger.outcome('after')).toMatchObject({ ok: true });
    const report = ledger.compare();
    expect(report.mismatches).toEqual([]);
    expect(report).toMatchObject({ sends: 4, succeeded: 1, delivered: 1 });
  });

  it('keeps both ledgers consistent when a peer is killed mid-traffic and restarted', async () => {
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const first = await startChild('accept', ledger, PACE_MS);
    const sends: Promise<void>[] = [];
    const keys = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => `m${from + i}`);
    for (const key of keys(0, 300)) sends.push(tracked(ledger, alpha, TABERNA, key));
    await within(
      (async () => {
        while (ledger.acceptedCount('m100') === 0) await first.node.got.next(10_000);
      })(),
      10_000,
      'a third of the traffic to be accepted',
    );
    const unsettledAtKill = keys(0, 300).filter((key) => ledger.outcome(key) === undefined);
    await first.node.stop('SIGKILL');
    await startChild('accept', ledger, PACE_MS);
    for (const key of keys(300, 400)) sends.push(tracked(ledger, alpha, TABERNA, key));
    await within(Promise.all(sends), 15_000, 'every send to settle');
    const report = ledger.compare();
    expect(report.mismatches).toEqual([]);
    expect(report.sends).toBe(400);
    // The kill cut off work: a backlog the killed application never decided, and what the
    // killed process had been sent and not answered failed with PeerRestarted.
    const neverDecided = unsettledAtKill.filter((key) => ledger.acceptedCount(key) === 0);
    expect(neverDecided.length).toBeGreaterThanOrEqual(50);
    expect(report.failed.PeerRestarted).toBeGreaterThan(0);
    for (const key of keys(0, 300)) {
      const outcome = ledger.outcome(key);
      if (outcome?.ok === false) {
        expect(outcome.kind).toBe(ErrorId.PeerRestarted);
        expect(unsettledAtKill).toContain(key);
      }
    }
    // Everything sent after the restart reached the new process.
    for (const key of keys(300, 400)) expect(ledger.outcome(key)).toMatchObject({ ok: true });
  });

  it('a SIGTERM shuts the peer down gracefully: requests still undecided after drainTimeoutMs fail with DomusClosed', async () => {
    const ledger = new DeliveryLedger(LATE_SLACK_MS);
    const child = await startChild('hold', ledger);
    const held = ['t1', 't2'].map((key) => tracked(ledger, alpha, TABERNA, key));
    await child.node.got.take(2, 5000);
    expect(await child.node.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    await within(Promise.all(held), 5000, 'the held sends to fail');
    for (const key of ['t1', 't2']) {
      expect(ledger.outcome(key)).toMatchObject({ ok: false, kind: ErrorId.DomusClosed });
    }
    expect(ledger.compare().mismatches).toEqual([]);
    expect(child.node.closedGracefully).toBe(true);
  });
});
