// Reference: Nest's own client and server machinery with an in-process hand-off and no socket.
import {
  BaseRpcContext,
  ClientProxy,
  type IncomingRequest,
  type ReadPacket,
  Server,
  type WritePacket,
} from '@nestjs/microservices';

import type { BenchSuite } from './plan.js';
import { NEST_EVENT, NEST_REQUEST, NestBenchHandlers, runNestWorkloads } from './nest-workloads.js';

/**
 * A Nest transport server that receives packets as objects: it does per message what Nest's TCP
 * server does (deserialize, look the handler up, `handleRequest` / `handleEvent`, serialize each
 * reply) minus the socket and the JSON framing.
 */
class InProcessServer extends Server {
  constructor() {
    super();
    this.initializeSerializer({});
    this.initializeDeserializer({});
  }

  listen(callback: () => void): void {
    callback();
  }

  close(): void {
    // Nothing to release.
  }

  on(): void {
    // No transport events.
  }

  unwrap<T>(): T {
    return this as unknown as T;
  }

  /** One incoming packet; `reply` takes each serialized reply. */
  async receive(raw: unknown, reply: (packet: unknown) => void): Promise<void> {
    const packet = (await this.deserializer.deserialize(raw)) as IncomingRequest;
    const pattern = this.normalizePattern(packet.pattern);
    const context = new BaseRpcContext([pattern]);
    if (packet.id === undefined) {
      await this.handleEvent(pattern, packet, context);
      return;
    }
    const handler = this.getHandlerByPattern(pattern);
    if (!handler) {
      reply(this.serializer.serialize({ id: packet.id, err: 'no handler' }));
      return;
    }
    await this.handleRequest(
      context,
      async () => this.transformToObservable(await handler(packet.data, context)),
      (data: WritePacket) => reply(this.serializer.serialize({ ...data, id: packet.id })),
    );
  }
}

/**
 * A Nest client proxy whose "socket" hands the serialized packet to `InProcessServer` in the
 * event loop's check phase (`setImmediate`), and its replies back the same way: what Nest's TCP
 * client does per call, without the connection. A socket delivers in a later event-loop turn
 * too; a microtask hand-off would starve the loop's timers.
 */
class InProcessClient extends ClientProxy {
  private readonly calls = new Map<string, (packet: WritePacket) => void>();

  constructor(private readonly server: InProcessServer) {
    super();
    this.initializeSerializer({});
    this.initializeDeserializer({});
  }

  connect(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.calls.clear();
  }

  unwrap<T>(): T {
    return this.server as unknown as T;
  }

  protected publish(partial: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const packet = this.assignPacketId(partial);
    const serialized = this.serializer.serialize(packet);
    this.calls.set(packet.id, callback);
    setImmediate(
      () =>
        void this.server.receive(serialized, (reply) =>
          setImmediate(() => void this.onReply(reply)),
        ),
    );
    return () => this.calls.delete(packet.id);
  }

  protected async dispatchEvent<T>(packet: ReadPacket): Promise<T> {
    const serialized = this.serializer.serialize({
      ...packet,
      pattern: this.normalizePattern(packet.pattern),
    });
    setImmediate(() => void this.server.receive(serialized, () => undefined));
    return undefined as T;
  }

  private async onReply(raw: unknown): Promise<void> {
    const { err, response, isDisposed, id } = (await this.deserializer.deserialize(
      raw,
    )) as WritePacket & { id: string };
    const callback = this.calls.get(id);
    if (!callback) return;
    callback(isDisposed || err ? { err, response, isDisposed: true } : { err, response });
  }
}

/**
 * The least any Nest transport can cost: the same handlers called through Nest's client and
 * server machinery (packet ids, serializers, `handleRequest`, `transformToObservable`, `send`),
 * with packets handed over in process. Aurelia's Nest path minus this and minus the engine's own
 * request/reply cost is what the Nest integration adds.
 */
export const nestFloorSuite: BenchSuite = {
  system: 'nest-floor',
  name: 'Nest in-process floor',
  async run(ctx) {
    if (!ctx.plan.groups.has('latency') && !ctx.plan.groups.has('rate')) return;
    const handlers = new NestBenchHandlers();
    const server = new InProcessServer();
    server.addHandler(NEST_REQUEST, handlers.request);
    server.addHandler(NEST_EVENT, handlers.event, true);
    const client = new InProcessClient(server);
    await runNestWorkloads(
      ctx,
      { system: 'Nest floor (in process) send', role: 'reference', transport: 'tcp' },
      'Nest floor (in process) emit',
      client,
      handlers,
    );
    client.close();
  },
};
