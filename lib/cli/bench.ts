// The `bench` command: Aurelia's speed next to raw node:tls and the transports Nest users pick.
import { Option, type Command } from 'commander';

import type { CliIo } from './main.js';
import { BENCH_SYSTEMS, WORKLOAD_GROUPS, resolveBenchOptions } from './bench/plan.js';
import { printReport, runBench } from './bench/runner.js';

/** Where `bench` writes when no `CliIo` is given: the process's own streams. */
const defaultIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/**
 * Registers `bench [--quick] [--json FILE] [--only groups] [--systems list] [--transport t]` on
 * `program`. The action measures every workload and baseline in this process, prints the table
 * to `io.stdout` (progress to `io.stderr`) and writes the JSON report when asked. The action
 * rejects with `AureliaError(InvalidConfig)` for an invalid option or an unwritable JSON path.
 */
export function registerBench(program: Command, io: CliIo = defaultIo): Command {
  return program
    .command('bench')
    .description(
      'Measure Aurelia against raw node:tls (the ceiling) and Nest TCP, gRPC and Moleculer, ' +
        'side by side in one run, over loopback TCP+TLS and a Unix socket.',
    )
    .option('--quick', 'short runs and smaller sizes: finishes in under a minute')
    .option('--json <file>', 'also write machine-readable results to <file>')
    .addOption(
      new Option(
        '--only <groups>',
        `comma-separated workload groups: ${WORKLOAD_GROUPS.join(', ')}`,
      ),
    )
    .addOption(
      new Option('--systems <systems>', `comma-separated systems: ${BENCH_SYSTEMS.join(', ')}`),
    )
    .addOption(
      new Option('--transport <transport>', 'transports of the Aurelia and raw workloads')
        .choices(['tcp', 'unix', 'both'])
        .default('both'),
    )
    .action(
      async (raw: {
        quick?: boolean;
        json?: string;
        only?: string;
        systems?: string;
        transport?: string;
      }) => {
        const options = resolveBenchOptions(raw);
        const report = await runBench(options, io);
        printReport(report, io);
        if (options.json !== undefined) io.stdout(`\nJSON written to ${options.json}\n`);
      },
    );
}
