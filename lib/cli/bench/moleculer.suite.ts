// Baseline: Moleculer's brokerless TCP transporter (static peers, no UDP discovery), calls and events.
import { ServiceBroker } from 'moleculer';

import { ROUND_TRIP, recordLatency, recordRate, type Recorder } from './figures.js';
import { InflightWindow, measureLatency, measureRate, measureWindowedRate } from './measure.js';
import { freePort } from './nest-tcp.suite.js';
import type { BenchSuite } from './plan.js';

const DISCOVERY_TIMEOUT_MS = 10_000;

/**
 * Two Moleculer brokers in this process linked by the TCP transporter (JSON serializer, plain
 * TCP: the transporter has no TLS option). Measures `call()` request rates and `emit()` event
 * rates; the latter kept at most `inflight` events ahead of the handler.
 */
export const moleculerSuite: BenchSuite = {
  system: 'moleculer',
  name: 'Moleculer TCP',
  async run(ctx) {
    if (!ctx.plan.groups.has('latency') && !ctx.plan.groups.has('rate')) return;
    const [serverPort, clientPort] = [await freePort(), await freePort()];
    const transporter = (port: number, peer: string) => ({
      type: 'TCP',
      options: { udpDiscovery: false, port, urls: [peer] },
    });
    const server = new ServiceBroker({
      namespace: 'aurelia-bench',
      nodeID: 'bench-server',
      transporter: transporter(serverPort, `127.0.0.1:${clientPort}/bench-client`),
      logger: false,
    });
    const client = new ServiceBroker({
      namespace: 'aurelia-bench',
      nodeID: 'bench-client',
      transporter: transporter(clientPort, `127.0.0.1:${serverPort}/bench-server`),
      logger: false,
    });
    let window: InflightWindow | undefined;
    server.createService({
      name: 'bench',
      actions: { request: () => true },
      events: { 'bench.event': () => window?.received() },
    });
    try {
      await Promise.all([server.start(), client.start()]);
      await client.waitForServices('bench', DISCOVERY_TIMEOUT_MS);
      const who: Recorder = { system: 'Moleculer TCP', role: 'alternative', transport: 'tcp' };
      const call = (data: string) => () => client.call('bench.request', { data });
      if (ctx.plan.groups.has('latency')) {
        ctx.progress('Moleculer call() round trip');
        recordLatency(
          ctx,
          who,
          ROUND_TRIP,
          await measureLatency(call('x'.repeat(64)), ctx.plan.latencyTiming),
        );
      }
      if (ctx.plan.groups.has('rate')) {
        for (const payload of ctx.plan.payloads) {
          const data = 'x'.repeat(payload);
          for (const inflight of ctx.plan.inflights) {
            ctx.progress(`Moleculer call() ${payload} B × ${inflight}`);
            const rate = await measureRate(call(data), inflight, ctx.plan.rateTiming);
            recordRate(ctx, who, payload, inflight, rate, 'call() requests, no TLS');
            ctx.progress(`Moleculer emit() ${payload} B × ${inflight}`);
            window = new InflightWindow(inflight);
            const events = await measureWindowedRate(
              () => void client.emit('bench.event', { data }),
              window,
              ctx.plan.rateTiming,
            );
            recordRate(
              ctx,
              { ...who, system: 'Moleculer TCP emit' },
              payload,
              inflight,
              events,
              'emit() events handled, no TLS',
              'event',
            );
          }
        }
      }
    } finally {
      await Promise.all([client.stop(), server.stop()]);
    }
  },
};
