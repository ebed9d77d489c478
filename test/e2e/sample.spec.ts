// The sample mesh as `npm run sample` runs it (the built dist/sample/main.js), and its dev PKI.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { createCertificateAuthority, issueNodeCertificate } from '../../lib/cli/pki.js';
import { ensureSamplePki } from '../../sample/pki.js';
import { builtSample, repoRoot, requireBuild } from '../support/built.js';

requireBuild();

const SERVICES = ['orders', 'billing', 'audit'];
const PROCESSES = ['orders', 'billing', 'billing-2', 'audit'];

interface SampleRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built sample with its certificates in `pkiDir`; killed if it outlives `timeoutMs`. */
function runSample(pkiDir: string, timeoutMs: number): Promise<SampleRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [builtSample], {
      cwd: repoRoot,
      env: { ...process.env, AURELIA_SAMPLE_PKI_DIR: pkiDir },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The trace lines of one speaker, without the prefix. */
function linesOf(stdout: string, speaker: string): string[] {
  const prefix = `[${speaker}] `;
  return stdout
    .split('\n')
    .filter((line) => line.startsWith(prefix))
    .map((line) => line.slice(prefix.length));
}

describe('the sample mesh (node dist/sample/main.js)', () => {
  let work: string;
  let run: SampleRun;

  beforeAll(async () => {
    if (!existsSync(builtSample)) {
      throw new Error(
        `${builtSample} is missing: run 'npm run build' first (npm ci builds it through 'prepare')`,
      );
    }
    work = await mkdtemp(path.join(tmpdir(), 'aurelia-sample-spec-'));
    run = await runSample(path.join(work, 'pki'), 60_000);
  }, 70_000);

  afterAll(async () => {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('exits 0 once every step behaved as expected and every service stopped', () => {
    const context = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
    expect({ code: run.code, signal: run.signal, context }).toEqual({
      code: 0,
      signal: null,
      context,
    });
    expect(linesOf(run.stdout, 'main').at(-1)).toMatch(/^done in \d+\.\d ms: every step behaved/);
    for (const name of PROCESSES) expect(linesOf(run.stdout, name)).toContain('stopped');
    expect(run.stderr).toBe('');
  });

  it('makes a dev CA and one certificate per service on its first run', () => {
    expect(linesOf(run.stdout, 'main')[0]).toMatch(
      /^certificates: ca\.pem is missing, so made a dev CA and certificates for orders, billing, audit in /,
    );
  });

  it('walks through the steps in order', () => {
    const steps = linesOf(run.stdout, 'main').filter((line) => line.startsWith('step '));
    expect(steps.map((line) => line.replace(/ — .*/, ''))).toEqual([
      'step 1/8: send() with a reply',
      "step 2/8: a guard on the caller's certificate",
      'step 3/8: emit() accepted',
      'step 4/8: emit() rejected',
      'step 5/8: a streamed reply',
      'step 6/8: replicas',
      'step 7/8: a file as a blob',
      'step 8/8: reporting',
    ]);
  });

  it('prints the peer events orders subscribed to', () => {
    const orders = linesOf(run.stdout, 'orders');
    expect(orders).toContain('event PeerConnected: spiffe://aurelia.local/billing');
    expect(orders).toContain('event PeerConnected: spiffe://aurelia.local/audit');
  });

  it('answers send() with a reply from billing, which sees the caller by its certificate', () => {
    expect(linesOf(run.stdout, 'billing')).toContain(
      'charge #1 from spiffe://aurelia.local/orders: 42.00 EUR approved as ch_0001',
    );
    expect(linesOf(run.stdout, 'orders')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^charge #1 → billing: approved as ch_0001 \(\d+\.\d ms\)$/),
        expect.stringMatching(/^charge #2 → billing: approved as ch_0002 \(\d+\.\d ms\)$/),
      ]),
    );
  });

  it("refuses a charge from audit in billing's guard on the caller identity", () => {
    expect(linesOf(run.stdout, 'billing')).toContain(
      'refused billing.charge from spiffe://aurelia.local/audit',
    );
    expect(linesOf(run.stdout, 'audit')).toContain(
      'charge #99 → billing: refused (Forbidden resource)',
    );
  });

  it('completes an emit() once audit accepted the record', () => {
    expect(linesOf(run.stdout, 'audit')).toContain(
      'record #1: order #1 charged by orders (from spiffe://aurelia.local/orders)',
    );
    expect(linesOf(run.stdout, 'orders')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^record order #1 charged → audit: accepted \(\d+\.\d ms\)$/),
      ]),
    );
  });

  it('errors an emit() with RemoteTabernaRejected when audit refuses an invalid record', () => {
    expect(linesOf(run.stdout, 'audit')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^refused audit\.record from spiffe:\/\/aurelia\.local\/orders: invalid audit record: orderId must be a positive number/,
        ),
      ]),
    );
    expect(linesOf(run.stdout, 'orders')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^record order #-7 → audit: RemoteTabernaRejected: the handler of 'audit\.record' failed: invalid audit record/,
        ),
      ]),
    );
  });

  it('streams the statement as one reply per line, in order', () => {
    const statement = linesOf(run.stdout, 'orders').filter((line) => line.startsWith('statement'));
    expect(statement.map((line) => line.replace(/ \(\d+\.\d ms\)$/, ''))).toEqual([
      'statement 1/4: statement for ada',
      'statement 2/4: ch_0001  order #1  42.00 EUR',
      'statement 3/4: ch_0002  order #2  19.99 EUR',
      'statement 4/4: total  61.99 EUR',
      'statement complete: 4 lines streamed',
    ]);
  });

  it('restarts billing-2 in the middle of the quotes: they move to billing, none fails, then both answer again', () => {
    const orders = linesOf(run.stdout, 'orders');
    const main = linesOf(run.stdout, 'main');
    const stopping = main.indexOf('stopping billing-2 in the middle of the traffic');
    expect(stopping).toBeGreaterThan(-1);
    expect(main[stopping + 1]).toMatch(/^billing-2 stopped \(\d+\.\d ms\); starting it again$/);
    expect(main[stopping + 2]).toMatch(/^billing-2 is back \(\d+\.\d ms after the stop began\)$/);

    // billing-2 drained before it stopped, and orders heard it.
    const replica = linesOf(run.stdout, 'billing-2');
    expect(replica).toEqual(
      expect.arrayContaining([
        'draining: callers told to send elsewhere, accepted calls finishing',
        'drained: every accepted call finished',
      ]),
    );
    expect(orders).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^event PeerDraining: billing-2 is shutting down \(\d+ queued calls moved/,
        ),
      ]),
    );

    const windows = orders
      .map((line) =>
        /^quotes answered in the last 500 ms: billing ×(\d+), billing-2 ×(\d+)$/.exec(line),
      )
      .filter((match) => match !== null)
      .map((match) => ({ billing: Number(match[1]), replica: Number(match[2]) }));
    // While billing-2 was away every quote went to billing; before and after, both answered.
    const both = windows.findIndex((w) => w.billing > 0 && w.replica > 0);
    const away = windows.findIndex((w, i) => i > both && w.billing > 0 && w.replica === 0);
    expect(both).toBeGreaterThan(-1);
    expect(away).toBeGreaterThan(both);
    expect(windows.slice(away).some((w) => w.replica > 0)).toBe(true);

    const total = orders
      .map((line) =>
        /^quotes: (\d+) answered \(billing ×(\d+), billing-2 ×(\d+)\), (\d+) failed$/.exec(line),
      )
      .find((match) => match !== null);
    expect(total).toBeDefined();
    const [answered, billing, second, failed] = total!.slice(1).map(Number);
    expect(failed).toBe(0);
    expect(billing + second).toBe(answered);
    expect(second).toBeGreaterThanOrEqual(20);
    expect(orders.filter((line) => /^quote #\d+ failed/.test(line))).toEqual([]);
  });

  it('transfers the file as a blob with the same SHA-256 on both sides', () => {
    const sent = linesOf(run.stdout, 'orders')
      .map((line) =>
        /^archive orders-export\.bin → audit: (\d+) bytes, sha256 ([0-9a-f]{64})$/.exec(line),
      )
      .find((match) => match !== null);
    const received = linesOf(run.stdout, 'audit')
      .map((line) => /^archived orders-export\.bin: (\d+) bytes, sha256 ([0-9a-f]{64})$/.exec(line))
      .find((match) => match !== null);
    expect(sent?.slice(1)).toEqual(received?.slice(1));
    expect(Number(sent?.[1])).toBeGreaterThanOrEqual(1024 * 1024);
    expect(linesOf(run.stdout, 'orders')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^archive orders-export\.bin → audit: accepted/),
      ]),
    );
  });

  it('prints the trace tree of charge #1, joined across orders and billing', () => {
    const main = linesOf(run.stdout, 'main');
    const at = main.findIndex((line) =>
      /^trace of charge #1 \(trace id [0-9a-f]{32}\):$/.test(line),
    );
    expect(at).toBeGreaterThan(-1);
    expect(main.slice(at + 1, at + 4).map((line) => line.replace(/, \d+\.\d ms$/, ''))).toEqual([
      '  checkout #1 — orders',
      '    billing.charge (client) — orders',
      '      billing.charge (server) — billing',
    ]);
  });

  it('prints what the orders domus counted, including the rejected event', () => {
    expect(linesOf(run.stdout, 'orders')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^metrics: \d+ messages sent, \d+ accepted, 1 failed;/),
      ]),
    );
  });
});

