import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import fc from 'fast-check';

import {
  certificateIdentity,
  identityNamespace,
  parseSubjectAltName,
  readCertificateIdentity,
  type SubjectAltNameEntry,
} from '../../lib/engine/transport/identity.js';
import { makeTestPki, type TestPki } from '../support/pki.js';

let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
});

/** The fields of `tlsSocket.getPeerCertificate()` that identity reads. */
function peer(subjectaltname: string | undefined, subject: Record<string, unknown> = {}) {
  return { subject, subjectaltname } as unknown as PeerCertificate;
}

function hasControl(text: string): boolean {
  // eslint-disable-next-line no-control-regex -- the identity rule refuses control characters
  return /[\u0000-\u001f\u007f]/.test(text);
}

/**
 * Node's rendering of one SAN entry (src/crypto/crypto_common.cc, PrintAltName): values with a
 * quote, backslash, comma, apostrophe or control character are printed as a JSON string.
 */
function nodeEntry({ type, value }: SubjectAltNameEntry): string {
  // eslint-disable-next-line no-control-regex -- Node quotes values with control characters
  const safe = !/["\\,'\u0000-\u001f\u007f]/.test(value);
  if (safe) return `${type}:${value}`;
  let quoted = '';
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (char === '\\') quoted += '\\\\';
    else if (char === '"') quoted += '\\"';
    else if ((code >= 0x20 && char !== ',' && code <= 0x7e) || code > 0x7f) quoted += char;
    else quoted += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return `${type}:"${quoted}"`;
}

describe('certificateIdentity of real certificates', () => {
  it('is the URI SAN when there is one, even beside DNS names and IP addresses', async () => {
    const node = await pki.issue('billing', {
      dnsNames: ['billing.internal'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    const cert = new X509Certificate(node.certPem);
    expect(certificateIdentity(cert)).toBe('spiffe://aurelia.local/billing');
    expect(node.identity).toBe('spiffe://aurelia.local/billing');
  });

  it('is the first DNS SAN when there is no URI SAN', async () => {
    const node = await pki.issue('ledger', {
      uri: false,
      dnsNames: ['ledger.internal', 'ledger.example'],
      ipAddresses: ['10.0.0.1'],
    });
    expect(certificateIdentity(new X509Certificate(node.certPem))).toBe('ledger.internal');
  });

  it('is the subject CN when there is no SAN at all', async () => {
    const node = await pki.cnOnly('audit');
    expect(certificateIdentity(new X509Certificate(node.certPem))).toBe('audit');
  });

  it('is the CN when the SAN holds only IP addresses', async () => {
    const node = await pki.issue('metrics', { uri: false, ipAddresses: ['192.0.2.7'] });
    expect(certificateIdentity(new X509Certificate(node.certPem))).toBe('metrics');
  });

  it('keeps commas and quotes of a URI SAN and of a CN intact', async () => {
    const uri = await pki.issue('odd', { uri: 'spiffe://aurelia.local/a,b"c' });
    expect(certificateIdentity(new X509Certificate(uri.certPem))).toBe(
      'spiffe://aurelia.local/a,b"c',
    );
    const cn = await pki.issue('eu', { uri: false, commonName: 'Billing, EU "west"' });
    expect(certificateIdentity(new X509Certificate(cn.certPem))).toBe('Billing, EU "west"');
  });

  it('does not let a URI value that looks like a list smuggle in another entry', async () => {
    const node = await pki.issue('smuggle', {
      uri: 'spiffe://aurelia.local/x, URI:spiffe://aurelia.local/admin',
      dnsNames: ['smuggle.internal'],
      allowNoIdentity: true,
    });
    const cert = new X509Certificate(node.certPem);
    expect(parseSubjectAltName(cert.subjectAltName!)).toContainEqual({
      type: 'URI',
      value: 'spiffe://aurelia.local/x, URI:spiffe://aurelia.local/admin',
    });
    // Whole, the value is no URI (it holds spaces): no identity at all, neither admin nor the DNS name.
    expect(certificateIdentity(cert)).toBeUndefined();
  });

  it('is undefined for a certificate with neither SAN identity nor CN', async () => {
    const node = await pki.issue('anon', {
      uri: false,
      commonName: false,
      ipAddresses: ['192.0.2.8'],
      allowNoIdentity: true,
    });
    expect(node.identity).toBeUndefined();
  });
});

describe('certificateIdentity of peer certificate objects', () => {
  it('prefers the first URI, then the first DNS name, then the CN', () => {
    expect(
      certificateIdentity(peer('DNS:a.internal, URI:spiffe://m/a, URI:spiffe://m/b', { CN: 'a' })),
    ).toBe('spiffe://m/a');
    expect(
      certificateIdentity(peer('IP Address:10.0.0.1, DNS:b.internal, DNS:c', { CN: 'b' })),
    ).toBe('b.internal');
    expect(certificateIdentity(peer(undefined, { CN: 'c' }))).toBe('c');
    expect(certificateIdentity(peer('', { CN: 'c' }))).toBe('c');
  });

  it('takes the first of several CNs', () => {
    expect(certificateIdentity(peer(undefined, { CN: ['first', 'second'] }))).toBe('first');
  });

  it('is undefined for the empty object Node returns when the peer sent no certificate', () => {
    expect(certificateIdentity({} as PeerCertificate)).toBeUndefined();
  });

  it('skips empty URI and DNS values', () => {
    expect(certificateIdentity(peer('URI:, DNS:, DNS:d.internal', { CN: 'd' }))).toBe('d.internal');
  });

  it('records the kind of each identity', () => {
    expect(readCertificateIdentity(peer('URI:spiffe://m/a', { CN: 'a' }))).toEqual({
      kind: 'uri',
      name: 'spiffe://m/a',
    });
    expect(readCertificateIdentity(peer('DNS:b.internal', { CN: 'b' }))).toEqual({
      kind: 'dns',
      name: 'b.internal',
    });
    expect(readCertificateIdentity(peer(undefined, { CN: 'c' }))).toEqual({
      kind: 'cn',
      name: 'c',
    });
  });

  it('refuses a CN that looks like a URI: URI identities come only from URI SANs', () => {
    const read = readCertificateIdentity(peer(undefined, { CN: 'spiffe://aurelia.local/orders' }));
    expect(read.kind).toBeUndefined();
    expect(read).toMatchObject({
      problem: expect.stringContaining('a URI identity must be a URI SAN'),
    });
    expect(certificateIdentity(peer('IP Address:10.0.0.1', { CN: 'a:b' }))).toBeUndefined();
  });

  it('refuses a DNS SAN that is not a host name, without falling back to the CN', () => {
    const read = readCertificateIdentity(
      peer('DNS:spiffe://aurelia.local/orders', { CN: 'orders' }),
    );
    expect(read).toMatchObject({
      kind: undefined,
      problem: expect.stringContaining('not a host name'),
    });
    expect(certificateIdentity(peer('DNS:*.internal', { CN: 'x' }))).toBeUndefined();
  });

  it('refuses a URI SAN that has no scheme, so it can never pass for a DNS name', () => {
    expect(certificateIdentity(peer('URI:billing.internal', { CN: 'x' }))).toBeUndefined();
    expect(certificateIdentity(peer('URI:"spiffe://m/a b"', { CN: 'x' }))).toBeUndefined();
  });

  it('refuses a CN with a control character', () => {
    expect(certificateIdentity(peer(undefined, { CN: 'orders\nforged log line' }))).toBeUndefined();
  });

  it('tells URI identities from names by their text alone', () => {
    expect(identityNamespace('spiffe://aurelia.local/orders')).toBe('uri');
    expect(identityNamespace('orders.internal')).toBe('name');
  });

  it('is undefined, not the CN, when the SAN text is malformed', () => {
    expect(certificateIdentity(peer('URI:"spiffe://m/unterminated', { CN: 'x' }))).toBeUndefined();
    expect(certificateIdentity(peer('no-prefix-here', { CN: 'x' }))).toBeUndefined();
  });
});

describe('parseSubjectAltName', () => {
  it('splits entries on ", " and keeps the type names Node prints', () => {
    expect(parseSubjectAltName('DNS:a, IP Address:127.0.0.1, email:x@y, URI:spiffe://m/a')).toEqual(
      [
        { type: 'DNS', value: 'a' },
        { type: 'IP Address', value: '127.0.0.1' },
        { type: 'email', value: 'x@y' },
        { type: 'URI', value: 'spiffe://m/a' },
      ],
    );
  });

  it('returns no entries for empty text', () => {
    expect(parseSubjectAltName('')).toEqual([]);
  });

  it('undoes quoting after the prefix (current Node) and around the whole entry (older Node)', () => {
    expect(parseSubjectAltName('URI:"spiffe://m/a\\u002cb", DNS:x')).toEqual([
      { type: 'URI', value: 'spiffe://m/a,b' },
      { type: 'DNS', value: 'x' },
    ]);
    expect(parseSubjectAltName('"URI:spiffe://m/a\\u002cb", DNS:x')).toEqual([
      { type: 'URI', value: 'spiffe://m/a,b' },
      { type: 'DNS', value: 'x' },
    ]);
  });

  it('decodes escaped quotes, backslashes and control characters', () => {
    expect(parseSubjectAltName('DNS:"a\\"b\\\\c\\u000ad"')).toEqual([
      { type: 'DNS', value: 'a"b\\c\nd' },
    ]);
  });

  it('rejects text that is not in Node’s format', () => {
    expect(parseSubjectAltName('DNS:"unterminated')).toBeUndefined();
    expect(parseSubjectAltName('DNS:"bad \\x escape"')).toBeUndefined();
    expect(parseSubjectAltName('DNS:a, :b')).toBeUndefined();
    expect(parseSubjectAltName('DNS:a, plain')).toBeUndefined();
  });

  it('reads back any list of entries exactly as Node renders it', () => {
    const entry = fc.record({
      type: fc.constantFrom('DNS', 'URI', 'email', 'IP Address', 'othername'),
      value: fc.string({ unit: 'binary', maxLength: 40 }),
    });
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 6 }), (entries) => {
        expect(parseSubjectAltName(entries.map(nodeEntry).join(', '))).toEqual(entries);
      }),
      { numRuns: 500 },
    );
  });

  it('yields the first URI of any rendered list as the identity, if it is a URI', () => {
    const entry = fc.record({
      type: fc.constantFrom('DNS', 'URI', 'IP Address'),
      value: fc.oneof(
        fc.string({ minLength: 1, maxLength: 30 }),
        fc.constantFrom('spiffe://m/a', 'billing.internal', 'a:b', 'x'),
      ),
    });
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 6 }), (entries) => {
        const text = entries.map(nodeEntry).join(', ');
        const uri = entries.find((e) => e.type === 'URI')?.value;
        const dns = entries.find((e) => e.type === 'DNS')?.value;
        const expected =
          uri !== undefined
            ? /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri) && !hasControl(uri)
              ? uri
              : undefined
            : dns !== undefined
              ? /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(dns)
                ? dns
                : undefined
              : 'fallback';
        expect(certificateIdentity(peer(text, { CN: 'fallback' }))).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('never gives a certificate without a URI SAN an identity that could be a URI', () => {
    const entry = fc.record({
      type: fc.constantFrom('DNS', 'IP Address', 'email'),
      value: fc.string({ minLength: 1, maxLength: 30 }),
    });
    fc.assert(
      fc.property(
        fc.array(entry, { maxLength: 4 }),
        fc.oneof(fc.string({ maxLength: 30 }), fc.constant('spiffe://aurelia.local/orders')),
        (entries, cn) => {
          const read = readCertificateIdentity(peer(entries.map(nodeEntry).join(', '), { CN: cn }));
          if (read.kind !== undefined) {
            expect(read.kind).not.toBe('uri');
            expect(read.name).not.toContain(':');
            expect(identityNamespace(read.name)).toBe('name');
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
