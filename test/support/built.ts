// Where the built package is, for tests that run it in child processes, and whether it is usable.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The built entry point child processes import: AURELIA_ENTRY, else dist/lib/index.js. */
export const builtEntry =
  process.env.AURELIA_ENTRY ?? path.join(repoRoot, 'dist', 'lib', 'index.js');

/**
 * Why child processes cannot run the built package, or undefined when they can: dist/ must exist
 * and be newer than every source file (CI's `npm ci` and `npm test` build it; locally run
 * `npm run build`). An explicit AURELIA_ENTRY is trusted as it is.
 */
export function unusableBuild(): string | undefined {
  if (!existsSync(builtEntry)) {
    return `${path.relative(repoRoot, builtEntry)} is missing; run \`npm run build\``;
  }
  if (process.env.AURELIA_ENTRY !== undefined) return undefined;
  const builtAt = statSync(builtEntry).mtimeMs;
  const lib = path.join(repoRoot, 'lib');
  const newer = readdirSync(lib, { recursive: true, encoding: 'utf8' }).find(
    (file) => file.endsWith('.ts') && statSync(path.join(lib, file)).mtimeMs > builtAt,
  );
  return newer === undefined
    ? undefined
    : `dist/ is older than lib/${newer}; run \`npm run build\``;
}
