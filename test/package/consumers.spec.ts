// The package as npm installs it: what the tarball holds, whether its Markdown links resolve,
// and consumer projects compiled against it under each module setting a Nest project uses.
import { mkdtemp, readFile } from 'node:fs/promises';
import path from 'node:path';
import { unusableBuild } from '../support/built.js';
import {
  compileConsumer,
  packAndUnpack,
  runNode,
  type ConsumerSetup,
  type PackedPackage,
} from './packed.js';

const consumerSource = readFile(new URL('./consumer/main.ts', import.meta.url), 'utf8');
/** How long one consumer program may run (two Nest contexts, one call and one event). */
const RUN_MS = 30_000;
const COMPILE_BUDGET_MS = 120_000;

/** Consumers that are compiled and run. */
const RUNNABLE: [string, ConsumerSetup][] = [
  [
    'CommonJS with moduleResolution node10 (the Nest CLI default tsconfig)',
    {
      type: 'commonjs',
      emit: true,
      compilerOptions: {
        module: 'commonjs',
        moduleResolution: 'node10',
        ignoreDeprecations: '6.0',
      },
    },
  ],
  [
    'CommonJS with module nodenext',
    { type: 'commonjs', emit: true, compilerOptions: { module: 'nodenext' } },
  ],
  [
    'ESM with module nodenext',
    { type: 'module', emit: true, compilerOptions: { module: 'nodenext' } },
  ],
];

/** Consumers that are only type-checked (their output needs a bundler, or equals one above). */
const CHECKED: [string, ConsumerSetup][] = [
  [
    'ESM with module node16',
    { type: 'module', emit: false, compilerOptions: { module: 'node16' } },
  ],
  [
    'a bundler project (moduleResolution bundler)',
    {
      type: 'module',
      emit: false,
      compilerOptions: { module: 'preserve', moduleResolution: 'bundler' },
    },
  ],
];

/** Relative link targets in a Markdown text (no URLs, no in-page anchors). */
function relativeLinks(markdown: string): string[] {
  const targets: string[] = [];
  for (const match of markdown.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = match[1].split('#')[0];
    if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    targets.push(target);
  }
  return targets;
}

describe('the packed package', () => {
  let packed: PackedPackage | undefined;
  let pki = '';

  const pack = (): PackedPackage => {
    if (!packed) throw new Error('the package was not packed (see beforeAll)');
    return packed;
  };

  beforeAll(async () => {
    const notBuilt = unusableBuild();
    if (notBuilt !== undefined) throw new Error(`cannot pack: ${notBuilt}`);
    packed = await packAndUnpack();
    // The certificates a user would make, with the bin the package ships.
    pki = path.join(packed.root, 'pki');
    const cli = path.join('node_modules', 'aurelia-mesh', 'dist', 'lib', 'cli', 'main.js');
    await runNode(
      packed.root,
      cli,
      ['certs', '--out', pki, '--node', 'billing', '--node', 'orders'],
      RUN_MS,
    );
  }, COMPILE_BUDGET_MS);

  afterAll(async () => {
    await packed?.cleanup();
  });

  it('ships the licence, the docs and the sample the README links to, beside the built code', () => {
    const files = new Set(pack().files);
    for (const file of [
      'LICENSE',
      'README.md',
      'docs/NEST.md',
      'sample/README.md',
      'dist/lib/index.js',
    ]) {
      expect(files).toContain(file);
    }
    expect([...files].filter((f) => f.startsWith('test/') || f.startsWith('lib/'))).toEqual([]);
  });

  it('ships the MIT licence its package.json declares', async () => {
    const installed = path.join(pack().root, 'node_modules', 'aurelia-mesh');
    const manifest = JSON.parse(await readFile(path.join(installed, 'package.json'), 'utf8')) as {
      license?: string;
    };
    expect(manifest.license).toBe('MIT');
    expect(await readFile(path.join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/);
  });

  it('ships no source map that points at a file it does not carry', async () => {
    const files = new Set(pack().files);
    const maps = pack().files.filter((f) => f.endsWith('.map'));
    expect(maps.filter((f) => f.endsWith('.d.ts.map'))).toEqual([]);
    expect(maps.length).toBeGreaterThan(0);
    const dangling: string[] = [];
    for (const file of maps) {
      const map = JSON.parse(
        await readFile(path.join(pack().root, 'node_modules', 'aurelia-mesh', file), 'utf8'),
      ) as { sources: string[]; sourcesContent?: (string | null)[] };
      map.sources.forEach((source, i) => {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), source));
        if (!files.has(target) && typeof map.sourcesContent?.[i] !== 'string') {
          dangling.push(`${file} → ${source}`);
        }
      });
    }
    expect(dangling).toEqual([]);
  });

  it('resolves every relative link of its Markdown files inside the package', async () => {
    const files = new Set(pack().files);
    const broken: string[] = [];
    for (const file of pack().files.filter((f) => f.endsWith('.md'))) {
      const text = await readFile(
        path.join(pack().root, 'node_modules', 'aurelia-mesh', file),
        'utf8',
      );
      for (const target of relativeLinks(text)) {
        const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(file), target));
        if (!files.has(resolved)) broken.push(`${file} → ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it.each(RUNNABLE)(
    'compiles and runs a consumer: %s',
    async (name, setup) => {
      const dir = await compileConsumer(pack(), slug(name), setup, {
        'main.ts': await consumerSource,
      });
      const sockets = await mkdtemp(path.join(pack().root, 's-'));
      const out = await runNode(dir, path.join('dist', 'main.js'), [pki, sockets], RUN_MS);
      expect(out).toContain('consumer ok: total 6, event delivered, unrouted send refused');
    },
    COMPILE_BUDGET_MS,
  );

  it.each(CHECKED)(
    'type-checks a consumer: %s',
    async (name, setup) => {
      await expect(
        compileConsumer(pack(), slug(name), setup, { 'main.ts': await consumerSource }),
      ).resolves.toContain(slug(name));
    },
    COMPILE_BUDGET_MS,
  );
});

function slug(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, 40);
}
