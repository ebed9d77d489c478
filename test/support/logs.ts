// A logger that keeps every line it is given, usable as an engine logger and as a Nest logger.
import type { LoggerService } from '@nestjs/common';

import type { AureliaLogger } from '../../lib/engine/logger.js';

/** One captured line. */
export interface LogLine {
  readonly level: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
  readonly message: string;
  /** The first argument after the message: the engine's structured context, if any. */
  readonly context: unknown;
  /** Every argument after the message (Nest's `Logger` appends its context name last). */
  readonly params: readonly unknown[];
  /** `Date.now()` when the line was written. */
  readonly at: number;
}

/** Keeps every line written to it; never throws. */
export class LogCapture implements AureliaLogger, LoggerService {
  readonly lines: LogLine[] = [];

  error(message: unknown, ...params: unknown[]): void {
    this.push('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.push('warn', message, params);
  }
  log(message: unknown, ...params: unknown[]): void {
    this.push('log', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.push('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.push('verbose', message, params);
  }

  /** The lines as level, message and context only, for exact comparisons. */
  plain(): { level: LogLine['level']; message: string; context?: unknown }[] {
    return this.lines.map(({ level, message, context }) =>
      context === undefined ? { level, message } : { level, message, context },
    );
  }

  /** The lines at `level`. */
  at(level: LogLine['level']): LogLine[] {
    return this.lines.filter((line) => line.level === level);
  }

  /** The lines a Nest `Logger` named `name` passed on, as level and message. */
  from(name: string): { level: LogLine['level']; message: string }[] {
    return this.lines
      .filter((line) => line.params.at(-1) === name)
      .map(({ level, message }) => ({ level, message }));
  }

  private push(level: LogLine['level'], message: unknown, params: unknown[]): void {
    this.lines.push({
      level,
      message: String(message),
      context: params[0],
      params,
      at: Date.now(),
    });
  }
}
