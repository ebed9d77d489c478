// Certificate files laid out as Kubernetes mounts a secret, swapped atomically like the kubelet does.
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { NodeCertificate } from '../../lib/cli/pki.js';
import type { Domus } from '../../lib/engine/domus.js';

/**
 * A directory holding `ca.crt`, `tls.crt` and `tls.key` as links through `..data` into a
 * timestamped directory: `swap` writes the next set into a new directory and renames a fresh
 * `..data` link over the old one, so readers see the old set or the new one, never a mix.
 */
export class SecretMount {
  private generation = 0;

  private constructor(readonly dir: string) {}

  /** The paths to configure (`{ ca, cert, key }`). */
  get files(): { readonly ca: string; readonly cert: string; readonly key: string } {
    return {
      ca: path.join(this.dir, 'ca.crt'),
      cert: path.join(this.dir, 'tls.crt'),
      key: path.join(this.dir, 'tls.key'),
    };
  }

  /** A mount holding `node`'s material. */
  static async create(node: NodeCertificate): Promise<SecretMount> {
    const mount = new SecretMount(await mkdtemp(path.join(tmpdir(), 'aurelia-secret-')));
    const first = await mount.writeGeneration(node);
    await symlink(first, path.join(mount.dir, '..data'));
    for (const name of ['ca.crt', 'tls.crt', 'tls.key']) {
      await symlink(path.join('..data', name), path.join(mount.dir, name));
    }
    return mount;
  }

  /** Replaces the whole set with `node`'s material in one rename, and removes the old set. */
  async swap(node: NodeCertificate): Promise<void> {
    const previous = `..gen-${this.generation}`;
    const next = await this.writeGeneration(node);
    const staging = path.join(this.dir, '..data_tmp');
    await symlink(next, staging);
    await rename(staging, path.join(this.dir, '..data'));
    await rm(path.join(this.dir, previous), { recursive: true, force: true });
  }

  /** Removes the mount. */
  cleanup(): Promise<void> {
    return rm(this.dir, { recursive: true, force: true });
  }

  private async writeGeneration(node: NodeCertificate): Promise<string> {
    const name = `..gen-${++this.generation}`;
    const dir = path.join(this.dir, name);
    await mkdir(dir);
    await writeFile(path.join(dir, 'ca.crt'), node.caPem);
    await writeFile(path.join(dir, 'tls.crt'), node.chainPem);
    await writeFile(path.join(dir, 'tls.key'), node.keyPem, { mode: 0o600 });
    return name;
  }
}

/**
 * The SHA-256 fingerprint of the certificate `domus` presents to a new connection, seen by a
 * client authenticating with `client`.
 */
export function presentedFingerprint(domus: Domus, client: tls.SecureContext): Promise<string> {
  const addr = domus.localAddr;
  return new Promise<string>((resolve, reject) => {
    const socket = tls.connect({
      host: addr.host as string,
      port: addr.port as number,
      secureContext: client,
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}
