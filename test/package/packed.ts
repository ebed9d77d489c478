// The package as npm ships it: `npm pack` of the built tree, unpacked into a scratch
// node_modules, and consumer projects compiled against it with the repository's TypeScript.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { repoRoot } from '../support/built.js';

const run = promisify(execFile);

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
 * compiles it with the repository's TypeScript, as `tsc -p` would. Rejects with the compiler's
 * diagnostics when there is an error in the consumer's files or in any declaration file of the
 * package (checked as `skipLibCheck: false` would check them, so a broken published `.d.ts`
 * fails); other libraries' declarations are not checked, which is most of a full check's time.
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
  const errors = compileProject(dir);
  if (errors !== '') throw new Error(`consumer '${name}' does not compile:\n${errors}`);
  return dir;
}

/**
 * Compiles the project of `dir/tsconfig.json` and returns its formatted errors ('' when none):
 * option and global errors, every error in the project's own files and in the package's
 * declaration files, and emit errors.
 */
function compileProject(dir: string): string {
  const configFile = path.join(dir, 'tsconfig.json');
  const read = ts.readConfigFile(configFile, (file) => ts.sys.readFile(file));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, dir, undefined, configFile);
  const program = ts.createProgram({
    rootNames: parsed.fileNames,
    options: parsed.options,
    configFileParsingDiagnostics: parsed.errors,
  });
  const checked = (file: ts.SourceFile): boolean =>
    file.fileName.includes('/node_modules/aurelia-mesh/') ||
    !file.fileName.includes('/node_modules/');
  const diagnostics: ts.Diagnostic[] = [
    ...(read.error === undefined ? [] : [read.error]),
    ...program.getConfigFileParsingDiagnostics(),
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
  ];
  for (const file of program.getSourceFiles().filter(checked)) {
    diagnostics.push(...program.getSyntacticDiagnostics(file));
    diagnostics.push(...program.getSemanticDiagnostics(file));
  }
  if (!parsed.options.noEmit) diagnostics.push(...program.emit().diagnostics);
  const errors = diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  return ts.formatDiagnostics(errors, {
    getCanonicalFileName: (file) => file,
    getCurrentDirectory: () => dir,
    getNewLine: () => '\n',
  });
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
