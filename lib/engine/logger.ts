// The engine's logging seam: a logger interface Nest's Logger satisfies, and repeat suppression.
import { DOMUS_CONFIG_MAX, defaultDomusConfig } from './config.js';
import { AureliaError, ErrorId } from './errors.js';

/**
 * Structured fields attached to a log line (peer identity, address, error id, …). Passed as the
 * second argument, so a Nest `Logger` prints it after the message; never holds key material.
 */
export type AureliaLogContext = Readonly<Record<string, unknown>>;

/**
 * Where the engine writes its log lines. Structurally compatible with Nest's `LoggerService`, so
 * a Nest `Logger` (or any `LoggerService`) can be passed as is; `debug` is optional as it is
 * there. A logger must not throw: the engine calls it from I/O callbacks.
 */
export interface AureliaLogger {
  /** A failure the operator should look at (a peer repeatedly failing, a protocol violation). */
  error(message: string, context?: AureliaLogContext): unknown;
  /** Something unusual that the engine handled (a dropped callis, a refused handshake). */
  warn(message: string, context?: AureliaLogContext): unknown;
  /** A normal lifecycle step (listening, peer connected, shutdown complete). */
  log(message: string, context?: AureliaLogContext): unknown;
  /** Detail for troubleshooting; skipped when the logger has no `debug`. */
  debug?(message: string, context?: AureliaLogContext): unknown;
}

/** The four levels of an `AureliaLogger`. */
export type AureliaLogLevel = 'error' | 'warn' | 'log' | 'debug';

const noop = (): void => undefined;

/**
 * A logger that discards everything: the engine's default, so an embedding program sees no output
 * unless it passes a logger.
 */
export const silentLogger: AureliaLogger = Object.freeze({
  error: noop,
  warn: noop,
  log: noop,
  debug: noop,
});

// Characters that could forge or hide log lines: C0/C1 controls, line and paragraph separators,
// and the bidirectional overrides and isolates that reorder what a terminal shows.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** Longest log line `escapeLogText` keeps by default, in characters. */
export const MAX_LOG_LINE = 2000;

/**
 * Makes `text` safe for a log line: control characters, line separators and bidirectional
 * overrides become `\uXXXX` escapes, so no text can start a forged line or hide itself, and
 * anything beyond `max` characters is cut and marked `… (N more characters)`. Never throws.
 */
export function escapeLogText(text: string, max: number = MAX_LOG_LINE): string {
  const escaped = text.replace(UNSAFE, escapeChar);
  if (escaped.length <= max) return escaped;
  return `${escaped.slice(0, max)}… (${escaped.length - max} more characters)`;
}

/** Most characters of one piece of peer text `quotePeerText` keeps. */
export const MAX_PEER_TEXT = 200;

/**
 * Text a peer chose (the reason in its `error` or `close` frame, a certificate subject), ready to
 * embed in a message: in double quotes, with quotes, backslashes and unsafe characters escaped and
 * at most `max` characters kept. Log keys (`logKeyOf`) leave quoted text out, so a peer that varies
 * its text cannot defeat the rate limiter. Never throws.
 */
export function quotePeerText(text: string, max: number = MAX_PEER_TEXT): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return `"${cut.replace(/["\\]/g, (char) => `\\${char}`).replace(UNSAFE, escapeChar)}"`;
}

// A segment made by `quotePeerText` (or `JSON.stringify`): nothing inside can end it early.
const QUOTED = /"(?:[^"\\]|\\.)*"/g;

/**
 * The rate-limit key of an error line: the error's kind and the first words of its message with
 * quoted peer text (see `quotePeerText`) and numbers left out, so repeats of one problem share a
 * key however the peer varies its text, addresses or ids. Never throws.
 */
export function logKeyOf(kind: string, message: string): string {
  return `${kind}:${message.replace(QUOTED, '"…"').replace(/\d+/g, '#').slice(0, 80)}`;
}

/** Options of a `RateLimitedLogger`. */
export interface RateLimitedLoggerOptions {
  /**
   * Minimum time between two lines with the same key, in ms: an integer in 1..3600000
   * (`DomusConfig.limitedLogIntervalMs`, default 120000).
   */
  readonly intervalMs?: number;
  /**
   * Most keys remembered at once (default 1024, 1..1000000). Past it the key with the oldest
   * line is forgotten; its pending suppressed count is lost and its next line is written at once.
   */
  readonly maxKeys?: number;
  /** Clock in ms (default `Date.now`); injected by tests. */
  readonly now?: () => number;
}

const DEFAULT_INTERVAL_MS = defaultDomusConfig().limitedLogIntervalMs;
const INTERVAL_MAX_MS = DOMUS_CONFIG_MAX.limitedLogIntervalMs;
const DEFAULT_MAX_KEYS = 1024;
const MAX_KEYS_LIMIT = 1_000_000;

interface KeyState {
  /** When the last line for this key was written. */
  lastAt: number;
  /** Lines dropped since then. */
  suppressed: number;
}

