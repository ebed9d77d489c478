// Where the built package is, for tests that run it in child processes, and whether it is current.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The built entry point child processes import: AURELIA_ENTRY, else dist/lib/index.js. */
export const builtEntry =
  process.env.AURELIA_ENTRY ?? path.join(repoRoot, 'dist', 'lib', 'index.js');

/** The built CLI, dist/lib/cli/main.js. */
export const builtCli = path.join(repoRoot, 'dist', 'lib', 'cli', 'main.js');

/** The built sample, dist/sample/main.js. */
export const builtSample = path.join(repoRoot, 'dist', 'sample', 'main.js');

/** The source folders `npm run build` compiles, and what each one's output must include. */
const BUILT_FROM = [
  { source: 'lib', output: builtEntry },
  { source: 'sample', output: builtSample },
] as const;

/**
 * Why the built package is missing or stale, or undefined when it is usable: every output must
 * exist and be newer than every source file it is built from. An explicit AURELIA_ENTRY is
 * trusted as it is (the sample is still checked).
 */
export function unusableBuild(): string | undefined {
  for (const { source, output } of BUILT_FROM) {
    if (!existsSync(output)) return `${path.relative(repoRoot, output)} is missing`;
    if (output === builtEntry && process.env.AURELIA_ENTRY !== undefined) continue;
    const builtAt = statSync(output).mtimeMs;
    const dir = path.join(repoRoot, source);
    const newer = readdirSync(dir, { recursive: true, encoding: 'utf8' }).find(
      (file) => file.endsWith('.ts') && statSync(path.join(dir, file)).mtimeMs > builtAt,
    );
    if (newer !== undefined) {
      return `${path.relative(repoRoot, output)} is older than ${source}/${newer}`;
    }
  }
  return undefined;
}

/**
 * Throws, naming what is wrong, unless the built package is usable. Suites that run it in child
 * processes call this at load, so a missing build fails them loudly instead of skipping them;
 * Jest's global setup (test/support/global-setup.ts) builds it before any suite loads.
 */
export function requireBuild(): void {
  const problem = unusableBuild();
  if (problem !== undefined) {
    throw new Error(`the built package is not usable: ${problem}; run \`npm run build\``);
  }
}
