import { inspect } from 'node:util';
import fc from 'fast-check';
import { DomusAddr, SOCKET_PATH_MAX_BYTES } from '../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import { expectError } from '../support/expect.js';

/** Runs `fn`, expecting `AureliaError(InvalidConfig)` whose message contains every fragment. */
const expectInvalid = (fn: () => unknown, ...fragments: string[]): AureliaError =>
  expectError(ErrorId.InvalidConfig, fn, ...fragments);

describe('DomusAddr.parse', () => {
  it('reads a TLS address with an IPv4 host', () => {
    const addr = DomusAddr.parse('tls://127.0.0.1:7000');
    expect(addr.kind).toBe('tcp');
    expect(addr.host).toBe('127.0.0.1');
    expect(addr.port).toBe(7000);
    expect(addr.path).toBeUndefined();
    expect(addr.toString()).toBe('tls://127.0.0.1:7000');
  });

  it('reads a TLS address with a bracketed IPv6 host and prints it in brackets', () => {
    const addr = DomusAddr.parse('tls://[::1]:7000');
    expect(addr.host).toBe('::1');
    expect(addr.port).toBe(7000);
    expect(addr.toString()).toBe('tls://[::1]:7000');
  });

  it('reads a TLS address with a host name', () => {
    const addr = DomusAddr.parse('tls://node-a.internal:7000');
    expect(addr.host).toBe('node-a.internal');
    expect(addr.toString()).toBe('tls://node-a.internal:7000');
  });

  it('reads unix:///path and unix:/path as the same socket address', () => {
    const long = DomusAddr.parse('unix:///run/aurelia/a.sock');
    const short = DomusAddr.parse('unix:/run/aurelia/a.sock');
    expect(long.kind).toBe('socket');
    expect(long.path).toBe('/run/aurelia/a.sock');
    expect(long.host).toBeUndefined();
    expect(long.port).toBeUndefined();
    expect(short.equals(long)).toBe(true);
    expect(short.toString()).toBe('unix:///run/aurelia/a.sock');
  });

  it('canonicalises scheme case, host case, leading port zeros and IPv6 spelling', () => {
    expect(DomusAddr.parse('TLS://Node-A.Internal:07000').toString()).toBe(
      'tls://node-a.internal:7000',
    );
    expect(DomusAddr.parse('tls://[0:0:0:0:0:0:0:1]:7000').toString()).toBe('tls://[::1]:7000');
    expect(DomusAddr.parse('tls://[FE80::ABCD]:1').host).toBe('fe80::abcd');
    expect(DomusAddr.parse('UNIX:///tmp/a.sock').toString()).toBe('unix:///tmp/a.sock');
  });

  it('converts international host names to their ASCII (IDNA) form', () => {
    expect(DomusAddr.parse('tls://bücher.example:443').host).toBe('xn--bcher-kva.example');
  });

  it('accepts port 0 (pick a free port) and port 65535', () => {
    expect(DomusAddr.parse('tls://127.0.0.1:0').port).toBe(0);
    expect(DomusAddr.parse('tls://127.0.0.1:65535').port).toBe(65535);
  });

  it.each([
    ['tls://host', 'the port is missing'],
    ['tls://host:', 'the port is missing'],
    ['tls://[::1]', 'the port is missing'],
    ['http://x:1', 'unsupported scheme "http:"'],
    ['tls://:70', 'the host is missing'],
    ['tls://[]:70', 'the host is missing'],
    ['tls://127.0.0.1:70000', 'port "70000" is not an integer in 0..65535'],
    ['tls://127.0.0.1:-1', 'port "-1" is not an integer in 0..65535'],
    ['tls://127.0.0.1:7e3', 'port "7e3" is not an integer'],
    ['tls://127.0.0.1:1234567', 'port "1234567" is not an integer'],
    ['tls://::1:7000', 'an IPv6 host must be written in brackets'],
    ['tls://[::1:7000', 'missing its closing "]"'],
    ['tls://[::1]x:7000', 'unexpected "x:7000" after the IPv6 host'],
    ['tls://[not-v6]:7000', '"not-v6" is not a valid IPv6 address'],
    ['tls://[fe80::1%eth0]:7000', 'zone ids'],
    ['tls://host:70/path', 'without user, path, query or fragment'],
    ['tls://user@host:70', 'without user, path, query or fragment'],
    ['tls://host:70?x=1', 'without user, path, query or fragment'],
    ['tls:host:70', '"tls:" must be followed by "//HOST:PORT"'],
    ['tls://bad_host!:70', 'is neither an IP address nor a host name'],
    ['tls://-lead.example:70', 'is neither an IP address nor a host name'],
    ['tls://a..b:70', 'is neither an IP address nor a host name'],
    ['tls://300.1.1.1:70', 'looks like an IPv4 address but is not a valid one'],
    ['tls://127.1:70', 'looks like an IPv4 address'],
    [' tls://127.0.0.1:70', 'no scheme'],
    ['tls://127.0.0.1:70 ', 'port "70 " is not an integer'],
    ['unix://run/a.sock', 'socket path "run/a.sock" is not absolute'],
    ['unix:run/a.sock', 'socket path "run/a.sock" is not absolute'],
    ['unix://', 'the socket path is empty'],
    ['unix:///tmp/a\u0000b', 'contains a NUL character'],
    ['', 'no scheme'],
    ['garbage', 'no scheme'],
    ['127.0.0.1:7000', 'no scheme'],
    ['ftp://h:1', 'unsupported scheme "ftp:"'],
  ])('rejects %j, saying %s', (input, problem) => {
    expectInvalid(
      () => DomusAddr.parse(input),
      `invalid address ${JSON.stringify(input)}`,
      problem,
    );
  });

  it('rejects a socket path longer than 107 UTF-8 bytes', () => {
    const path = `/${'a'.repeat(SOCKET_PATH_MAX_BYTES)}`;
    expectInvalid(
      () => DomusAddr.parse(`unix://${path}`),
      'the socket path is 108 bytes in UTF-8; the limit is 107',
    );
  });

  it('rejects a value that is not a string', () => {
    expectInvalid(() => DomusAddr.parse(7000 as unknown as string), 'an address is a string');
  });

  it('throws only InvalidConfig errors for arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `tls://${s}`),
          fc.string().map((s) => `unix:${s}`),
        ),
        (text) => {
          try {
            DomusAddr.parse(text);
          } catch (err) {
            return (
              AureliaError.is(err, ErrorId.InvalidConfig) && err.message.includes('invalid address')
            );
          }
          return true;
        },
      ),
    );
  });
});

