// Binding a listener's address: a TCP port, or a Unix socket file with mode 0600 and stale-file reclaim.
import { type Stats } from 'node:fs';
import { chmod, link, lstat, mkdtemp, rm, stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

import { SOCKET_PATH_MAX_BYTES } from '../addr.js';
import { AureliaError, ErrorId } from '../errors.js';

/** The socket file a listener created, identified so that only that file is ever removed. */
export interface SocketFile {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

// How long probing an existing socket path may take before it counts as alive.
const PROBE_TIMEOUT_MS = 1000;

/**
 * Binds `server` with `options` and resolves once it listens. Rejects with
 * `AureliaError(InvalidConfig)` naming `label` (the address) and the reason: address in use,
 * not an address of this machine, permission denied, or a host name that does not resolve.
 */
export function bind(server: net.Server, options: net.ListenOptions, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(bindError(err, label));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

function bindError(err: Error, label: string): AureliaError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    code === 'EADDRINUSE'
      ? 'the address is already in use by another process; stop it or listen elsewhere'
      : code === 'EADDRNOTAVAIL'
        ? 'the host is not an address of this machine'
        : code === 'EACCES'
          ? 'permission denied (ports below 1024 and protected directories need privileges)'
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? 'the host name does not resolve'
            : err.message;
  return new AureliaError(
    code === 'EADDRINUSE' ? ErrorId.AddressInUse : ErrorId.InvalidConfig,
    `cannot listen on ${label}: ${reason}${code !== undefined ? ` (${code})` : ''}`,
    { cause: err },
  );
}

/**
 * Binds `server` to a Unix socket at `socketPath` with mode 0600, first removing a stale socket
 * file (one nothing answers on). The socket is bound inside a fresh 0700 directory next to the
 * path, set to 0600, then hard-linked into place, so it is never reachable with another mode and
 * nothing that appears at the path meanwhile is replaced; a path too long for that staging name
 * is bound directly and set to 0600 right after. Returns the identity of the file it created,
 * for `removeSocketFile`.
 * Rejects with `AureliaError(AddressInUse)` naming the path when a live listener answers on it,
 * and with `AureliaError(InvalidConfig)` when it exists and is not a socket, or when the
 * directory is missing or not writable.
 */
export async function bindSocketFile(server: net.Server, socketPath: string): Promise<SocketFile> {
  const label = `unix://${socketPath}`;
  await reclaimStale(socketPath, label);
  const directory = path.dirname(socketPath);
  let staging: string;
  try {
    staging = await mkdtemp(path.join(directory, '.aurelia-'));
  } catch (err) {
    throw fileError(err, label, `cannot create the socket in ${directory}`);
  }
  try {
    const stagedPath = path.join(staging, 's');
    if (Buffer.byteLength(stagedPath, 'utf8') > SOCKET_PATH_MAX_BYTES) {
      await bind(server, { path: socketPath, exclusive: true }, label);
      await chmod(socketPath, 0o600);
    } else {
      await bind(server, { path: stagedPath, exclusive: true }, label);
      await chmod(stagedPath, 0o600);
      try {
        await link(stagedPath, socketPath);
      } catch (err) {
        server.close();
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new AureliaError(
            ErrorId.InvalidConfig,
            `cannot listen on ${label}: another process created ${socketPath} while this listener was starting`,
          );
        }
        throw fileError(err, label, `cannot create ${socketPath}`);
      }
    }
    const created: Stats = await stat(socketPath);
    return { path: socketPath, dev: created.dev, ino: created.ino };
  } catch (err) {
    server.close();
    throw err instanceof AureliaError ? err : fileError(err, label, `cannot set up ${socketPath}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Removes an existing socket file at `socketPath` when nothing answers on it. Throws
 * `InvalidConfig` when a listener answers, when the path is not a socket, or when it cannot be
 * checked or removed.
 */
async function reclaimStale(socketPath: string, label: string): Promise<void> {
  let existing: Stats;
  try {
    existing = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fileError(err, label, `cannot inspect ${socketPath}`);
  }
  if (!existing.isSocket()) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `cannot listen on ${label}: ${socketPath} exists and is not a socket; remove it or choose another path`,
    );
  }
  const state = await probeSocket(socketPath);
  if (state === 'live') {
    throw new AureliaError(
      ErrorId.AddressInUse,
      `cannot listen on ${label}: ${socketPath} is held by a live listener (another domus or process answers on it); stop it or choose another path`,
    );
  }
  if (state === 'stale') {
    try {
      await unlink(socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw fileError(err, label, `cannot remove the stale socket ${socketPath}`);
      }
    }
  }
}

/** Connects to a socket path once: `'live'` if anything accepts (or cannot be ruled out). */
function probeSocket(socketPath: string): Promise<'live' | 'stale' | 'gone'> {
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    const finish = (state: 'live' | 'stale' | 'gone'): void => {
      clearTimeout(timer);
      probe.removeAllListeners();
      probe.on('error', () => undefined);
      probe.destroy();
      resolve(state);
    };
    const timer = setTimeout(() => finish('live'), PROBE_TIMEOUT_MS);
    probe.once('connect', () => finish('live'));
    probe.once('error', (err: NodeJS.ErrnoException) => {
      finish(err.code === 'ECONNREFUSED' ? 'stale' : err.code === 'ENOENT' ? 'gone' : 'live');
    });
  });
}

/** Removes the socket file `file` describes, unless the path now holds another file. Never throws. */
export async function removeSocketFile(file: SocketFile): Promise<void> {
  try {
    const current = await lstat(file.path);
    // Remove only the file this listener made, not one a successor created at the same path.
    if (current.dev === file.dev && current.ino === file.ino) await unlink(file.path);
  } catch {
    // Already gone (or no longer ours to inspect): nothing to remove.
  }
}

function fileError(err: unknown, label: string, what: string): AureliaError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason =
    code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'ENOENT'
        ? 'the directory does not exist'
        : err instanceof Error
          ? err.message
          : String(err);
  return new AureliaError(
    ErrorId.InvalidConfig,
    `cannot listen on ${label}: ${what}: ${reason}${code !== undefined ? ` (${code})` : ''}`,
    { cause: err },
  );
}
