import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';

import { run, type CliIo } from '../../lib/cli/main.js';
import { Pkcs8AuthConfig, loadAuthMaterial, type AuthMaterial } from '../../lib/engine/auth.js';
import { certificateIdentity } from '../../lib/engine/transport/identity.js';
import { builtCli, requireBuild } from '../support/built.js';

requireBuild();

const exec = promisify(execFile);

let work: string;
let out: string;

beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'aurelia-certs-'));
  out = path.join(work, 'dev-pki');
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs the CLI in-process, capturing its output. */
async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (text) => void (stdout += text),
    stderr: (text) => void (stderr += text),
  };
  const code = await run(argv, io);
  return { code, stdout, stderr };
}

async function modeOf(file: string): Promise<number> {
  return (await stat(file)).mode & 0o777;
}

async function opensslVerify(caFile: string, certFile: string): Promise<string> {
  const { stdout } = await exec('openssl', ['verify', '-CAfile', caFile, certFile], {
    timeout: 10_000,
  });
  return stdout.trim();
}

async function materialOf(name: string): Promise<AuthMaterial> {
  const config = await Pkcs8AuthConfig.fromFiles({
    ca: path.join(out, 'ca.pem'),
    cert: path.join(out, `${name}.pem`),
    key: path.join(out, `${name}-key.pem`),
  });
  return loadAuthMaterial(config);
}

/**
 * One mutual TLS handshake between a `tls.createServer` using `server`'s context (handed over by
 * SNICallback, the server API's way to take a prebuilt context) and a `tls.connect` client.
 */
async function handshake(
  server: AuthMaterial,
  client: AuthMaterial,
): Promise<{ serverSaw?: string; clientSaw?: string; authorized: boolean[]; protocol?: string }> {
  const listener = createServer({
    SNICallback: (_name, done) => done(null, server.secureContext),
    requestCert: true,
    rejectUnauthorized: true,
    handshakeTimeout: 5000,
  });
  const sockets: TLSSocket[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', resolve);
    });
    const accepted = new Promise<TLSSocket>((resolve, reject) => {
      listener.once('secureConnection', (socket) => {
        sockets.push(socket);
        resolve(socket);
      });
      listener.once('tlsClientError', reject);
    });
    const dialed = new Promise<TLSSocket>((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port: (listener.address() as AddressInfo).port,
        servername: 'aurelia',
        secureContext: client.secureContext,
        // Peers are identified by certificate identity, not host name.
        checkServerIdentity: () => undefined,
        timeout: 5000,
      });
      sockets.push(socket);
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
      socket.once('timeout', () => reject(new Error('dial timed out')));
    });
    const [serverSide, clientSide] = await Promise.all([accepted, dialed]);
    return {
      serverSaw: certificateIdentity(serverSide.getPeerCertificate()),
      clientSaw: certificateIdentity(clientSide.getPeerCertificate()),
      authorized: [serverSide.authorized, clientSide.authorized],
      protocol: clientSide.getProtocol() ?? undefined,
    };
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}

