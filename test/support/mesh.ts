// Builds small meshes of real domus on loopback TCP or Unix sockets for end-to-end tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  Aurelia,
  DomusAddr,
  DomusConfigBuilder,
  SimpleResolver,
  type Domus,
  type DomusConfig,
} from '../../lib/index.js';
import { makeTestPki, type TestPki } from './pki.js';
import { FaultProxy } from './proxy.js';

/** Which transport a test domus listens on. */
export type TestTransport = 'tcp' | 'socket';

/** Settings tests usually want: short deadlines so failures surface fast. */
export function fastConfig(patch: (b: DomusConfigBuilder) => DomusConfigBuilder = (b) => b) {
  return patch(
    new DomusConfigBuilder()
      .sendTimeoutMs(5000)
      .callisConnectTimeoutMs(2000)
      .acceptTimeoutMs(2000)
      .reconnectBackoffMs([20, 50, 100])
      .tcpHandshakeTimeoutMs(2000)
      .socketHandshakeTimeoutMs(2000),
  ).build();
}

/** A temporary directory for Unix socket paths, removed by `cleanup`. */
export function socketDir(): { dir: string; path(name: string): string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'aur-'));
  return {
    dir,
    path: (name) => path.join(dir, `${name}.sock`),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A set of domus built by one `Aurelia` runtime, all sharing one CA and one resolver. */
export class TestMesh {
  readonly aurelia = new Aurelia();
  readonly resolver = new SimpleResolver();
  readonly domus = new Map<string, Domus>();
  private sockets: ReturnType<typeof socketDir> | undefined;
  private readonly proxies: FaultProxy[] = [];

  private constructor(readonly pki: TestPki) {}

  static async create(): Promise<TestMesh> {
    return new TestMesh(await makeTestPki());
  }

  /** Builds a domus named `name` (its certificate identity is `spiffe://aurelia.local/<name>`). */
  async add(
    name: string,
    options: {
      transport?: TestTransport;
      config?: DomusConfig;
      addr?: DomusAddr;
      /** `false` builds a domus without a listener, which only calls out. */
      listen?: boolean;
      /** Certificate to use (default: the node called `name`), e.g. to restart a node. */
      certificate?: string;
    } = {},
  ): Promise<Domus> {
    const node = await this.pki.node(options.certificate ?? name);
    const addr =
      options.listen === false
        ? undefined
        : (options.addr ?? this.addressFor(name, options.transport ?? 'tcp'));
    const domus = await this.aurelia
      .domusBuilder(options.config ?? fastConfig(), addr, node.auth(), this.resolver)
      .build();
    this.domus.set(name, domus);
    return domus;
  }

  /** Routes taberna `id` to the domus named `name`. */
  route(id: bigint, name: string): void {
    const domus = this.get(name);
    this.resolver.insert(id, domus.localAddr);
  }

  get(name: string): Domus {
    const domus = this.domus.get(name);
    if (!domus) throw new Error(`no domus named ${name} in this mesh`);
    return domus;
  }

  /**
   * Starts a fault proxy in front of the domus called `name`, on its transport, and routes each
   * of `ids` through it; `close` closes it.
   */
  async proxy(name: string, ...ids: bigint[]): Promise<FaultProxy> {
    const target = this.get(name).localAddr;
    const proxy = await FaultProxy.start(target, { listen: target.isTcp() ? 'tcp' : 'socket' });
    this.proxies.push(proxy);
    for (const id of ids) this.resolver.insert(id, proxy.addr);
    return proxy;
  }

  /** Closes the proxies, shuts every domus down and removes socket files. */
  async close(): Promise<void> {
    for (const proxy of this.proxies.splice(0)) await proxy.close();
    await this.aurelia.shutdown();
    this.sockets?.cleanup();
  }

  private addressFor(name: string, transport: TestTransport): DomusAddr {
    if (transport === 'tcp') return DomusAddr.tcp('127.0.0.1', 0);
    this.sockets ??= socketDir();
    return DomusAddr.socket(this.sockets.path(name));
  }
}

/** Checks `predicate` every few milliseconds until it holds; fails after `timeoutMs`. */
export async function eventually(
  predicate: () => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Resolves with the first value of `source` matching `predicate`, or rejects after `timeoutMs`. */
export function firstMatch<T>(
  source: { subscribe(observer: (value: T) => void): { unsubscribe(): void } },
  predicate: (value: T) => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const sub = source.subscribe((value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      queueMicrotask(() => sub.unsubscribe());
      resolve(value);
    });
  });
}
