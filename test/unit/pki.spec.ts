import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import fc from 'fast-check';

import {
  DEFAULT_TRUST_DOMAIN,
  createCertificateAuthority,
  isValidNodeName,
  isValidTrustDomain,
  issueIntermediateCertificateAuthority,
  issueNodeCertificate,
  loadCertificateAuthority,
  type CertificateAuthority,
  type PkiKeyType,
} from '../../lib/cli/pki.js';
import { ErrorId } from '../../lib/engine/errors.js';
import { writeTestNodeFiles } from '../support/pki.js';
import { rejection } from '../support/expect.js';

const run = promisify(execFile);
const DAY_MS = 24 * 60 * 60 * 1000;
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

let ca: CertificateAuthority;

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'PKI Spec CA' });
});

/** The InvalidConfig error `p` rejects with. */
const invalidConfig = (p: Promise<unknown>) => rejection(p, ErrorId.InvalidConfig);

function extensionsOf(pem: string) {
  const cert = new x509.X509Certificate(pem);
  return {
    basic: cert.getExtension(x509.BasicConstraintsExtension),
    usage: cert.getExtension(x509.KeyUsagesExtension),
    san: cert.getExtension(x509.SubjectAlternativeNameExtension),
  };
}

async function opensslVerify(caPem: string, leafPem: string, untrustedPem?: string) {
  const files = await writeTestNodeFiles({
    name: 'verify',
    identity: undefined,
    certPem: leafPem,
    chainPem: leafPem,
    keyPem: Buffer.alloc(0),
    caPem,
    keyType: 'ec-p256',
    notBefore: new Date(),
    notAfter: new Date(),
  });
  try {
    const args = ['verify', '-CAfile', files.ca];
    if (untrustedPem !== undefined) {
      const untrusted = path.join(files.dir, 'untrusted.pem');
      await writeFile(untrusted, untrustedPem);
      args.push('-untrusted', untrusted);
    }
    return (await run('openssl', [...args, files.cert], { timeout: 10_000 })).stdout;
  } finally {
    await files.cleanup();
  }
}