describe('aurelia-mesh certs', () => {
  it('creates a CA and a certificate and 0600 key per node, and prints what it wrote', async () => {
    const result = await cli('certs', '--out', out, '--node', 'alpha', '--node', 'beta');
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect((await readdir(out)).sort()).toEqual([
      'alpha-key.pem',
      'alpha.pem',
      'beta-key.pem',
      'beta.pem',
      'ca-key.pem',
      'ca.pem',
    ]);
    for (const key of ['ca-key.pem', 'alpha-key.pem', 'beta-key.pem']) {
      expect(await modeOf(path.join(out, key))).toBe(0o600);
    }
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(
      /^created CA .*ca\.pem and key .*ca-key\.pem \(Aurelia Development CA/,
    );
    expect(lines[1]).toMatch(
      /^wrote .*alpha\.pem and key .*alpha-key\.pem for spiffe:\/\/aurelia\.local\/alpha/,
    );
    expect(lines[2]).toContain('for spiffe://aurelia.local/beta');
    const alpha = new X509Certificate(await readFile(path.join(out, 'alpha.pem')));
    expect(alpha.subjectAltName).toBe(
      'URI:spiffe://aurelia.local/alpha, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(
      (await readFile(path.join(out, 'alpha-key.pem'), 'latin1')).startsWith(
        '-----BEGIN PRIVATE KEY-----\n',
      ),
    ).toBe(true);
  });

  it('produces node certificates that `openssl verify -CAfile ca.pem` accepts', async () => {
    expect((await cli('certs', '--out', out, '--node', 'alpha', '--node', 'beta')).code).toBe(0);
    const ca = path.join(out, 'ca.pem');
    expect(await opensslVerify(ca, path.join(out, 'alpha.pem'))).toBe(
      `${path.join(out, 'alpha.pem')}: OK`,
    );
    expect(await opensslVerify(ca, path.join(out, 'beta.pem'))).toBe(
      `${path.join(out, 'beta.pem')}: OK`,
    );
  });

  it('produces certificates two nodes use for a mutual TLS 1.3 handshake, each seeing the other', async () => {
    expect((await cli('certs', '--out', out, '--node', 'alpha', '--node', 'beta')).code).toBe(0);
    const [alpha, beta] = await Promise.all([materialOf('alpha'), materialOf('beta')]);
    expect(await handshake(alpha, beta)).toEqual({
      serverSaw: 'spiffe://aurelia.local/beta',
      clientSaw: 'spiffe://aurelia.local/alpha',
      authorized: [true, true],
      protocol: 'TLSv1.3',
    });
  });

  it.each(['ed25519', 'rsa'])('issues working %s keys with --key-type', async (keyType) => {
    const args = [
      'certs',
      '--out',
      out,
      '--node',
      'alpha',
      '--node',
      'beta',
      '--key-type',
      keyType,
    ];
    expect((await cli(...args)).code).toBe(0);
    const [alpha, beta] = await Promise.all([materialOf('alpha'), materialOf('beta')]);
    expect(alpha.certificate.keyType).toBe(keyType);
    expect((await handshake(beta, alpha)).serverSaw).toBe('spiffe://aurelia.local/alpha');
  });

  it('refuses to overwrite existing node files without --force and leaves them untouched', async () => {
    expect((await cli('certs', '--out', out, '--node', 'alpha')).code).toBe(0);
    const before = await readFile(path.join(out, 'alpha.pem'));
    const second = await cli('certs', '--out', out, '--node', 'alpha');
    expect(second.code).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toBe(
      `error: refusing to overwrite alpha.pem, alpha-key.pem in ${out} (pass --force to replace them)\n`,
    );
    expect((await readFile(path.join(out, 'alpha.pem'))).equals(before)).toBe(true);
  });

  it('replaces node files with --force, keeps the CA and restores mode 0600 on the key', async () => {
    expect((await cli('certs', '--out', out, '--node', 'alpha')).code).toBe(0);
    const ca = await readFile(path.join(out, 'ca.pem'));
    const cert = await readFile(path.join(out, 'alpha.pem'));
    await chmod(path.join(out, 'alpha-key.pem'), 0o644);
    const forced = await cli('certs', '--out', out, '--node', 'alpha', '--force');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/^reused CA /);
    expect((await readFile(path.join(out, 'ca.pem'))).equals(ca)).toBe(true);
    expect((await readFile(path.join(out, 'alpha.pem'))).equals(cert)).toBe(false);
    expect(await modeOf(path.join(out, 'alpha-key.pem'))).toBe(0o600);
    expect(await opensslVerify(path.join(out, 'ca.pem'), path.join(out, 'alpha.pem'))).toMatch(
      /: OK$/,
    );
    expect((await readdir(out)).filter((file) => file.endsWith('.tmp'))).toEqual([]);
  });

  it('reuses the CA in the directory for nodes added later', async () => {
    expect((await cli('certs', '--out', out, '--node', 'alpha')).code).toBe(0);
    const later = await cli('certs', '--out', out, '--node', 'gamma');
    expect(later.code).toBe(0);
    expect(later.stdout.split('\n')[0]).toMatch(/^reused CA .*ca\.pem \(Aurelia Development CA/);
    const [alpha, gamma] = await Promise.all([materialOf('alpha'), materialOf('gamma')]);
    expect((await handshake(alpha, gamma)).serverSaw).toBe('spiffe://aurelia.local/gamma');
  });

  it('puts --dns, --ip and --trust-domain into the certificate and honours --days', async () => {
    const result = await cli(
      'certs',
      '--out',
      out,
      '--node',
      'ledger',
      '--dns',
      'ledger.internal',
      '--ip',
      '10.1.2.3',
      '--trust-domain',
      'prod.example',
      '--days',
      '30',
    );
    expect(result.code).toBe(0);
    const cert = new X509Certificate(await readFile(path.join(out, 'ledger.pem')));
    expect(cert.subjectAltName).toBe(
      'URI:spiffe://prod.example/ledger, DNS:ledger.internal, IP Address:10.1.2.3',
    );
    const days = (new Date(cert.validTo).getTime() - Date.now()) / 86_400_000;
    expect(Math.round(days)).toBe(30);
  });

  it('creates only the CA when no node is named', async () => {
    const result = await cli('certs', '--out', out);
    expect(result.code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['ca-key.pem', 'ca.pem']);
    expect(result.stdout).toContain('no --node given: only the CA was ensured');
  });

  it.each([
    ['../evil', "error: node name '../evil' must be 1-64 letters"],
    ['.hidden', "error: node name '.hidden' must be 1-64 letters"],
    ['ca', "error: node name 'ca' is reserved"],
    ['CA-key', "error: node name 'CA-key' is reserved"],
  ])('rejects the node name %s with one error line and writes nothing', async (name, message) => {
    const result = await cli('certs', '--out', out, '--node', name);
    expect(result.code).toBe(1);
    expect(result.stderr.startsWith(message)).toBe(true);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  });

  it('rejects node names whose files would collide', async () => {
    expect((await cli('certs', '--out', out, '--node', 'a', '--node', 'a')).stderr).toBe(
      "error: node 'a' is given twice\n",
    );
    expect((await cli('certs', '--out', out, '--node', 'a', '--node', 'a-key')).stderr).toBe(
      "error: nodes 'a' and 'a-key' would both write a-key.pem\n",
    );
    expect(existsSync(out)).toBe(false);
  });

  it('rejects an invalid IP address before writing anything', async () => {
    const result = await cli('certs', '--out', out, '--node', 'a', '--ip', '1.2.3');
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: "error: IP address '1.2.3' is not a valid IPv4 or IPv6 address\n",
    });
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a lone ca.pem without its key unless --force replaces the CA', async () => {
    expect((await cli('certs', '--out', out)).code).toBe(0);
    await rm(path.join(out, 'ca-key.pem'));
    const refused = await cli('certs', '--out', out, '--node', 'alpha');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^error: found .*ca\.pem but not .*ca-key\.pem: restore it, or pass --force/,
    );
    const forced = await cli('certs', '--out', out, '--node', 'alpha', '--force');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/^created CA /);
    expect(await opensslVerify(path.join(out, 'ca.pem'), path.join(out, 'alpha.pem'))).toMatch(
      /: OK$/,
    );
  });

  it('names the CA files when the existing CA key does not belong to ca.pem', async () => {
    expect((await cli('certs', '--out', out, '--node', 'alpha')).code).toBe(0);
    await writeFile(path.join(out, 'ca-key.pem'), await readFile(path.join(out, 'alpha-key.pem')));
    const result = await cli('certs', '--out', out, '--node', 'beta');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('error: cannot reuse the existing CA: CA key does not belong');
    expect(result.stderr).toContain('to create a new CA');
  });

  it('reports a file in place of the output directory', async () => {
    await writeFile(out, 'not a directory');
    const result = await cli('certs', '--out', out, '--node', 'alpha');
    expect(result).toMatchObject({
      code: 1,
      stderr: `error: ${out} exists and is not a directory\n`,
    });
  });

  it('prints help for the program and for certs, exiting 0', async () => {
    const top = await cli('--help');
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Usage: aurelia-mesh [options] [command]');
    expect(top.stdout).toMatch(/certs \[options\]\s+create a development CA and node certificates/);
    const sub = await cli('certs', '--help');
    expect(sub.code).toBe(0);
    for (const flag of [
      '--out <dir>',
      '--node <name>',
      '--dns <name>',
      '--ip <addr>',
      '--trust-domain <domain>',
      '--key-type <type>',
      '--days <n>',
      '--force',
    ]) {
      expect(sub.stdout).toContain(flag);
    }
    expect(sub.stdout).toContain('$ aurelia-mesh certs --out ./dev-pki --node alpha --node beta');
  });

  it.each([
    [['certs', '--node', 'a'], "error: required option '-o, --out <dir>' not specified"],
    [['certs', '--out', 'x', '--days', '0'], "error: option '--days <n>' argument '0' is invalid"],
    [
      ['certs', '--out', 'x', '--key-type', 'dsa'],
      "error: option '--key-type <type>' argument 'dsa' is invalid",
    ],
    [['certs', '--out', 'x', '--bogus'], "error: unknown option '--bogus'"],
    [['certs', '--out', 'x', 'extra'], "error: too many arguments for 'certs'"],
  ])('rejects the usage %j with a non-zero exit', async (argv, message) => {
    const result = await cli(...argv);
    expect(result.code).toBe(1);
    expect(result.stderr.startsWith(message)).toBe(true);
    expect(existsSync(path.join(process.cwd(), 'x'))).toBe(false);
  });

  it('shows the program help on stderr and fails without a command', async () => {
    const result = await cli();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Usage: aurelia-mesh');
  });

  it('runs as the built bin, dist/lib/cli/main.js', async () => {
    const { stdout } = await exec(
      process.execPath,
      [builtCli, 'certs', '--out', out, '--node', 'alpha'],
      {
        cwd: work,
        timeout: 20_000,
      },
    );
    expect(stdout).toMatch(/^created CA dev-pki\/ca\.pem and key dev-pki\/ca-key\.pem/);
    expect(await opensslVerify(path.join(out, 'ca.pem'), path.join(out, 'alpha.pem'))).toMatch(
      /: OK$/,
    );
  });
});