/**
 * Writes repetitive lines (a peer that keeps failing to dial, a flood of protocol violations) at
 * most once per key per interval. The first line of a key is written at once; repeats within
 * `intervalMs` of the last written line are dropped and counted; the next line after the interval
 * is written with ` (N similar suppressed)` appended and `suppressed: N` in its context. No
 * timers: a burst that simply stops leaves its count unreported, which is what keeps an idle
 * process quiet. Memory is bounded by `maxKeys`. Every line written goes through `escapeLogText`
 * (control characters escaped, at most `MAX_LOG_LINE` characters); choose keys that leave out
 * what a peer controls (`logKeyOf`).
 */
export class RateLimitedLogger {
  readonly #target: AureliaLogger;
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #keys = new Map<string, KeyState>();
  #intervalMs: number;

  /**
   * Wraps `target`. Throws `AureliaError(InvalidConfig)` naming the option when `intervalMs` or
   * `maxKeys` is not an integer in its range, or when `target` lacks `error`, `warn` or `log`.
   */
  constructor(target: AureliaLogger, options: RateLimitedLoggerOptions = {}) {
    for (const level of ['error', 'warn', 'log'] as const) {
      if (typeof target?.[level] !== 'function') {
        throw new AureliaError(
          ErrorId.InvalidConfig,
          `logger must have an ${level}(message, context) method`,
        );
      }
    }
    this.#target = target;
    this.#intervalMs = checkInterval(options.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.#maxKeys = checkInteger('maxKeys', options.maxKeys ?? DEFAULT_MAX_KEYS, MAX_KEYS_LIMIT);
    this.#now = options.now ?? Date.now;
  }

  /** The current interval in ms. */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  /**
   * Changes the interval (for a live `limitedLogIntervalMs` update); applies to the next line of
   * every key. Throws `AureliaError(InvalidConfig)` when `ms` is not an integer in 1..3600000.
   */
  set intervalMs(ms: number) {
    this.#intervalMs = checkInterval(ms);
  }

  /** Writes an error line for `key` unless one was written within the interval; true if written. */
  error(key: string, message: string, context?: AureliaLogContext): boolean {
    return this.write('error', key, message, context);
  }

  /** Writes a warning for `key` unless one was written within the interval; true if written. */
  warn(key: string, message: string, context?: AureliaLogContext): boolean {
    return this.write('warn', key, message, context);
  }

  /** Writes a log line for `key` unless one was written within the interval; true if written. */
  log(key: string, message: string, context?: AureliaLogContext): boolean {
    return this.write('log', key, message, context);
  }

  /** Writes a debug line for `key` unless one was written within the interval; true if written. */
  debug(key: string, message: string, context?: AureliaLogContext): boolean {
    return this.write('debug', key, message, context);
  }

  /**
   * Writes `message` at `level` for `key` unless a line with the same key (at any level) was
   * written less than `intervalMs` ago, in which case it is counted and dropped. Returns whether
   * the line was written. A target that throws is not retried; the error propagates.
   */
  write(
    level: AureliaLogLevel,
    key: string,
    message: string,
    context?: AureliaLogContext,
  ): boolean {
    const now = this.#now();
    const state = this.#keys.get(key);
    if (state !== undefined && now - state.lastAt < this.#intervalMs) {
      state.suppressed++;
      return false;
    }
    const suppressed = state?.suppressed ?? 0;
    if (state === undefined) {
      if (this.#keys.size >= this.#maxKeys) this.#evictOldest();
      this.#keys.set(key, { lastAt: now, suppressed: 0 });
    } else {
      // Re-insert so Map order stays "oldest line first" for eviction.
      this.#keys.delete(key);
      state.lastAt = now;
      state.suppressed = 0;
      this.#keys.set(key, state);
    }
    const method = this.#target[level];
    if (typeof method !== 'function') return false;
    message = escapeLogText(message);
    if (suppressed === 0) {
      if (context === undefined) method.call(this.#target, message);
      else method.call(this.#target, message, context);
    } else {
      method.call(this.#target, `${message} (${suppressed} similar suppressed)`, {
        ...context,
        suppressed,
      });
    }
    return true;
  }

  /** Lines dropped for `key` since its last written line (0 for an unknown key). */
  suppressedCount(key: string): number {
    return this.#keys.get(key)?.suppressed ?? 0;
  }

  /** Forgets every key: the next line of each is written at once. */
  reset(): void {
    this.#keys.clear();
  }

  #evictOldest(): void {
    const oldest = this.#keys.keys().next();
    if (oldest.done !== true) this.#keys.delete(oldest.value);
  }
}

function checkInterval(ms: number): number {
  return checkInteger('intervalMs', ms, INTERVAL_MAX_MS);
}

function checkInteger(field: string, value: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${field} must be an integer in 1..${max}, got ${String(value)}`,
    );
  }
  return value;
}
