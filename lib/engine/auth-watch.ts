// Keeps a domus's certificate material in step with its files: watch, re-read, validate, reload.
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';
import { Pkcs8AuthConfig, type Pkcs8AuthFiles, Pkcs8PrivateKey } from './auth.js';
import type { Domus } from './domus.js';
import { AureliaError, ErrorId } from './errors.js';

/** How an `AuthFileWatcher` notices changes. */
export interface AuthWatchOptions {
  /**
   * Quiet time after the last change notice before the files are read, in ms (1..60000, default
   * 200): a writer that replaces three files one by one is read once, after the last.
   */
  readonly debounceMs?: number;
  /**
   * Interval of a re-read without any change notice, in ms (1000..86400000, default 60000), for
   * file systems whose change notices are unreliable (network mounts).
   */
  readonly pollIntervalMs?: number;
}

/** Certificate file paths, with whether the files are watched and reloaded when they change. */
export interface WatchedAuthFiles extends Pkcs8AuthFiles {
  /**
   * `true` or settings: reload the domus's material when the files change (default on in the Nest
   * module); `false`: read the files once at start.
   */
  readonly watch?: boolean | AuthWatchOptions;
}

/** A config read from files, with a digest of what was read. */
export interface LoadedAuthFiles {
  readonly config: Pkcs8AuthConfig;
  /** SHA-256 over the CA, certificate and key bytes, to tell a changed set from the same one. */
  readonly digest: string;
}

/** What one `AuthFileWatcher.check()` did. */
export type AuthCheckOutcome = 'unchanged' | 'reloaded' | 'refused';

const DEBOUNCE = { default: 200, min: 1, max: 60_000 };
const POLL = { default: 60_000, min: 1000, max: 86_400_000 };

/**
 * Reads `files` with `Pkcs8AuthConfig.fromFiles` and digests the material read. Rejects with
 * `AureliaError(InvalidConfig)` naming the file when one cannot be read or holds no certificate.
 */
export async function readAuthFiles(files: Pkcs8AuthFiles): Promise<LoadedAuthFiles> {
  const config = await Pkcs8AuthConfig.fromFiles(files);
  const hash = createHash('sha256');
  const add = (part: Buffer | readonly Buffer[] | Pkcs8PrivateKey): void => {
    const buffers =
      part instanceof Pkcs8PrivateKey
        ? [part.exposeSecret()]
        : Buffer.isBuffer(part)
          ? [part]
          : part;
    hash.update(String(buffers.length)).update(':');
    for (const buffer of buffers) hash.update(String(buffer.length)).update(':').update(buffer);
  };
  if (config.format === 'pem') {
    add(config.caPem);
    add(config.certPem);
    add(config.pkcs8KeyPem);
  } else {
    add(config.caDer);
    add(config.certDer);
    add(config.pkcs8KeyDer);
  }
  return { config, digest: hash.digest('hex') };
}

/**
 * @internal Validates watch settings (`true`, `false`, `undefined` for `defaultOn`, or
 * `AuthWatchOptions`). Returns the options to watch with, or `undefined` when not watching.
 * Throws `AureliaError(InvalidConfig)` naming the field and its range.
 */
export function checkAuthWatch(
  watchOption: unknown,
  defaultOn: boolean,
): AuthWatchOptions | undefined {
  if (watchOption === false || (watchOption === undefined && !defaultOn)) return undefined;
  if (watchOption === true || watchOption === undefined) return {};
  if (typeof watchOption !== 'object' || watchOption === null) {
    throw invalid(
      `watch must be true, false or { debounceMs, pollIntervalMs }, got ${inspect(watchOption)}`,
    );
  }
  const record = watchOption as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key !== 'debounceMs' && key !== 'pollIntervalMs') {
      throw invalid(`watch.${key} is not a watch setting (known: debounceMs, pollIntervalMs)`);
    }
  }
  checkRange('watch.debounceMs', record.debounceMs, DEBOUNCE);
  checkRange('watch.pollIntervalMs', record.pollIntervalMs, POLL);
  return record as AuthWatchOptions;
}

