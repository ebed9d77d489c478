import { X509Certificate, createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { inspect } from 'node:util';
import fc from 'fast-check';

import {
  Pkcs8AuthConfig,
  Pkcs8PrivateKey,
  derToPemBuffer,
  loadAuthMaterial,
  type AuthMaterial,
} from '../../lib/engine/auth.js';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import {
  makeTestPki,
  mutualTlsHandshake,
  pemCertificatesToDer,
  pemKeyToDer,
  writeTestNodeFiles,
  type TestNode,
  type TestPki,
} from '../support/pki.js';
import { expectError } from '../support/expect.js';

const DAY_MS = 24 * 60 * 60 * 1000;

let pki: TestPki;
let alpha: TestNode;
let beta: TestNode;

beforeAll(async () => {
  pki = await makeTestPki();
  [alpha, beta] = await Promise.all([pki.node('alpha'), pki.node('beta')]);
});

/** Runs `fn`, expecting `AureliaError(InvalidConfig)`; returns its message. */
const invalidMessage = (fn: () => unknown): string =>
  expectError(ErrorId.InvalidConfig, fn).message;

async function invalidMessageAsync(promise: Promise<unknown>): Promise<string> {
  const caught = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(caught).toBeInstanceOf(AureliaError);
  expect((caught as AureliaError).kind).toBe(ErrorId.InvalidConfig);
  return (caught as AureliaError).message;
}

/** Base64 lines of a PEM key: none of them may ever show up in a message. */
function keyLines(keyPem: Buffer): string[] {
  return keyPem
    .toString('latin1')
    .split('\n')
    .filter((line) => line.length >= 16 && !line.startsWith('-----'));
}

function expectNoKeyText(text: string, ...keys: Buffer[]): void {
  for (const key of keys) for (const line of keyLines(key)) expect(text).not.toContain(line);
}

const isZeroFilled = (buffer: Buffer) => buffer.every((byte) => byte === 0);

describe('loadAuthMaterial', () => {
  it('loads PEM material and reports the identity and the certificate facts', () => {
    const material = loadAuthMaterial(alpha.auth());
    const leaf = new X509Certificate(alpha.certPem);
    expect(material.identity).toBe('spiffe://aurelia.local/alpha');
    expect(material.caCount).toBe(1);
    expect(material.certificate).toMatchObject({
      subject: 'CN=alpha',
      issuer: 'CN=Aurelia Test CA',
      fingerprint256: leaf.fingerprint256,
      subjectAltName: 'URI:spiffe://aurelia.local/alpha',
      keyType: 'ec-p256',
    });
    expect(material.certificate.notBefore.getTime()).toBe(new Date(leaf.validFrom).getTime());
    expect(material.certificate.notAfter.getTime()).toBe(new Date(leaf.validTo).getTime());
    expect(material.secureContext).toBeDefined();
  });

  it('loads DER material given as single buffers or as lists', () => {
    const der = alpha.derAuth();
    expect(loadAuthMaterial(der).identity).toBe('spiffe://aurelia.local/alpha');
    const single = alpha.derAuth();
    const material = loadAuthMaterial({
      format: 'der',
      caDer: pemCertificatesToDer(alpha.caPem)[0]!,
      certDer: pemCertificatesToDer(alpha.certPem)[0]!,
      pkcs8KeyDer: single.pkcs8KeyDer,
    });
    expect(material.identity).toBe('spiffe://aurelia.local/alpha');
  });

  it('trusts every CA in caPem, so a rotation can list the old and the new root', async () => {
    const next = await makeTestPki({ commonName: 'Aurelia Next CA' });
    const rotated = await next.node('gamma');
    const material = loadAuthMaterial(rotated.auth(pki.ca.rootPem));
    expect(material.caCount).toBe(2);
    expect(material.identity).toBe('spiffe://aurelia.local/gamma');
  });

  it('accepts a chain of leaf and intermediate signed by the configured root', async () => {
    const node = await pki.viaIntermediate('delta');
    expect(loadAuthMaterial(node.auth()).identity).toBe('spiffe://aurelia.local/delta');
    expect(loadAuthMaterial(node.derAuth()).identity).toBe('spiffe://aurelia.local/delta');
  });

  it('takes the DNS SAN, else the CN, as the identity when there is no URI SAN', async () => {
    const [dns, cn] = await Promise.all([pki.dnsOnly('eps'), pki.cnOnly('zeta')]);
    expect(loadAuthMaterial(dns.auth()).identity).toBe('eps.aurelia.test');
    expect(loadAuthMaterial(cn.auth()).identity).toBe('zeta');
    expect(loadAuthMaterial(dns.auth()).identityKind).toBe('dns');
    expect(loadAuthMaterial(cn.auth()).identityKind).toBe('cn');
    expect(loadAuthMaterial((await pki.node('eta')).auth()).identityKind).toBe('uri');
  });

  it('refuses a certificate whose only name is a CN that looks like a URI', async () => {
    const forged = await pki.issue('forged', {
      uri: false,
      commonName: 'spiffe://aurelia.local/orders',
      allowNoIdentity: true,
    });
    expect(invalidMessage(() => loadAuthMaterial(forged.auth()))).toMatch(
      /proves no node identity: its common name "spiffe:\/\/aurelia.local\/orders" contains ':'.*a URI identity must be a URI SAN/,
    );
  });

  it('checks validity at the given time instead of the clock when asked', async () => {
    const older = await makeTestPki({ notBefore: new Date(Date.now() - 60 * DAY_MS) });
    const expired = await older.expired('old');
    const then = expired.notBefore.getTime() + DAY_MS;
    expect(loadAuthMaterial(expired.auth(), { now: then }).identity).toBe(
      'spiffe://aurelia.local/old',
    );
  });

  it('loads EC P-256, Ed25519 and RSA keys and reports their type', async () => {
    for (const keyType of ['ec-p256', 'ed25519', 'rsa'] as const) {
      const node = await pki.issue(`key-${keyType}`, { keyType });
      expect(loadAuthMaterial(node.auth()).certificate.keyType).toBe(keyType);
    }
  });
});

describe('loadAuthMaterial key hygiene', () => {
  it('zero-fills the caller’s key buffer after loading', () => {
    const config = alpha.auth();
    loadAuthMaterial(config);
    expect(isZeroFilled(config.pkcs8KeyPem as Buffer)).toBe(true);
  });

  it('zero-fills a DER key buffer after loading', () => {
    const config = alpha.derAuth();
    loadAuthMaterial(config);
    expect(isZeroFilled(config.pkcs8KeyDer as Buffer)).toBe(true);
  });

  it('zeroizes a Pkcs8PrivateKey after loading', () => {
    const key = new Pkcs8PrivateKey(Buffer.from(alpha.keyPem));
    loadAuthMaterial({ ...alpha.auth(), pkcs8KeyPem: key });
    expect(key.zeroized).toBe(true);
  });

  it('zero-fills the key even when loading fails', async () => {
    const config = (await pki.expired('expired-zero')).auth();
    invalidMessage(() => loadAuthMaterial(config));
    expect(isZeroFilled(config.pkcs8KeyPem as Buffer)).toBe(true);
  });

  it('refuses to load the same config twice, because its key was consumed', () => {
    const config = alpha.auth();
    loadAuthMaterial(config);
    expect(invalidMessage(() => loadAuthMaterial(config))).toContain('pkcs8KeyPem');
    const wrapped = {
      ...alpha.auth(),
      pkcs8KeyPem: new Pkcs8PrivateKey(Buffer.from(alpha.keyPem)),
    };
    loadAuthMaterial(wrapped);
    expect(invalidMessage(() => loadAuthMaterial(wrapped))).toContain('zero-filled');
  });

  it('never shows key bytes in error messages, whatever corruption the key suffers', () => {
    const body = keyLines(alpha.keyPem).join('');
    fc.assert(
      fc.property(
        fc.nat({ max: body.length - 1 }),
        fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/!'),
        (index, replacement) => {
          const text = alpha.keyPem.toString('latin1');
          // Skip the header line; the body has 64 characters per line.
          const position = text.indexOf('\n') + 1 + index + Math.floor(index / 64);
          const mutated = Buffer.from(
            text.slice(0, position) + replacement + text.slice(position + 1),
            'latin1',
          );
          try {
            const material = loadAuthMaterial({ ...alpha.auth(), pkcs8KeyPem: mutated });
            // Some changes only touch bits base64 ignores; the key is then unchanged.
            expect(material.identity).toBe(alpha.identity);
          } catch (err) {
            expect(AureliaError.is(err, ErrorId.InvalidConfig)).toBe(true);
            const error = err as AureliaError;
            expectNoKeyText(`${error.message} ${inspect(error)}`, alpha.keyPem, mutated);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('loadAuthMaterial errors', () => {
  it('names certPem when it holds garbage', () => {
    const message = invalidMessage(() =>
      loadAuthMaterial({ ...alpha.auth(), certPem: Buffer.from('hello world') }),
    );
    expect(message).toMatch(/^certPem: .*not PEM/);
  });

  it('names certPem when a PEM block there is not a certificate', () => {
    const broken = alpha.certPem.replace(/[A-Za-z0-9]{20}\n/, 'AAAAAAAAAAAAAAAAAAAA\n');
    const message = invalidMessage(() =>
      loadAuthMaterial({ ...alpha.auth(), certPem: Buffer.from(broken) }),
    );
    expect(message).toContain('certPem: certificate is not a valid X.509 certificate');
  });

  it('rejects a certificate field that holds a private key, without echoing it', () => {
    const message = invalidMessage(() =>
      loadAuthMaterial({
        ...alpha.auth(),
        certPem: Buffer.concat([Buffer.from(alpha.certPem), alpha.keyPem]),
      }),
    );
    expect(message).toContain('certPem: holds a private key');
    expectNoKeyText(message, alpha.keyPem);
  });

  it('names caPem when it contains no certificate', () => {
    const message = invalidMessage(() =>
      loadAuthMaterial({
        ...alpha.auth(),
        caPem: Buffer.from('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'),
      }),
    );
    expect(message).toBe('caPem: contains no CA certificate');
  });

  it('names caDer when the DER list is empty or holds PEM text', () => {
    expect(invalidMessage(() => loadAuthMaterial({ ...alpha.derAuth(), caDer: [] }))).toContain(
      'contains no CA certificate',
    );
    expect(
      invalidMessage(() =>
        loadAuthMaterial({ ...alpha.derAuth(), caDer: [Buffer.from(alpha.caPem)] }),
      ),
    ).toContain("caDer[0]: CA certificate is PEM text, not DER; use format 'pem'");
  });

  it('explains that a PKCS#1 RSA key must be converted to PKCS#8', async () => {
    const rsa = await pki.issue('rsa-pkcs1', { keyType: 'rsa' });
    const pkcs1 = Buffer.from(
      createPrivateKey(rsa.keyPem).export({ format: 'pem', type: 'pkcs1' }) as string,
    );
    const message = invalidMessage(() => loadAuthMaterial({ ...rsa.auth(), pkcs8KeyPem: pkcs1 }));
    expect(message).toContain('pkcs8KeyPem: is a PKCS#1 RSA key, not PKCS#8');
    expect(message).toContain('openssl pkcs8 -topk8');
    expectNoKeyText(message, pkcs1);
  });

  it('explains that a SEC1 EC key must be converted to PKCS#8, in PEM and in DER', () => {
    const key = createPrivateKey(alpha.keyPem);
    const sec1Pem = Buffer.from(key.export({ format: 'pem', type: 'sec1' }) as string);
    const sec1Der = key.export({ format: 'der', type: 'sec1' });
    expect(
      invalidMessage(() => loadAuthMaterial({ ...alpha.auth(), pkcs8KeyPem: sec1Pem })),
    ).toContain('is a SEC1 EC key, not PKCS#8');
    expect(
      invalidMessage(() => loadAuthMaterial({ ...alpha.derAuth(), pkcs8KeyDer: sec1Der })),
    ).toContain('pkcs8KeyDer: is a SEC1 EC key, not PKCS#8');
  });

  it('asks for an unencrypted key when the PKCS#8 key is encrypted', () => {
    const encrypted = Buffer.from(
      createPrivateKey(alpha.keyPem).export({
        format: 'pem',
        type: 'pkcs8',
        cipher: 'aes-256-cbc',
        passphrase: 'secret',
      }) as string,
    );
    expect(
      invalidMessage(() => loadAuthMaterial({ ...alpha.auth(), pkcs8KeyPem: encrypted })),
    ).toContain('is an encrypted PKCS#8 key; an unencrypted one is needed');
  });

  it('names the key when it is not parseable', () => {
    expect(
      invalidMessage(() =>
        loadAuthMaterial({ ...alpha.derAuth(), pkcs8KeyDer: Buffer.from([1, 2, 3, 4]) }),
      ),
    ).toBe('pkcs8KeyDer: is not a parseable PKCS#8 private key');
  });

  it('rejects RSA keys shorter than 2048 bits', async () => {
    const weak = await pki.issue('weak', { keyType: 'rsa', rsaModulusLength: 1024 });
    expect(invalidMessage(() => loadAuthMaterial(weak.auth()))).toContain(
      'RSA key has 1024 bits; at least 2048 are required',
    );
  });

  it('rejects a key that does not match the certificate', async () => {
    const mismatched = await pki.mismatchedKey('theta');
    const message = invalidMessage(() => loadAuthMaterial(mismatched.auth()));
    expect(message).toBe(
      "pkcs8KeyPem: does not match the certificate 'CN=theta' in certPem (their public keys differ)",
    );
  });

  it('says when an expired certificate expired', async () => {
    const expired = await pki.expired('iota');
    const message = invalidMessage(() => loadAuthMaterial(expired.auth()));
    const notAfter = new Date(new X509Certificate(expired.certPem).validTo).toISOString();
    expect(message).toBe(`certPem: certificate 'CN=iota' expired at ${notAfter}`);
  });

  it('says from when a not-yet-valid certificate is valid', async () => {
    const early = await pki.notYetValid('kappa');
    const message = invalidMessage(() => loadAuthMaterial(early.auth()));
    const notBefore = new Date(new X509Certificate(early.certPem).validFrom).toISOString();
    expect(message).toBe(
      `certPem: certificate 'CN=kappa' is not yet valid: valid from ${notBefore}`,
    );
  });

  it('rejects a certificate no configured CA signed', async () => {
    const foreign = await pki.foreign('lambda');
    const message = invalidMessage(() =>
      loadAuthMaterial({ ...foreign.auth(), caPem: Buffer.from(pki.ca.rootPem) }),
    );
    expect(message).toContain(
      "certPem: certificate 'CN=lambda' is not signed by any configured CA",
    );
    expect(message).toContain("issuer 'CN=Aurelia Foreign CA'; trusted: 'CN=Aurelia Test CA'");
  });

  it('rejects a leaf whose intermediate is missing from the chain', async () => {
    const node = await pki.viaIntermediate('mu');
    const message = invalidMessage(() =>
      loadAuthMaterial({ ...node.auth(), certPem: Buffer.from(node.certPem) }),
    );
    expect(message).toContain('is not signed by any configured CA');
    expect(message).toContain('append the missing intermediates after the leaf');
  });

  it('rejects a chain anchored in an expired CA', async () => {
    const old = await makeTestPki({
      notBefore: new Date(Date.now() - 30 * DAY_MS),
      notAfter: new Date(Date.now() - DAY_MS),
    });
    const node = await old.issue('nu', {
      notBefore: new Date(Date.now() - 20 * DAY_MS),
      notAfter: new Date(Date.now() + DAY_MS),
    });
    expect(invalidMessage(() => loadAuthMaterial(node.auth()))).toMatch(
      /^caPem: CA certificate 'CN=Aurelia Test CA' expired at /,
    );
  });

  it('rejects a config whose format is neither pem nor der', () => {
    const bogus = { format: 'pfx' } as unknown as Pkcs8AuthConfig;
    expect(invalidMessage(() => loadAuthMaterial(bogus))).toBe(
      "auth config format must be 'pem' or 'der', got 'pfx'",
    );
  });
});

describe('Pkcs8AuthConfig.fromFiles', () => {
  it('reads PEM files and names them in later errors', async () => {
    const files = await writeTestNodeFiles(alpha);
    try {
      const config = await Pkcs8AuthConfig.fromFiles(files);
      expect(config.format).toBe('pem');
      expect(inspect(config)).toContain('Pkcs8PrivateKey(<redacted>');
      expect(JSON.stringify(config)).toContain('"[redacted]"');
      expectNoKeyText(inspect(config) + JSON.stringify(config), alpha.keyPem);
      expect(loadAuthMaterial(config).identity).toBe('spiffe://aurelia.local/alpha');
    } finally {
      await files.cleanup();
    }
  });

  it('reads DER files into a DER config', async () => {
    const files = await writeTestNodeFiles(alpha, 'der');
    try {
      const config = await Pkcs8AuthConfig.fromFiles(files);
      expect(config.format).toBe('der');
      expect(loadAuthMaterial(config).identity).toBe('spiffe://aurelia.local/alpha');
    } finally {
      await files.cleanup();
    }
  });

  it('trusts the CAs of several CA files', async () => {
    const next = await makeTestPki({ commonName: 'Aurelia Next CA' });
    const files = await writeTestNodeFiles(await next.node('omicron'));
    const oldCa = path.join(files.dir, 'old-ca.pem');
    await writeFile(oldCa, pki.ca.rootPem);
    try {
      const config = await Pkcs8AuthConfig.fromFiles({ ...files, ca: [oldCa, files.ca] });
      expect(loadAuthMaterial(config).caCount).toBe(2);
    } finally {
      await files.cleanup();
    }
  });

  it('names the certificate file when the key does not match it', async () => {
    const files = await writeTestNodeFiles(await pki.mismatchedKey('pi'));
    try {
      const config = await Pkcs8AuthConfig.fromFiles(files);
      const error = invalidMessage(() => loadAuthMaterial(config));
      expect(error).toBe(
        `key file '${files.key}': does not match the certificate 'CN=pi' in certificate file '${files.cert}' (their public keys differ)`,
      );
    } finally {
      await files.cleanup();
    }
  });

  it('names the certificate file when its certificate expired', async () => {
    const files = await writeTestNodeFiles(await pki.expired('rho'));
    try {
      const config = await Pkcs8AuthConfig.fromFiles(files);
      expect(invalidMessage(() => loadAuthMaterial(config))).toMatch(
        new RegExp(`^certificate file '${files.cert}': certificate 'CN=rho' expired at `),
      );
    } finally {
      await files.cleanup();
    }
  });

  it('names a missing file', async () => {
    const files = await writeTestNodeFiles(alpha);
    await files.cleanup();
    expect(await invalidMessageAsync(Pkcs8AuthConfig.fromFiles(files))).toContain(
      `key file '${files.key}' cannot be read (ENOENT)`,
    );
  });

  it('names a CA file that holds no certificate, and zero-fills the key it already read', async () => {
    const files = await writeTestNodeFiles(alpha);
    try {
      await writeFile(files.ca, '');
      expect(await invalidMessageAsync(Pkcs8AuthConfig.fromFiles(files))).toBe(
        `CA file '${files.ca}' contains no certificate`,
      );
      await writeFile(files.ca, 'not a certificate at all');
      expect(await invalidMessageAsync(Pkcs8AuthConfig.fromFiles(files))).toContain(
        `CA file '${files.ca}': content is not a valid X.509 certificate`,
      );
    } finally {
      await files.cleanup();
    }
  });

  it('refuses a certificate file that holds the private key', async () => {
    const files = await writeTestNodeFiles(alpha);
    try {
      await writeFile(files.cert, Buffer.concat([Buffer.from(alpha.certPem), alpha.keyPem]));
      const message = await invalidMessageAsync(Pkcs8AuthConfig.fromFiles(files));
      expect(message).toContain(`certificate file '${files.cert}': holds a private key`);
      expectNoKeyText(message, alpha.keyPem);
    } finally {
      await files.cleanup();
    }
  });
});

describe('Pkcs8PrivateKey', () => {
  it('redacts itself in util.inspect, String() and JSON', () => {
    const key = new Pkcs8PrivateKey(Buffer.from(alpha.keyPem));
    const shown = `Pkcs8PrivateKey(<redacted>, ${alpha.keyPem.length} bytes)`;
    expect(inspect(key)).toBe(shown);
    expect(inspect({ nested: { key } }, { depth: 5 })).toContain(shown);
    expect(String(key)).toBe(shown);
    expect(JSON.stringify({ key })).toBe('{"key":"[redacted]"}');
  });

  it('zero-fills its bytes on zeroize() and then refuses to expose them', () => {
    const bytes = Buffer.from(alpha.keyPem);
    const key = new Pkcs8PrivateKey(bytes);
    expect(key.exposeSecret()).toBe(bytes);
    key.zeroize();
    key.zeroize();
    expect(isZeroFilled(bytes)).toBe(true);
    expect(key.zeroized).toBe(true);
    expect(key.byteLength).toBe(alpha.keyPem.length);
    expect(() => key.exposeSecret()).toThrow(AureliaError);
  });
});

describe('derToPemBuffer', () => {
  it('encodes exactly like Node’s PEM writer, for any length', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const base64 = Buffer.from(bytes).toString('base64');
        const lines = base64.match(/.{1,64}/g) ?? [];
        const expected = `-----BEGIN TEST-----\n${lines.map((line) => `${line}\n`).join('')}-----END TEST-----\n`;
        expect(derToPemBuffer(bytes, 'TEST').toString('latin1')).toBe(expected);
      }),
    );
  });

  it('produces the same PEM key Node exports', () => {
    const key = createPrivateKey(alpha.keyPem);
    const der = key.export({ format: 'der', type: 'pkcs8' });
    expect(derToPemBuffer(der, 'PRIVATE KEY').toString('latin1')).toBe(
      key.export({ format: 'pem', type: 'pkcs8' }),
    );
    expect(pemKeyToDer(alpha.keyPem).equals(der)).toBe(true);
  });
});

describe('the secure context over loopback', () => {
  async function materialFor(node: TestNode): Promise<AuthMaterial> {
    return loadAuthMaterial(node.auth());
  }

  it.each(['ec-p256', 'ed25519', 'rsa'] as const)(
    'completes a TLS 1.3 mutual handshake with %s keys, each side seeing the other identity',
    async (keyType) => {
      const local = await makeTestPki({ keyType });
      const [server, client] = await Promise.all([
        local.issue(`server-${keyType}`, { keyType }),
        local.issue(`client-${keyType}`, { keyType }),
      ]);
      const outcome = await mutualTlsHandshake(
        await materialFor(server),
        await materialFor(client),
      );
      expect(outcome).toEqual({
        serverSaw: `spiffe://aurelia.local/client-${keyType}`,
        clientSaw: `spiffe://aurelia.local/server-${keyType}`,
        serverVerifyError: undefined,
        clientAuthorized: true,
        protocol: 'TLSv1.3',
      });
    },
  );

  it('works with a chain through an intermediate on both sides', async () => {
    const [server, client] = await Promise.all([
      pki.viaIntermediate('sigma'),
      pki.viaIntermediate('tau'),
    ]);
    const outcome = await mutualTlsHandshake(await materialFor(server), await materialFor(client));
    expect(outcome.serverSaw).toBe('spiffe://aurelia.local/tau');
    expect(outcome.clientSaw).toBe('spiffe://aurelia.local/sigma');
    expect(outcome.serverVerifyError).toBeUndefined();
  });

  it('refuses TLS 1.2 both when accepting and when dialing', async () => {
    const tls12 = {
      secureContext: createSecureContext({
        maxVersion: 'TLSv1.2',
        ca: beta.caPem,
        cert: beta.chainPem,
        key: beta.keyPem,
      }),
    };
    await expect(mutualTlsHandshake(await materialFor(alpha), tls12)).rejects.toThrow(
      /protocol version|unsupported protocol/,
    );
    await expect(mutualTlsHandshake(tls12, await materialFor(alpha))).rejects.toThrow(
      /protocol version|unsupported protocol/,
    );
  });

  it('makes the dialing side reject a server from a CA it does not trust', async () => {
    const foreign = await pki.foreign('upsilon');
    await expect(
      mutualTlsHandshake(loadAuthMaterial(foreign.auth()), await materialFor(alpha)),
    ).rejects.toMatchObject({ code: 'SELF_SIGNED_CERT_IN_CHAIN' });
  });

  it('flags a client from an untrusted CA at the accepting side (a bare TLSSocket does not reject it)', async () => {
    // The foreign client trusts our CA, so only the accepting side can object.
    const foreign = await pki.foreign('phi');
    const outcome = await mutualTlsHandshake(
      await materialFor(alpha),
      loadAuthMaterial(foreign.auth(pki.ca.rootPem)),
    );
    expect(outcome.serverVerifyError).toBe('SELF_SIGNED_CERT_IN_CHAIN');
  });

  it('serves any number of handshakes from one context', async () => {
    const server = await materialFor(alpha);
    for (const name of ['chi', 'psi']) {
      const client = loadAuthMaterial((await pki.node(name)).auth());
      expect((await mutualTlsHandshake(server, client)).serverSaw).toBe(
        `spiffe://aurelia.local/${name}`,
      );
    }
  });
});
