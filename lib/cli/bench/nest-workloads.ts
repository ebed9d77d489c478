// The workloads every Nest-level system runs: send() round trips and rates, emit() event rates.
import { type Observable, lastValueFrom } from 'rxjs';

import { ROUND_TRIP, recordLatency, recordRate, type Recorder } from './figures.js';
import { InflightWindow, measureLatency, measureRate, measureWindowedRate } from './measure.js';
import type { SuiteContext } from './plan.js';

/** The pattern of the request handler every Nest-level system serves. */
export const NEST_REQUEST = 'bench.request';
/** The pattern of the event handler every Nest-level system serves. */
export const NEST_EVENT = 'bench.event';

/**
 * The handlers of a Nest-level system under test: register `request` for `NEST_REQUEST` (a
 * message handler answering `true`) and `event` for `NEST_EVENT` (an event handler that counts).
 */
export class NestBenchHandlers {
  private window: InflightWindow | undefined;

  /** The `@MessagePattern` handler: answers every request with `true`. */
  readonly request = async (): Promise<boolean> => true;

  /** The `@EventPattern` handler: counts the event against the current window. */
  readonly event = async (): Promise<void> => {
    this.window?.received();
  };

  /** Starts a new event window of `limit` messages in flight. */
  openWindow(limit: number): InflightWindow {
    this.window = new InflightWindow(limit);
    return this.window;
  }
}

/** What the workloads use of a Nest client proxy. */
export interface NestBenchClient {
  send<R, I>(pattern: string, data: I): Observable<R>;
  emit<R, I>(pattern: string, data: I): Observable<R>;
}

/**
 * Runs the Nest workloads through `client`: the `send()` round trip (64 B) and, per payload and
 * in-flight count of the plan, the `send()` reply rate and the `emit()` handled-event rate.
 * `who.system` names the send figures; emit figures are named `${emitSystem}`.
 */
export async function runNestWorkloads(
  ctx: SuiteContext,
  who: Recorder,
  emitSystem: string,
  client: NestBenchClient,
  handlers: NestBenchHandlers,
): Promise<void> {
  const request = (data: string) => () =>
    lastValueFrom(client.send<boolean, string>(NEST_REQUEST, data));
  if (ctx.plan.groups.has('latency')) {
    ctx.progress(`${who.system} round trip over ${who.transport}`);
    recordLatency(
      ctx,
      who,
      ROUND_TRIP,
      await measureLatency(request('x'.repeat(64)), ctx.plan.latencyTiming),
    );
  }
  if (!ctx.plan.groups.has('rate')) return;
  for (const payload of ctx.plan.payloads) {
    // A string of `payload` characters: what a Nest app sends, encoded by each transport.
    const data = 'x'.repeat(payload);
    for (const inflight of ctx.plan.inflights) {
      ctx.progress(`${who.system} ${payload} B × ${inflight} over ${who.transport}`);
      const rate = await measureRate(request(data), inflight, ctx.plan.rateTiming);
      recordRate(ctx, who, payload, inflight, rate, 'send() replies received');
      ctx.progress(`${emitSystem} ${payload} B × ${inflight} over ${who.transport}`);
      const events = await measureWindowedRate(
        () => void client.emit(NEST_EVENT, data).subscribe({ error: () => undefined }),
        handlers.openWindow(inflight),
        ctx.plan.rateTiming,
      );
      recordRate(
        ctx,
        { ...who, system: emitSystem },
        payload,
        inflight,
        events,
        'emit() events handled',
        'event',
      );
    }
  }
}
