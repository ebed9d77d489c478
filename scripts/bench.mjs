#!/usr/bin/env node
// `npm run bench`: runs the same `bench` command as `aurelia-mesh bench`, from the built dist/.
//
// Usage: npm run bench -- [--quick] [--json FILE] [--only rate,latency] [--systems raw,engine]
import process from 'node:process';

import { Command } from 'commander';

import { registerBench } from '../dist/lib/cli/bench.js';

const program = new Command('aurelia-mesh').exitOverride();
registerBench(program);
try {
  await program.parseAsync(['bench', ...process.argv.slice(2)], { from: 'user' });
} catch (err) {
  if (err && typeof err === 'object' && 'exitCode' in err && typeof err.exitCode === 'number') {
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
