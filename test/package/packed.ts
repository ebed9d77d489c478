// The package as npm ships it: `npm pack` of the built tree, unpacked into a scratch
// node_modules, and consumer projects compiled against it with the repository's TypeScript.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../support/built.js';

const run = promisify(execFile);

/** The TypeScript compiler consumers are built with (the repository's own). */
const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');

/** One unpacked tarball: `root/node_modules` holds it and, linked, every other dependency. */
export interface PackedPackage {
  /** Scratch directory; consumer projects are made below it so they resolve its node_modules. */
  readonly root: string;
  /** Paths inside the tarball (`package/` stripped), as `npm pack --json` lists them. */
  readonly files: readonly string[];
  /** Removes the scratch directory. */
  cleanup(): Promise<void>;
}

/**
 * Packs the repository (`npm pack --ignore-scripts`: dist/ must already be built) and unpacks the
 * tarball as `node_modules/aurelia-mesh` of a scratch directory. The repository's other
 * dependencies are linked next to it, so a consumer resolves `@nestjs/*`, `rxjs` and types the
 * way an installed project does, without a registry.
 */
export async function packAndUnpack(): Promise<PackedPackage> {
  const root = await mkdtemp(path.join(tmpdir(), 'aurelia-pack-'));
  try {
    const { stdout } = await run(
      'npm',
      ['pack', '--ignore-scripts', '--json', '--pack-destination', root],
      { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 },
    );
    const [manifest] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    const modules = path.join(root, 'node_modules');
    const target = path.join(modules, 'aurelia-mesh');
    await mkdir(target, { recursive: true });
    await run('tar', [
      '-xzf',
      path.join(root, manifest.filename),
      '-C',
      target,
      '--strip-components=1',
    ]);
    const repoModules = path.join(repoRoot, 'node_modules');
    for (const name of await readdir(repoModules)) {
      if (name === 'aurelia-mesh') continue;
      await symlink(path.join(repoModules, name), path.join(modules, name));
    }
    return {
      root,
      files: manifest.files.map((f) => f.path),
      cleanup: () => rm(root, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

/** How a consumer project is set up: its package type and its compiler options. */
export interface ConsumerSetup {
  /** The `type` of the consumer's package.json. */
  readonly type: 'commonjs' | 'module';
  /** Compiler options over the common ones (strict, decorators, no skipLibCheck). */
  readonly compilerOptions: Record<string, unknown>;
  /** Whether to emit JavaScript (to `dist/`) or only type-check. */
  readonly emit: boolean;
}

/**
 * Writes a consumer project `name` below `packed.root` with `sources` (file name → text) and
 * compiles it with `tsc`. Rejects with the compiler's output when it reports an error. Library
 * declarations are checked too (`skipLibCheck: false`), so a broken published `.d.ts` fails.
 */
export async function compileConsumer(
  packed: PackedPackage,
  name: string,
  setup: ConsumerSetup,
  sources: Readonly<Record<string, string>>,
): Promise<string> {
  const dir = path.join(packed.root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify({ name, private: true, type: setup.type }),
  );
  for (const [file, text] of Object.entries(sources)) {
    await writeFile(path.join(dir, file), text);
  }
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      strict: true,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      esModuleInterop: true,
      skipLibCheck: false,
      types: ['node'],
      outDir: 'dist',
      noEmit: !setup.emit,
      ...setup.compilerOptions,
    },
    files: Object.keys(sources).filter((file) => file.endsWith('.ts')),
  };
  await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  try {
    await run(process.execPath, [tsc, '-p', dir], { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`consumer '${name}' does not compile:\n${stdout}${stderr}`, { cause: err });
  }
  return dir;
}

/**
 * Runs `node <script> ...args` in `dir`, bounded by `timeoutMs`; resolves with its standard
 * output, rejects with its output when it exits non-zero or runs out of time.
 */
export async function runNode(
  dir: string,
  script: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, [script, ...args], {
      cwd: dir,
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`node ${script} in ${dir} failed: ${String(err)}\n${stdout}${stderr}`, {
      cause: err,
    });
  }
}