describe('DomusAddr.tcp', () => {
  it('builds a TCP address whose host and port are typed as present', () => {
    const addr = DomusAddr.tcp('10.0.0.5', 9000);
    const port: number = addr.port;
    const host: string = addr.host;
    expect([host, port]).toEqual(['10.0.0.5', 9000]);
    expect(addr.isTcp()).toBe(true);
    expect(addr.isSocket()).toBe(false);
  });

  it('accepts IPv6 hosts with or without brackets', () => {
    expect(DomusAddr.tcp('::1', 1).equals(DomusAddr.tcp('[::1]', 1))).toBe(true);
    expect(DomusAddr.tcp('[::1]', 1).host).toBe('::1');
  });

  it('rejects ports outside 0..65535 and non-integer ports', () => {
    for (const port of [-1, 65536, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expectInvalid(() => DomusAddr.tcp('localhost', port), 'invalid TCP port', '0..65535');
    }
    expectInvalid(
      () => DomusAddr.tcp('localhost', '80' as unknown as number),
      'invalid TCP port "80"',
    );
  });

  it('rejects empty, malformed and non-string hosts', () => {
    expectInvalid(() => DomusAddr.tcp('', 1), 'invalid TCP host ""', 'the host is empty');
    expectInvalid(() => DomusAddr.tcp('a b', 1), 'invalid TCP host "a b"');
    expectInvalid(() => DomusAddr.tcp('fe80::1%eth0', 1), 'zone ids');
    expectInvalid(() => DomusAddr.tcp('1:2:3', 1), 'is not a valid IPv6 address');
    expectInvalid(() => DomusAddr.tcp(`${'a'.repeat(64)}.example`, 1), 'neither an IP address');
    expectInvalid(() => DomusAddr.tcp(null as unknown as string, 1), 'a host is a string');
  });
});

describe('DomusAddr.socket', () => {
  it('builds a socket address whose path is typed as present', () => {
    const addr = DomusAddr.socket('/run/a.sock');
    const path: string = addr.path;
    expect(path).toBe('/run/a.sock');
    expect(addr.isSocket()).toBe(true);
    expect(addr.toString()).toBe('unix:///run/a.sock');
  });

  it('accepts exactly 107 bytes and measures the limit in UTF-8 bytes, not characters', () => {
    expect(DomusAddr.socket(`/${'a'.repeat(106)}`).path).toHaveLength(107);
    // 54 two-byte characters: 55 characters but 109 bytes.
    const wide = `/${'é'.repeat(54)}`;
    expect(wide.length).toBeLessThan(SOCKET_PATH_MAX_BYTES);
    expectInvalid(() => DomusAddr.socket(wide), 'the socket path is 109 bytes in UTF-8');
  });

  it('rejects relative, empty and NUL-containing paths', () => {
    expectInvalid(() => DomusAddr.socket('a.sock'), 'invalid socket path "a.sock"', 'not absolute');
    expectInvalid(() => DomusAddr.socket(''), 'the socket path is empty');
    expectInvalid(() => DomusAddr.socket('/tmp/\u0000'), 'NUL');
    expectInvalid(
      () => DomusAddr.socket(undefined as unknown as string),
      'a socket path is a string',
    );
  });
});

describe('DomusAddr identity', () => {
  it('is immutable', () => {
    const addr = DomusAddr.tcp('localhost', 1);
    expect(Object.isFrozen(addr)).toBe(true);
    expect(() => {
      (addr as { port: number }).port = 2;
    }).toThrow(TypeError);
  });

  it('compares by canonical form and offers a Map key with the same meaning', () => {
    const a = DomusAddr.parse('tls://[0::1]:7000');
    const b = DomusAddr.tcp('::1', 7000);
    expect(a.equals(b)).toBe(true);
    expect(a.key).toBe(b.key);
    const peers = new Map([[a.key, 'peer']]);
    expect(peers.get(b.key)).toBe('peer');
    expect(a.equals(DomusAddr.tcp('::1', 7001))).toBe(false);
    expect(DomusAddr.socket('/a').equals(DomusAddr.socket('/b'))).toBe(false);
    expect(a.equals(undefined)).toBe(false);
    expect(a.equals(null)).toBe(false);
  });

  it('serialises to its canonical string in JSON and in util.inspect', () => {
    const addr = DomusAddr.tcp('Example.COM', 80);
    expect(JSON.stringify({ addr })).toBe('{"addr":"tls://example.com:80"}');
    expect(inspect(addr)).toBe('DomusAddr(tls://example.com:80)');
    expect(`${addr}`).toBe('tls://example.com:80');
  });

  it('parse(toString(a)) equals a for generated addresses, and toString is canonical', () => {
    const port = fc.integer({ min: 0, max: 65535 });
    const tcp = fc
      .tuple(fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()), port)
      .map(([host, p]) => DomusAddr.tcp(host, p));
    const socket = fc
      .string({ unit: 'binary', maxLength: 80 })
      .map((s) => `/${s}`)
      .filter((p) => !p.includes('\0') && Buffer.byteLength(p, 'utf8') <= SOCKET_PATH_MAX_BYTES)
      .map((p) => DomusAddr.socket(p));
    fc.assert(
      fc.property(fc.oneof(tcp, socket), (addr) => {
        const text = addr.toString();
        const parsed = DomusAddr.parse(text);
        expect(parsed.equals(addr)).toBe(true);
        expect(parsed.kind).toBe(addr.kind);
        expect(parsed.host).toBe(addr.host);
        expect(parsed.port).toBe(addr.port);
        expect(parsed.path).toBe(addr.path);
        expect(parsed.toString()).toBe(text);
      }),
    );
  });
});
