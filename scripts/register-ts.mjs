// Registers a loader hook that transpiles the TypeScript sources on the fly (no type checking),
// so measurement scripts run against lib/ without a build. Import it before any lib/ module.
import { register } from 'node:module';
import { URL } from 'node:url';

const LOADER = `
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
let ts;
export async function initialize({ typescriptUrl }) {
  ts = (await import(typescriptUrl)).default;
}
export async function resolve(specifier, context, next) {
  const parent = context.parentURL;
  if (parent?.endsWith('.ts') && specifier.startsWith('.') && specifier.endsWith('.js')) {
    const url = new URL(specifier.slice(0, -3) + '.ts', parent);
    if (existsSync(fileURLToPath(url))) return { url: url.href, shortCircuit: true };
  }
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const fileName = fileURLToPath(url);
  const { outputText } = ts.transpileModule(await readFile(fileName, 'utf8'), {
    fileName,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      experimentalDecorators: true,
      useDefineForClassFields: true,
    },
  });
  return { format: 'module', source: outputText, shortCircuit: true };
}
`;
register(`data:text/javascript,${encodeURIComponent(LOADER)}`, {
  parentURL: import.meta.url,
  data: { typescriptUrl: import.meta.resolve('typescript') },
});
