#!/usr/bin/env node
// The `aurelia-mesh` command: argument parsing, error reporting and one module per subcommand.
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Command, CommanderError } from 'commander';

import { registerBench } from './bench.js';
import { registerCertsCommand } from './certs.js';
import { registerSoakCommand } from './soak.js';

/** Where the command writes: standard output and standard error, or a test's buffers. */
export interface CliIo {
  /** Writes normal output (text includes its line breaks). */
  stdout(text: string): void;
  /** Writes errors and diagnostics (text includes its line breaks). */
  stderr(text: string): void;
}

/** `CliIo` over `process.stdout` / `process.stderr`. */
export const processIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/**
 * Builds the `aurelia-mesh` program writing to `io`. Commander's own exits are turned into
 * exceptions (`exitOverride`), so `run` decides the exit code. Each subcommand lives in its own
 * module and registers itself here (`certs`, `bench`, `soak`).
 */
export function createProgram(io: CliIo = processIo): Command {
  const program = new Command('aurelia-mesh')
    .description(
      'Tools for Aurelia, the embeddable service mesh for Node.js and NestJS.\n' +
        'Run `aurelia-mesh <command> --help` for the options of a command.',
    )
    .configureOutput({
      writeOut: (text) => io.stdout(text),
      writeErr: (text) => io.stderr(text),
    })
    .exitOverride()
    .showSuggestionAfterError(true);
  const version = packageVersion();
  if (version !== undefined) program.version(version, '-V, --version', 'print the version');
  registerCertsCommand(program, io);
  registerBench(program, io);
  registerSoakCommand(program, io);
  return program;
}

/**
 * Runs the command line `argv` (the arguments after the program name, e.g.
 * `['certs', '--out', 'dir', '--node', 'alpha']`) and resolves with the exit code: 0 on success
 * (and for `--help` / `--version`), non-zero after printing one `error: ...` line to `io.stderr`.
 * Never rejects and never exits the process, so tests can run it in-process.
 */
export async function run(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    // Commander already printed its message (usage errors) or the help text.
    if (err instanceof CommanderError) return err.exitCode;
    io.stderr(`error: ${describeError(err)}\n`);
    return 1;
  }
}

// Failures are AureliaErrors with one-line messages; anything else is shown the same way.
function describeError(err: unknown): string {
  const message = err instanceof Error ? err.message : `unexpected ${String(err)}`;
  return message.replace(/\s*\n\s*/g, ' ');
}

function packageVersion(): string | undefined {
  // lib/cli/main.ts in the repository, dist/lib/cli/main.js when built: search upwards.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (manifest.name === 'aurelia-mesh' && typeof manifest.version === 'string') {
        return manifest.version;
      }
    } catch {
      // No readable manifest here; keep looking further up.
    }
    dir = path.dirname(dir);
  }
  return undefined;
}

/** True when this module is the process's entry script (directly or through the npm bin link). */
function invokedAsScript(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedAsScript()) {
  void run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
