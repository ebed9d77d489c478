import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import {
  AureliaError,
  DomusAddr,
  ErrorId,
  JsonCodec,
  type Domus,
  type DomusReportingEvent,
} from '../../lib/index.js';
import {
  type AuthFileWatcher,
  loadAuthMaterial,
  readAuthFiles,
  watchAuthFiles,
} from '../../lib/engine/index.js';
import { acceptAll, expectEachOnce } from '../support/accept.js';
import { TestMesh, fastConfig, firstMatch } from '../support/mesh.js';
import type { TestNode } from '../support/pki.js';
import { SecretMount, presentedFingerprint } from '../support/secret-mount.js';

const codec = new JsonCodec<{ n: number }>();

function fingerprintOf(node: TestNode): string {
  return new X509Certificate(node.certPem).fingerprint256;
}

/** The next error on `domus`'s error feed. */
function nextError(domus: Domus, what: string): Promise<AureliaError> {
  return firstMatch(domus.reporting.errors$, () => true, what);
}

function reloaded(domus: Domus): Promise<DomusReportingEvent> {
  return firstMatch(domus.reporting.events$, (e) => e.type === 'AuthReloaded', 'AuthReloaded');
}

describe('certificate files watched from disk', () => {
  let mesh: TestMesh;
  let mount: SecretMount;
  let watcher: AuthFileWatcher | undefined;
  let beta: Domus;
  let client: () => Promise<import('node:tls').SecureContext>;

  beforeEach(async () => {
    mesh = await TestMesh.create();
    mount = await SecretMount.create(await mesh.pki.node('beta'));
    const loaded = await readAuthFiles(mount.files);
    beta = await mesh.aurelia
      .domusBuilder(
        fastConfig((b) => b.tabernaAcceptQueueSize(1024)),
        DomusAddr.tcp('127.0.0.1', 0),
        loaded.config,
        mesh.resolver,
      )
      .build();
    mesh.domus.set('beta', beta);
    watcher = watchAuthFiles(beta, mount.files, { debounceMs: 20, digest: loaded.digest });
    client = async () => loadAuthMaterial((await mesh.pki.node('gamma')).auth()).secureContext;
  });

  afterEach(async () => {
    await mesh.close();
    expect(watcher?.closed).toBe(true);
    await mount.cleanup();
  });

  it('reloads a symlink swap under load without failing a send; the next callis presents the new certificate', async () => {
    const alpha = await mesh.add('alpha', { config: fastConfig((b) => b.sendQueueSize(1024)) });
    const seen = acceptAll(await beta.taberna(10n, codec));
    const proxy = await mesh.proxy('beta', 10n);
    try {
      const before = await presentedFingerprint(beta, await client());
      expect(before).toBe(fingerprintOf(await mesh.pki.node('beta')));

      const renewed = await mesh.pki.issue('beta');
      const sends: Promise<unknown>[] = [];
      let n = 0;
      const burst = (): void => {
        for (let i = 0; i < 100; i++) sends.push(alpha.send(codec, 10n, { n: n++ }));
      };
      burst();
      const reload = reloaded(beta);
      await mount.swap(renewed);
      burst();
      await reload;
      burst();
      proxy.cut(); // alpha dials again: the new callis handshakes with the renewed certificate
      burst();
      await Promise.all(sends);
      expectEachOnce(seen, n);
      expect(await presentedFingerprint(beta, await client())).toBe(fingerprintOf(renewed));
      expect([beta.reporting.security.reloads, beta.reporting.security.reloadsRefused]).toEqual([
        1, 0,
      ]);
      expect(beta.reporting.security.certificate?.fingerprint256).toBe(fingerprintOf(renewed));
      expect(proxy.accepted).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it.each([
    [
      'a key that does not match the certificate',
      (m: TestMesh) => m.pki.mismatchedKey('beta'),
      /do(es)? not match/,
    ],
    ['another identity', (m: TestMesh) => m.pki.node('intruder'), /identity/],
    ['an expired certificate', (m: TestMesh) => m.pki.expired('beta'), /expired/],
    [
      'a certificate no configured CA signed',
      async (m: TestMesh) => ({ ...(await m.pki.foreign('beta')), caPem: m.pki.ca.certPem }),
      /not signed by any configured CA/,
    ],
  ])(
    'refuses %s, reports it and keeps the old certificate in force',
    async (_what, make, reason) => {
      const original = fingerprintOf(await mesh.pki.node('beta'));
      const refused = nextError(beta, 'the refused reload');
      await mount.swap(await make(mesh));
      const err = await refused;
      expect(err.kind).toBe(ErrorId.InvalidConfig);
      expect(err.message).toContain('were not reloaded');
      expect(err.message).toMatch(reason);
      expect([beta.reporting.security.reloads, beta.reporting.security.reloadsRefused]).toEqual([
        0, 1,
      ]);
      expect(await presentedFingerprint(beta, await client())).toBe(original);
      // The same bad set read again is not reported twice.
      expect(await watcher!.check()).toBe('refused');
      expect(beta.reporting.security.reloadsRefused).toBe(1);

      // A good set afterwards is taken.
      const renewed = await mesh.pki.issue('beta');
      const reload = reloaded(beta);
      await mount.swap(renewed);
      await reload;
      expect(await presentedFingerprint(beta, await client())).toBe(fingerprintOf(renewed));
    },
  );

  it('reloads a file rewritten in place, and leaves an untouched set alone', async () => {
    expect(await watcher!.check()).toBe('unchanged');
    const renewed = await mesh.pki.issue('beta');
    const reload = reloaded(beta);
    // Written through the links, as an editor or a copy would: key first, then the certificate.
    await writeFile(mount.files.key, renewed.keyPem);
    await writeFile(mount.files.cert, renewed.chainPem);
    await reload;
    expect(await watcher!.check()).toBe('unchanged');
    expect(beta.reporting.security.certificate?.fingerprint256).toBe(fingerprintOf(renewed));
  });

  it('refuses an invalid watch setting', () => {
    expect(() => watchAuthFiles(beta, mount.files, { debounceMs: 0 })).toThrow(
      expect.objectContaining({ kind: ErrorId.InvalidConfig }) as Error,
    );
  });
});
