// Jest global setup: builds dist/ before any suite loads, so that suites running the built
// package in child processes test the current code however Jest was started.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * Runs `tsc -p tsconfig.build.json` in the project root, unless `npm test` started Jest (its
 * `pretest` script has just built). Throws, failing the whole run, when the build fails.
 */
export default function buildForChildProcesses(
  _globalConfig: unknown,
  projectConfig: { rootDir: string },
): void {
  if (process.env.npm_lifecycle_event === 'test') return;
  const root = projectConfig.rootDir;
  process.stderr.write('\nbuilding dist/ for the suites that run it in child processes\n');
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    { cwd: root, stdio: 'inherit' },
  );
}
