// Every TypeScript snippet of docs/NEST.md compiles against the packed package, as CommonJS (the
// Nest CLI's classic tsconfig) and as ESM. A snippet is compiled as written, in a file of its
// own; names it uses without defining (an `options` object, the quick start's module, a
// controller from an earlier snippet) are declared for it, never its code changed.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, unusableBuild } from '../support/built.js';
import { compileConsumer, packAndUnpack, type PackedPackage } from './packed.js';

const COMPILE_BUDGET_MS = 120_000;

/** Snippets not compiled, by a module they import that is no dependency of this repository. */
const NOT_INSTALLED = ['@opentelemetry/sdk-node'];

/** What a snippet may use without defining it: name → the line that provides it. */
const PROVIDED: Record<string, string> = {
  Controller: "import { Controller } from '@nestjs/common';",
  Module: "import { Module } from '@nestjs/common';",
  Injectable: "import { Injectable } from '@nestjs/common';",
  Get: "import { Get } from '@nestjs/common';",
  CanActivate: "import type { CanActivate } from '@nestjs/common';",
  ExecutionContext: "import type { ExecutionContext } from '@nestjs/common';",
  NestFactory: "import { NestFactory } from '@nestjs/core';",
  MessagePattern: "import { MessagePattern } from '@nestjs/microservices';",
  EventPattern: "import { EventPattern } from '@nestjs/microservices';",
  Payload: "import { Payload } from '@nestjs/microservices';",
  Ctx: "import { Ctx } from '@nestjs/microservices';",
  RpcException: "import { RpcException } from '@nestjs/microservices';",
  HealthCheck: "import { HealthCheck } from '@nestjs/terminus';",
  HealthCheckService: "import { HealthCheckService } from '@nestjs/terminus';",
  AureliaModule: "import { AureliaModule } from 'aurelia-mesh';",
  AureliaServer: "import { AureliaServer } from 'aurelia-mesh';",
  ClientAurelia: "import { ClientAurelia } from 'aurelia-mesh';",
  AureliaContext: "import { AureliaContext } from 'aurelia-mesh';",
  AureliaHealthIndicator: "import { AureliaHealthIndicator } from 'aurelia-mesh/health';",
  lastValueFrom: "import { lastValueFrom } from 'rxjs';",
  createReadStream: "import { createReadStream } from 'node:fs';",
  createWriteStream: "import { createWriteStream } from 'node:fs';",
  pipeline: "import { pipeline } from 'node:stream/promises';",
  path: "import path from 'node:path';",
  options: "declare const options: import('aurelia-mesh').AureliaModuleOptions;",
  auth: "declare const auth: import('aurelia-mesh').AureliaModuleOptions['auth'];",
  registry: "declare const registry: import('prom-client').Registry;",
  dir: 'declare const dir: string;',
  BillingModule: 'declare class BillingModule {}',
  BillingController: 'declare class BillingController {}',
  OrdersOnly:
    "declare class OrdersOnly { canActivate(context: import('@nestjs/common').ExecutionContext): boolean; }",
};

interface Snippet {
  readonly line: number;
  readonly code: string;
}

/** The ```ts blocks of a Markdown text, with the line each starts on. */
function tsSnippets(markdown: string): Snippet[] {
  const snippets: Snippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    const end = lines.indexOf('```', i + 1);
    snippets.push({ line: i + 1, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return snippets;
}

/** The snippet as a module of its own, preceded by what it uses without defining. */
function asModule(code: string): string {
  const escape = (name: string) => name.replace(/[$]/g, '\\$');
  const defines = (name: string) =>
    new RegExp(`import[^;]*\\b${escape(name)}\\b[^;]*from`).test(code) ||
    new RegExp(`\\b(class|const|let|function|interface|type)\\s+${escape(name)}\\b`).test(code);
  const uses = (name: string) => new RegExp(`\\b${escape(name)}\\b`).test(code);
  const provided = Object.entries(PROVIDED)
    .filter(([name]) => uses(name) && !defines(name))
    .map(([, line]) => line);
  return [...provided, code, 'export {};', ''].join('\n');
}

describe('the snippets of docs/NEST.md', () => {
  let packed: PackedPackage | undefined;
  let sources: Record<string, string> = {};
  let skipped: string[] = [];

  beforeAll(async () => {
    const notBuilt = unusableBuild();
    if (notBuilt !== undefined) throw new Error(`cannot pack: ${notBuilt}`);
    const markdown = await readFile(path.join(repoRoot, 'docs', 'NEST.md'), 'utf8');
    const snippets = tsSnippets(markdown);
    const compiled = snippets.filter((s) => !NOT_INSTALLED.some((m) => s.code.includes(`'${m}'`)));
    skipped = snippets.filter((s) => !compiled.includes(s)).map((s) => `line ${s.line}`);
    sources = Object.fromEntries(
      compiled.map((s) => [`nest-md-line-${s.line}.ts`, asModule(s.code)]),
    );
    packed = await packAndUnpack();
  }, COMPILE_BUDGET_MS);

  afterAll(async () => {
    await packed?.cleanup();
  });

  it('are found, and only those importing an uninstalled module are left out', () => {
    expect(Object.keys(sources).length).toBeGreaterThanOrEqual(15);
    expect(skipped).toHaveLength(1);
  });

  it.each([
    [
      'CommonJS (module commonjs, moduleResolution node10)',
      'commonjs' as const,
      { module: 'commonjs', moduleResolution: 'node10', ignoreDeprecations: '6.0' },
    ],
    ['ESM (module nodenext)', 'module' as const, { module: 'nodenext' }],
  ])(
    'compile as %s',
    async (_name, type, compilerOptions) => {
      if (!packed) throw new Error('the package was not packed (see beforeAll)');
      const dir = await compileConsumer(
        packed,
        `snippets-${type}`,
        { type, emit: false, compilerOptions: { ...compilerOptions, types: ['node', 'jest'] } },
        sources,
      );
      expect(dir).toContain(type);
    },
    COMPILE_BUDGET_MS,
  );
});
