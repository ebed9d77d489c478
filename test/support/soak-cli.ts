// The `soak` command on a program of its own, writing to memory, for tests of the command.
import { Command } from 'commander';

import type { CliIo } from '../../lib/cli/main.js';
import { registerSoakCommand, type SoakOptions, type SoakReport } from '../../lib/cli/soak.js';

/**
 * A program with only the `soak` command, whose output lands in `out`; `soak` replaces the real
 * mesh run when given. Commander's exits become rejections (`exitOverride`).
 */
export function soakProgram(soak?: (options: SoakOptions) => Promise<SoakReport>): {
  program: Command;
  out: string[];
} {
  const out: string[] = [];
  const io: CliIo = {
    stdout: (text) => void out.push(text),
    stderr: (text) => void out.push(text),
  };
  const program = new Command('aurelia-mesh')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  registerSoakCommand(program, io, soak);
  return { program, out };
}