/**
 * Watches the certificate files of `domus` and reloads them with `Domus.reloadAuth` when they
 * change. It watches the directories holding the files and the directories their symbolic links
 * lead to, so an atomic swap of a `..data` link (how Kubernetes updates a mounted secret) is seen
 * as well as a file rewritten in place; after `debounceMs` without further notices it re-reads
 * the files and compares their digest with the set in force. A new set is validated (readable,
 * key matching the certificate, chain to a CA, valid now, same identity) before use; a refused
 * set leaves the old one in force; once a second read `debounceMs` later finds the same set (files
 * caught mid-update are read again first), it is counted (`reporting.security.reloadsRefused`)
 * and reported, once per distinct content, on the domus's error feed as
 * `AureliaError(InvalidConfig)`. Pass the
 * `digest` of the set the domus was built with (`readAuthFiles`), or the first check reloads the
 * files once. The watcher stops when the domus shuts down, or on `close()`; it keeps no process
 * alive. Throws `AureliaError(InvalidConfig)` for invalid options.
 */
export function watchAuthFiles(
  domus: Domus,
  files: Pkcs8AuthFiles,
  options: AuthWatchOptions & { readonly digest?: string } = {},
): AuthFileWatcher {
  checkAuthWatch({ debounceMs: options.debounceMs, pollIntervalMs: options.pollIntervalMs }, true);
  return new AuthFileWatcher(domus, files, options);
}

/** A running watch of a domus's certificate files; see `watchAuthFiles`. */
export class AuthFileWatcher {
  readonly #domus: Domus;
  readonly #files: Pkcs8AuthFiles;
  readonly #debounceMs: number;
  readonly #watchers = new Map<string, FSWatcher>();
  readonly #poll: NodeJS.Timeout;
  readonly #unsubscribe: () => void;
  #digest: string | undefined;
  #refused: string | undefined;
  #suspect: string | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #running: Promise<AuthCheckOutcome> | undefined;
  #again = false;
  #closed = false;