describe('createCertificateAuthority', () => {
  it.each<PkiKeyType>(['ec-p256', 'ed25519', 'rsa'])(
    'makes a self-signed %s root with CA:true and keyCertSign',
    async (keyType) => {
      const root = await createCertificateAuthority({ commonName: `Root ${keyType}`, keyType });
      const cert = new X509Certificate(root.certPem);
      expect(cert.ca).toBe(true);
      expect(cert.subject).toBe(`CN=Root ${keyType}`);
      expect(cert.checkIssued(cert)).toBe(true);
      expect(cert.verify(cert.publicKey)).toBe(true);
      expect(cert.checkPrivateKey(createPrivateKey(root.keyPem))).toBe(true);
      const { basic, usage } = extensionsOf(root.certPem);
      expect(basic?.critical).toBe(true);
      expect(usage!.usages & x509.KeyUsageFlags.keyCertSign).toBeTruthy();
      expect(root.keyPem.toString('latin1')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      expect(root.rootPem).toBe(root.certPem);
      expect(root.chainPem).toBe('');
    },
  );

  it('is valid from a few minutes ago for ten years unless told otherwise', async () => {
    const cert = new X509Certificate(ca.certPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    expect(Date.now() - from).toBeGreaterThan(60_000);
    expect(Date.now() - from).toBeLessThan(10 * 60_000);
    expect(Math.round((to - from) / DAY_MS)).toBe(3650);
  });

  it('rejects an empty common name, an unknown key type and an inverted validity', async () => {
    expect((await invalidConfig(createCertificateAuthority({ commonName: ' ' }))).message).toBe(
      'commonName must be a non-empty string',
    );
    const keyType = 'dsa' as PkiKeyType;
    expect(
      (await invalidConfig(createCertificateAuthority({ commonName: 'x', keyType }))).message,
    ).toBe("keyType 'dsa' is not one of ec-p256, ec-p384, ed25519, rsa");
    const now = Date.now();
    expect(
      (
        await invalidConfig(
          createCertificateAuthority({
            commonName: 'x',
            notBefore: new Date(now),
            notAfter: new Date(now - 1000),
          }),
        )
      ).message,
    ).toContain('must be later than notBefore');
  });

  it('keeps commas and quotes of a common name, and refuses control characters', async () => {
    const odd = await createCertificateAuthority({ commonName: 'Dev CA, "EU"' });
    expect(new X509Certificate(odd.certPem).subject).toBe('CN=Dev CA\\, \\"EU\\"');
    expect(odd.commonName).toBe('Dev CA, "EU"');
    expect(
      (await invalidConfig(createCertificateAuthority({ commonName: 'line\nbreak' }))).message,
    ).toContain('must not contain control characters');
  });
});

describe('issueNodeCertificate', () => {
  it('issues a leaf for serverAuth and clientAuth with the SPIFFE URI as identity', async () => {
    const node = await issueNodeCertificate(ca, { name: 'alpha' });
    const cert = new X509Certificate(node.certPem);
    expect(node.identity).toBe(`spiffe://${DEFAULT_TRUST_DOMAIN}/alpha`);
    expect(cert.subject).toBe('CN=alpha');
    expect(cert.issuer).toBe('CN=PKI Spec CA');
    expect(cert.subjectAltName).toBe('URI:spiffe://aurelia.local/alpha');
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual(expect.arrayContaining([OID_SERVER_AUTH, OID_CLIENT_AUTH]));
    expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(node.keyPem))).toBe(true);
    expect(node.chainPem).toBe(node.certPem);
    expect(node.caPem).toBe(ca.certPem);
    const { usage } = extensionsOf(node.certPem);
    expect(usage!.usages & x509.KeyUsageFlags.keyCertSign).toBeFalsy();
    expect(usage!.usages & x509.KeyUsageFlags.digitalSignature).toBeTruthy();
  });

  it('puts the trust domain, DNS names and IP addresses into the SAN', async () => {
    const node = await issueNodeCertificate(ca, {
      name: 'beta',
      trustDomain: 'prod.example',
      dnsNames: ['localhost', 'beta.internal'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    expect(new X509Certificate(node.certPem).subjectAltName).toBe(
      'URI:spiffe://prod.example/beta, DNS:localhost, DNS:beta.internal, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(new X509Certificate(node.certPem).checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(new X509Certificate(node.certPem).checkHost('beta.internal')).toBe('beta.internal');
  });

  it('issues DNS-only and CN-only certificates for identity tests', async () => {
    const dns = await issueNodeCertificate(ca, { name: 'g', uri: false, dnsNames: ['g.local'] });
    expect(dns.identity).toBe('g.local');
    const cn = await issueNodeCertificate(ca, { name: 'h', uri: false, commonName: 'Host H' });
    expect(new X509Certificate(cn.certPem).subjectAltName).toBeUndefined();
    expect(cn.identity).toBe('Host H');
  });

  it('refuses a certificate that would prove no identity, naming why and what to give it', async () => {
    const urlish = await invalidConfig(
      issueNodeCertificate(ca, { name: 'cn', uri: false, commonName: 'orders:eu' }),
    );
    expect(urlish.message).toMatch(
      /^node certificate 'cn' would prove no identity: its common name "orders:eu" contains ':'.*Give it a URI SAN.*a DNS name, or a common name without ':'/,
    );
    const spaced = await invalidConfig(
      issueNodeCertificate(ca, { name: 'sp', uri: 'spiffe://aurelia.local/a b' }),
    );
    expect(spaced.message).toContain(
      'its URI SAN "spiffe://aurelia.local/a b" is not an absolute URI',
    );
    // A ':' in the CN is harmless when a SAN names the certificate: the SAN is its identity.
    const named = await issueNodeCertificate(ca, { name: 'ok', commonName: 'orders:eu' });
    expect(named.identity).toBe('spiffe://aurelia.local/ok');
    // Tests of the refusal at the handshake still get such a certificate when they ask for it.
    const forged = await issueNodeCertificate(ca, {
      name: 'forged',
      uri: false,
      commonName: 'spiffe://aurelia.local/orders',
      allowNoIdentity: true,
    });
    expect(forged.identity).toBeUndefined();
  });

  it('honours explicit validity dates to the second', async () => {
    const notBefore = new Date('2030-01-02T03:04:05Z');
    const notAfter = new Date('2031-01-02T03:04:05Z');
    const node = await issueNodeCertificate(ca, { name: 'later', notBefore, notAfter });
    const cert = new X509Certificate(node.certPem);
    expect(new Date(cert.validFrom).toISOString()).toBe(notBefore.toISOString());
    expect(new Date(cert.validTo).toISOString()).toBe(notAfter.toISOString());
  });

  it('is valid for a year by default', async () => {
    const cert = new X509Certificate((await issueNodeCertificate(ca, { name: 'year' })).certPem);
    const span = new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime();
    expect(Math.round(span / DAY_MS)).toBe(365);
  });

  it('gives every certificate its own positive serial number', async () => {
    const serials = await Promise.all(
      [1, 2, 3, 4].map(async (i) => {
        const node = await issueNodeCertificate(ca, { name: `s${i}` });
        return new X509Certificate(node.certPem).serialNumber;
      }),
    );
    expect(new Set(serials).size).toBe(4);
    for (const serial of serials)
      expect(Number.parseInt(serial.slice(0, 2), 16)).toBeLessThan(0x80);
  });

  it.each<PkiKeyType>(['ec-p256', 'ed25519', 'rsa'])(
    'issues %s certificates that openssl verifies against the CA',
    async (keyType) => {
      const root = await createCertificateAuthority({ commonName: `Verify ${keyType}`, keyType });
      const node = await issueNodeCertificate(root, { name: 'v', keyType });
      expect(await opensslVerify(root.certPem, node.certPem)).toContain(': OK');
    },
  );

  it('rejects names, trust domains, DNS names and IPs that cannot be put in a certificate', async () => {
    expect((await invalidConfig(issueNodeCertificate(ca, { name: '../etc' }))).message).toContain(
      "node name '../etc' must be 1-64 letters, digits",
    );
    expect(
      (await invalidConfig(issueNodeCertificate(ca, { name: 'a', trustDomain: 'Upper.Case' })))
        .message,
    ).toContain("trust domain 'Upper.Case'");
    expect(
      (await invalidConfig(issueNodeCertificate(ca, { name: 'a', dnsNames: ['bad host'] })))
        .message,
    ).toBe("DNS name 'bad host' is not a valid host name");
    expect(
      (await invalidConfig(issueNodeCertificate(ca, { name: 'a', ipAddresses: ['300.1.1.1'] })))
        .message,
    ).toBe("IP address '300.1.1.1' is not a valid IPv4 or IPv6 address");
    expect(
      (await invalidConfig(issueNodeCertificate(ca, { name: 'a', uri: false, commonName: false })))
        .message,
    ).toBe("node certificate 'a' would have no URI SAN, DNS SAN or common name");
  });
});

describe('intermediate certificate authorities', () => {
  it('sign leaves whose chain openssl verifies through the intermediate', async () => {
    const intermediate = await issueIntermediateCertificateAuthority(ca, {
      commonName: 'PKI Spec Intermediate',
    });
    const node = await issueNodeCertificate(intermediate, { name: 'chained' });
    expect(node.caPem).toBe(ca.certPem);
    expect(node.chainPem).toBe(node.certPem + intermediate.certPem);
    const { basic } = extensionsOf(intermediate.certPem);
    expect(basic?.ca).toBe(true);
    expect(basic?.pathLength).toBe(0);
    expect(await opensslVerify(ca.certPem, node.certPem, intermediate.certPem)).toContain(': OK');
    await expect(opensslVerify(ca.certPem, node.certPem)).rejects.toThrow();
  });
});

describe('loadCertificateAuthority', () => {
  it('restores a CA from its PEM files so it issues more certificates', async () => {
    const restored = await loadCertificateAuthority(ca.certPem, Buffer.from(ca.keyPem));
    expect(restored.commonName).toBe('PKI Spec CA');
    expect(restored.keyType).toBe('ec-p256');
    const node = await issueNodeCertificate(restored, { name: 'again' });
    expect(await opensslVerify(ca.certPem, node.certPem)).toContain(': OK');
  });

  it('refuses a key of another CA, a leaf certificate and garbage', async () => {
    const other = await createCertificateAuthority({ commonName: 'Other' });
    expect(
      (await invalidConfig(loadCertificateAuthority(ca.certPem, other.keyPem, 'ca.pem'))).message,
    ).toBe('ca.pem key does not belong to the ca.pem certificate');
    const leaf = await issueNodeCertificate(ca, { name: 'leaf' });
    expect((await invalidConfig(loadCertificateAuthority(leaf.certPem, leaf.keyPem))).message).toBe(
      'CA certificate is not a CA certificate (basicConstraints CA:false)',
    );
    expect((await invalidConfig(loadCertificateAuthority('junk', ca.keyPem))).message).toBe(
      'CA certificate is not a valid PEM certificate',
    );
  });
});

describe('name validation', () => {
  it('accepts only names that are safe as file names and URI path segments', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (name) => {
        if (!isValidNodeName(name)) return;
        expect(name.length).toBeGreaterThan(0);
        expect(name.length).toBeLessThanOrEqual(64);
        expect(name).not.toMatch(/[/\\\0]/);
        expect(name.startsWith('.')).toBe(false);
        expect(encodeURIComponent(name)).toBe(name);
      }),
      { numRuns: 2000 },
    );
    expect(['alpha', 'node-1', 'a.b_c'].every(isValidNodeName)).toBe(true);
    expect(['', '.', '..', '-x', 'a/b', 'a b', 'x'.repeat(65)].some(isValidNodeName)).toBe(false);
  });

  it('accepts lowercase DNS-like trust domains only', () => {
    expect(isValidTrustDomain('aurelia.local')).toBe(true);
    expect(isValidTrustDomain('Aurelia.local')).toBe(false);
    expect(isValidTrustDomain('a/b')).toBe(false);
  });
});
