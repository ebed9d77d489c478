// Aurelia at the Nest level: ClientAurelia send() round trips and rates, emit() event rates.
import type { DomusConfig } from '../../engine/config.js';
import type { Domus } from '../../engine/domus.js';
import { AureliaServer } from '../../nest/aurelia.server.js';
import { ClientAurelia } from '../../nest/client-aurelia.js';
import { RequestReplyClient } from '../../engine/services/request-reply-client.js';
import { RequestReplyServer } from '../../engine/services/request-reply.js';
import { payloadOf, recordRate } from './figures.js';
import { measureRate } from './measure.js';
import { NEST_EVENT, NEST_REQUEST, NestBenchHandlers, runNestWorkloads } from './nest-workloads.js';
import type { BenchSuite, SuiteContext } from './plan.js';
import type { BenchTransport } from './report.js';

const CONFIG: Partial<DomusConfig> = {
  sendQueueSize: 1024,
  tabernaAcceptQueueSize: 1024,
  sendTimeoutMs: 30_000,
  acceptTimeoutMs: 30_000,
};

/**
 * A Nest `AureliaServer` with one request handler and one event handler, and a `ClientAurelia`
 * calling it, each with its own domus, as a Nest application would run them (without the DI
 * container, whose cost is paid once at start-up, not per message).
 */
export const nestAureliaSuite: BenchSuite = {
  system: 'nest-aurelia',
  name: 'aurelia Nest',
  async run(ctx) {
    if (!ctx.plan.groups.has('latency') && !ctx.plan.groups.has('rate')) return;
    for (const transport of ctx.plan.transports) await runOver(ctx, transport);
  },
};

async function runOver(ctx: SuiteContext, transport: BenchTransport): Promise<void> {
  const listen = (name: string): string =>
    transport === 'tcp' ? 'tls://127.0.0.1:0' : `unix://${ctx.fixture.socketPath(name)}`;
  const serverNode = await ctx.fixture.node('nest-aurelia-server');
  const clientNode = await ctx.fixture.node('nest-aurelia-client');
  const handlers = new NestBenchHandlers();
  const server = new AureliaServer({
    listen: listen('nest-server'),
    auth: serverNode.auth(),
    config: CONFIG,
    logger: false,
  });
  server.addHandler(NEST_REQUEST, handlers.request);
  server.addHandler(NEST_EVENT, handlers.event, true);
  let client: ClientAurelia | undefined;
  try {
    await new Promise<void>(
      (resolve, reject) => void server.listen((err?: unknown) => (err ? reject(err) : resolve())),
    );
    const address = server.unwrap<Domus>().localAddr;
    client = new ClientAurelia({
      listen: listen('nest-client'),
      auth: clientNode.auth(),
      config: CONFIG,
      logger: false,
      routes: [
        { pattern: NEST_REQUEST, address },
        { pattern: NEST_EVENT, address },
        { pattern: ENGINE_CALL_TABERNA, address },
      ],
    });
    await client.connect();
    await measureEngineCalls(ctx, transport, server.unwrap<Domus>(), client.unwrap<Domus>());
    await runNestWorkloads(
      ctx,
      { system: 'aurelia Nest send', role: 'aurelia', transport },
      'aurelia Nest emit',
      client,
      handlers,
    );
  } finally {
    await client?.close();
    await server.close();
  }
}

/** Taberna of the engine-level request/reply server measured beside the Nest path. */
const ENGINE_CALL_TABERNA = 0x6265_6e63_6863_616cn;

/**
 * The engine's own request/reply cost on the same two domus: `RequestReplyClient.call` to a
 * `RequestReplyServer` answering every 64 B request with one 64 B reply. The Nest path costs this
 * plus Nest's machinery (the in-process floor) plus what the integration adds.
 */
async function measureEngineCalls(
  ctx: SuiteContext,
  transport: BenchTransport,
  server: Domus,
  client: Domus,
): Promise<void> {
  if (!ctx.plan.groups.has('rate')) return;
  const body = payloadOf(64);
  const served = await RequestReplyServer.serve(server, ENGINE_CALL_TABERNA, () => body);
  try {
    const calls = RequestReplyClient.of(client);
    const options = {};
    const call = (): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        calls.call(ENGINE_CALL_TABERNA, body, options, {
          next: () => undefined,
          error: reject,
          complete: resolve,
        });
      });
    for (const inflight of ctx.plan.inflights) {
      ctx.progress(`engine request/reply 64 B × ${inflight} over ${transport}`);
      recordRate(
        ctx,
        { system: 'aurelia engine call', role: 'aurelia', transport },
        64,
        inflight,
        await measureRate(call, inflight, ctx.plan.rateTiming),
        'request/reply calls answered',
      );
    }
  } finally {
    await served.close();
  }
}