describe('the sample dev PKI', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'aurelia-sample-pki-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reuses the CA and certificates it made on an earlier run', async () => {
    const first = await ensureSamplePki(dir, SERVICES);
    const caPem = await readFile(path.join(dir, 'ca.pem'), 'utf8');
    const second = await ensureSamplePki(dir, SERVICES);
    expect(first.created).toBe(true);
    expect(second).toMatchObject({ created: false, reason: undefined });
    // Certificates keep whole seconds.
    expect(Math.abs(second.notAfter.getTime() - first.notAfter.getTime())).toBeLessThan(1000);
    expect(await readFile(path.join(dir, 'ca.pem'), 'utf8')).toBe(caPem);
  });

  it('remakes everything when a certificate is missing', async () => {
    await ensureSamplePki(dir, SERVICES);
    const caPem = await readFile(path.join(dir, 'ca.pem'), 'utf8');
    await rm(path.join(dir, 'billing.pem'));
    const again = await ensureSamplePki(dir, SERVICES);
    expect(again).toMatchObject({ created: true, reason: 'billing.pem is missing' });
    expect(await readFile(path.join(dir, 'ca.pem'), 'utf8')).not.toBe(caPem);
  });

  it('remakes everything when a certificate has expired', async () => {
    await ensureSamplePki(dir, SERVICES);
    const ca = await createCertificateAuthority({ commonName: 'expired test CA' });
    const expired = await issueNodeCertificate(ca, {
      name: 'audit',
      notBefore: new Date(Date.now() - 3 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    await writeFile(path.join(dir, 'audit.pem'), expired.certPem);
    const again = await ensureSamplePki(dir, SERVICES);
    expect(again.created).toBe(true);
    expect(again.reason).toMatch(/^audit\.pem expires /);
    expect(again.notAfter.getTime()).toBeGreaterThan(Date.now() + 86_400_000);
  });

  it('remakes everything when a certificate was not issued by the CA beside it', async () => {
    await ensureSamplePki(dir, SERVICES);
    const stranger = await createCertificateAuthority({ commonName: 'another CA' });
    const foreign = await issueNodeCertificate(stranger, { name: 'orders' });
    await writeFile(path.join(dir, 'orders.pem'), foreign.certPem);
    const again = await ensureSamplePki(dir, SERVICES);
    expect(again).toMatchObject({ created: true, reason: 'orders.pem was not issued by ca.pem' });
  });
});
