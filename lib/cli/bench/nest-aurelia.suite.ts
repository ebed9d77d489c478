// Aurelia at the Nest level: ClientAurelia send() round trips and rates, emit() event rates.
import { lastValueFrom } from 'rxjs';

import type { DomusConfig } from '../../engine/config.js';
import type { Domus } from '../../engine/domus.js';
import { AureliaServer } from '../../nest/aurelia.server.js';
import { ClientAurelia } from '../../nest/client-aurelia.js';
import { ROUND_TRIP, recordLatency, recordRate, type Recorder } from './figures.js';
import { InflightWindow, measureLatency, measureRate, measureWindowedRate } from './measure.js';
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
  let window: InflightWindow | undefined;
  const server = new AureliaServer({
    listen: listen('nest-server'),
    auth: serverNode.auth(),
    config: CONFIG,
    logger: false,
  });
  server.addHandler('bench.request', async () => true);
  server.addHandler('bench.event', async () => window?.received(), true);
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
        { pattern: 'bench.request', address },
        { pattern: 'bench.event', address },
      ],
    });
    await client.connect();
    const caller = client;
    const who: Recorder = { system: 'aurelia Nest send', role: 'aurelia', transport };
    const request = (data: string) => () =>
      lastValueFrom(caller.send<boolean, string>('bench.request', data));
    if (ctx.plan.groups.has('latency')) {
      ctx.progress(`Nest over Aurelia send() round trip over ${transport}`);
      recordLatency(
        ctx,
        who,
        ROUND_TRIP,
        await measureLatency(request('x'.repeat(64)), ctx.plan.latencyTiming),
      );
    }
    if (!ctx.plan.groups.has('rate')) return;
    for (const payload of ctx.plan.payloads) {
      const data = 'x'.repeat(payload);
      for (const inflight of ctx.plan.inflights) {
        ctx.progress(`Nest over Aurelia send() ${payload} B × ${inflight} over ${transport}`);
        const rate = await measureRate(request(data), inflight, ctx.plan.rateTiming);
        recordRate(ctx, who, payload, inflight, rate, 'send() replies received');
        ctx.progress(`Nest over Aurelia emit() ${payload} B × ${inflight} over ${transport}`);
        window = new InflightWindow(inflight);
        const events = await measureWindowedRate(
          () => void caller.emit('bench.event', data).subscribe({ error: () => undefined }),
          window,
          ctx.plan.rateTiming,
        );
        recordRate(
          ctx,
          { ...who, system: 'aurelia Nest emit' },
          payload,
          inflight,
          events,
          'emit() events handled',
          'event',
        );
      }
    }
  } finally {
    await client?.close();
    await server.close();
  }
}
