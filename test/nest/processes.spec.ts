// Nest applications over Aurelia in child processes: what Jest's sandboxed `process` cannot show.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { lastValueFrom } from 'rxjs';
import { AureliaError, type Domus, type DomusReportingEvent } from '../../lib/index.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { builtEntry, repoRoot, requireBuild } from '../support/built.js';
import { firstMatch } from '../support/mesh.js';
import {
  makeTestPki,
  writeTestNodeFiles,
  type TestPki,
  type TestPkiFiles,
} from '../support/pki.js';
import { EventQueue, within } from '../support/transport.js';
import { serviceOptions } from './fixtures.js';

const script = path.join(repoRoot, 'test', 'support', 'nest-process.mjs');

/** `test/support/nest-process.mjs` in a child process, read line by line. */
class NestProcess {
  readonly lines = new EventQueue<string>('a line from the Nest child process');
  readonly seen: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';

  constructor(
    mode: 'resets' | 'serve',
    dirs: { server: TestPkiFiles; client?: TestPkiFiles },
    private readonly child: ChildProcess = spawn(process.execPath, [script], {
      env: {
        ...process.env,
        NEST_MODE: mode,
        AURELIA_ENTRY: builtEntry,
        AURELIA_SERVER_DIR: dirs.server.dir,
        AURELIA_CLIENT_DIR: dirs.client?.dir ?? '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.seen.push(line);
      this.lines.push(line);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  /** The next line starting with `word`, within `ms`. */
  async line(word: string, ms: number): Promise<string> {
    for (const end = Date.now() + ms; ;) {
      const line = await this.lines.next(Math.max(1, end - Date.now()));
      if (line.startsWith(word)) return line;
    }
  }

  /** Resolves when the process exits within `ms`; kills it and says why otherwise. */
  async exit(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    try {
      return await within(this.exited, ms, 'the Nest child process to exit');
    } catch (err) {
      this.kill();
      const output = `output: ${this.seen.join(' | ')}; ${this.stderr}`;
      throw new Error(`${(err as Error).message} (${output})`, { cause: err });
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  get errors(): string {
    return this.stderr;
  }
}

requireBuild();

describe('Nest applications in child processes', () => {
  let pki: TestPki;
  let server: TestPkiFiles;
  let client: TestPkiFiles;
  const children: NestProcess[] = [];

  beforeAll(async () => {
    pki = await makeTestPki();
    server = await writeTestNodeFiles(await pki.node('billing'));
    client = await writeTestNodeFiles(await pki.node('orders'));
  });
  afterEach(() => {
    for (const child of children.splice(0)) child.kill();
  });
  afterAll(async () => {
    await server?.cleanup();
    await client?.cleanup();
  });

  it('survives connection resets mid-stream with no unhandled rejection, then exits 0 by itself', async () => {
    const child = new NestProcess('resets', { server, client });
    children.push(child);
    // The child exits 3 or 4 on an unhandled rejection or uncaught exception, 1 on a call that
    // settled with anything but its answer or an AureliaError, and not at all if a handle stays.
    const exit = await child.exit(60_000);
    expect({
      exit,
      errors: child.errors,
      bad: child.seen.filter((l) => !/^(round|connections|done)\b/.test(l)),
    }).toEqual({
      exit: { code: 0, signal: null },
      errors: '',
      bad: [],
    });
    expect(child.seen.filter((l) => l.startsWith('round '))).toHaveLength(6);
    expect(child.seen.at(-1)).toBe('done');
    // The one leg was reset every round, so the proxy accepted a reconnection after each.
    const [, toServer] = child.seen.find((l) => l.startsWith('connections '))!.split(' ');
    expect(Number(toServer)).toBeGreaterThanOrEqual(7);
  });

  it('shuts the domus down on SIGTERM with enableShutdownHooks(), failing the calls in flight', async () => {
    const child = new NestProcess('serve', { server });
    children.push(child);
    const address = (await child.line('ready ', 20_000)).slice('ready '.length);
    const caller = new ClientAurelia(
      await serviceOptions(pki, 'caller', {
        routes: { sum: address, held: address },
        logger: false,
      }),
    );
    try {
      expect(await lastValueFrom(caller.send('sum', [1, 2]))).toBe(3);
      const held = lastValueFrom(caller.send('held', {})).then(
        () => 'answered',
        (e: unknown) => e,
      );
      const gone = firstMatch<DomusReportingEvent>(
        caller.unwrap<Domus>().reporting.events$,
        (e) => e.type === 'PeerDisconnected',
        'the child domus to disconnect',
        10_000,
      );
      child.signal('SIGTERM');
      // After its shutdown hooks, Nest raises the signal again: no domus runs, nothing listens.
      expect(await child.line('stopped ', 10_000)).toBe('stopped 0 0');
      expect(await child.exit(10_000)).toEqual({ code: 0, signal: null });
      expect(await gone).toMatchObject({ identity: 'spiffe://aurelia.local/billing' });
      expect(AureliaError.is(await within(held, 5000, 'the held call to fail'))).toBe(true);
    } finally {
      await caller.close();
    }
  });
});