  /** Not for applications: use `watchAuthFiles`. */
  constructor(
    domus: Domus,
    files: Pkcs8AuthFiles,
    options: AuthWatchOptions & { readonly digest?: string },
  ) {
    this.#domus = domus;
    this.#files = files;
    this.#digest = options.digest;
    this.#debounceMs = options.debounceMs ?? DEBOUNCE.default;
    this.#poll = setInterval(() => this.#schedule(0), options.pollIntervalMs ?? POLL.default);
    this.#poll.unref();
    const subscription = domus.reporting.events$.subscribe({
      next: (event) => {
        if (event.type === 'ShutdownStarted') this.close();
      },
      complete: () => this.close(),
    });
    this.#unsubscribe = () => subscription.unsubscribe();
    void this.#arm();
    if (this.#digest === undefined) this.#schedule(0);
  }

  /** Whether the watcher stopped (closed, or its domus shut down). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Re-reads the files now and reloads them if they changed: resolves `'unchanged'` (same
   * digest), `'reloaded'` (the new set is in force) or `'refused'` (the old set stays; reported
   * as described at `watchAuthFiles`). Checks run one at a time; a check asked for while one runs
   * runs after it. Never rejects.
   */
  check(): Promise<AuthCheckOutcome> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#checkOnce().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.check();
      }
    });
    return this.#running;
  }

  /** Stops watching: closes the directory watches and timers. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
    this.#unsubscribe();
  }

  #schedule(delayMs: number = this.#debounceMs): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.check(), delayMs);
    this.#debounce.unref();
  }

  async #checkOnce(): Promise<AuthCheckOutcome> {
    if (this.#closed) return 'unchanged';
    let loaded: LoadedAuthFiles;
    try {
      loaded = await readAuthFiles(this.#files);
    } catch (err) {
      return this.#refuse(`unreadable:${err instanceof Error ? err.message : String(err)}`, err);
    } finally {
      // Symbolic links may lead elsewhere after a swap: watch where they lead now.
      await this.#arm();
    }
    if (this.#closed || loaded.digest === this.#digest || loaded.digest === this.#refused) {
      zeroize(loaded.config);
      if (loaded.digest !== this.#digest) return this.#closed ? 'unchanged' : 'refused';
      this.#suspect = undefined;
      this.#refused = undefined;
      return 'unchanged';
    }
    try {
      await this.#domus.reloadAuth(loaded.config);
    } catch (err) {
      zeroize(loaded.config);
      if (AureliaError.is(err, ErrorId.DomusClosed)) {
        this.close();
        return 'unchanged';
      }
      return this.#refuse(loaded.digest, err);
    }
    this.#digest = loaded.digest;
    this.#suspect = undefined;
    this.#refused = undefined;
    return 'reloaded';
  }

  /**
   * Refuses the set read as `key` (its digest, or its read error). Files caught while a writer
   * replaces them one by one read as a mix of old and new, so a set is reported only when a
   * second read, `debounceMs` later, finds it again; then once until the files change.
   */
  #refuse(key: string, err: unknown): AuthCheckOutcome {
    if (key === this.#refused) return 'refused';
    if (key !== this.#suspect) {
      this.#suspect = key;
      this.#schedule();
      return 'refused';
    }
    this.#suspect = undefined;
    this.#refused = key;
    const security = this.#domus.reporting.security;
    security.countReloadRefused();
    const inForce = security.certificate;
    const kept = inForce
      ? `; the certificate in force (${inForce.fingerprint256.slice(0, 23)}…, valid until ${inForce.notAfter.toISOString()}) stays`
      : '';
    const reason = err instanceof Error ? err.message : String(err);
    this.#domus.reporting.error(
      new AureliaError(
        ErrorId.InvalidConfig,
        `the certificate files of ${this.#domus.identity} changed but were not reloaded: ${reason}${kept}`,
        { cause: err },
      ),
    );
    return 'refused';
  }

  /** Watches every directory holding a file or the target of its links; drops the others. */
  async #arm(): Promise<void> {
    const dirs = new Set<string>();
    for (const file of authPaths(this.#files)) {
      dirs.add(path.dirname(path.resolve(file)));
      const real = await realpath(file).catch(() => undefined);
      if (real !== undefined) dirs.add(path.dirname(real));
    }
    if (this.#closed) return;
    for (const [dir, watcher] of this.#watchers) {
      if (dirs.has(dir)) continue;
      watcher.close();
      this.#watchers.delete(dir);
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, () => this.#schedule());
        // A removed directory ends its watch; the next check or poll watches it again if it is back.
        watcher.on('error', () => {
          watcher.close();
          if (this.#watchers.get(dir) === watcher) this.#watchers.delete(dir);
        });
        this.#watchers.set(dir, watcher);
      } catch {
        // Missing now: the poll reads the files again and re-arms.
      }
    }
  }
}

function authPaths(files: Pkcs8AuthFiles): string[] {
  return [...(typeof files.ca === 'string' ? [files.ca] : files.ca), files.cert, files.key];
}

function zeroize(config: Pkcs8AuthConfig): void {
  const key = config.format === 'pem' ? config.pkcs8KeyPem : config.pkcs8KeyDer;
  if (key instanceof Pkcs8PrivateKey) key.zeroize();
  else key.fill(0);
}

function checkRange(
  field: string,
  value: unknown,
  range: { readonly min: number; readonly max: number },
): void {
  if (value === undefined) return;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < range.min ||
    value > range.max
  ) {
    throw invalid(
      `${field} must be an integer in ${range.min}..${range.max}, got ${inspect(value)}`,
    );
  }
}

function invalid(message: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, message);
}
