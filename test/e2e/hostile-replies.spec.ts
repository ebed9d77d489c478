// A member with a valid certificate trying to answer calls it never received.
import { randomBytes } from 'node:crypto';
import { lastValueFrom } from 'rxjs';
import { DomusAddr, type Domus } from '../../lib/index.js';
import { RequestReplyClient, RequestReplyServer } from '../../lib/engine/services/request-reply.js';
import {
  decodeReplyAcks,
  encodeHelloResponse,
  encodeReply,
} from '../../lib/engine/wire/control.js';
import { ControlType, ReplyFlags, type OutboundFrame } from '../../lib/engine/wire/frame.js';
import { TestMesh, eventually } from '../support/mesh.js';
import { Cleanup, dialAs, startListener, within } from '../support/transport.js';
import { HostilePeer } from '../support/hostile-peer.js';

const BILLING = 301n;
const MALLORY = 302n;

/** A well-formed final reply `body` to message `id`, as wire version 2 spells it. */
function lastReply(id: number, body: string): OutboundFrame {
  return encodeReply(id, { seq: 0, flags: ReplyFlags.Last, reason: '', body: Buffer.from(body) });
}

describe('replies from a member that did not receive the request', () => {
  let mesh: TestMesh;
  let cleanup: Cleanup;
  let orders: Domus;
  let billing: Domus;
  let release: (() => void) | undefined;

  beforeEach(async () => {
    mesh = await TestMesh.create();
    cleanup = new Cleanup();
    orders = await mesh.add('orders');
    billing = await mesh.add('billing');
    mesh.route(BILLING, 'billing');
    // Billing answers a 'charge' only when the test says so, so that call is open while
    // mallory acts; anything else it answers at once.
    await RequestReplyServer.serve(billing, BILLING, async (req) => {
      if (req.body.toString() === 'charge') {
        await new Promise<void>((resolve) => (release = resolve));
      }
      return Buffer.from(`genuine ${req.body.toString()}`);
    });
  });
  afterEach(async () => {
    release?.();
    await cleanup.run();
    await mesh.close();
  });

  it("cannot answer another member's call: forged replies close mallory's own connection and the call gets billing's answer", async () => {
    const client = await RequestReplyClient.for(orders);
    const call = lastValueFrom(client.request(BILLING, Buffer.from('charge')));
    await eventually(() => release !== undefined, 'billing to hold the call');

    // Mallory holds a valid certificate of the mesh and talks to orders directly, naming every
    // message id orders could have used for its request.
    const mallory = new HostilePeer(
      await dialAs(cleanup, orders.localAddr, await mesh.pki.node('mallory')),
    );
    await mallory.hello(randomBytes(8).readBigUInt64BE(0));
    mallory.write(Array.from({ length: 64 }, (_, i) => lastReply(i + 1, 'forged')));
    // A reply on a connection orders accepted is not a reply to anything: a protocol violation
    // that closes mallory's connection only.
    await mallory.closed();
    expect(orders.reporting.snapshot().protocolViolations).toBeGreaterThanOrEqual(1);

    release!();
    expect((await call).toString()).toBe('genuine charge');
    // Billing answered on the connection orders dialed; it dialed nobody.
    expect(billing.reporting.snapshot().dialAttempts).toBe(0);
  });

  describe('on the connection orders dialed to call mallory', () => {
    let server: Awaited<ReturnType<typeof startListener>>;
    let client: RequestReplyClient;

    beforeEach(async () => {
      server = await startListener(
        cleanup,
        DomusAddr.tcp('127.0.0.1', 0),
        await mesh.pki.node('mallory'),
      );
      mesh.resolver.insert(MALLORY, server.addr);
      client = await RequestReplyClient.for(orders);
    });

    /**
     * Makes `warmups` calls to billing that are answered at once, then the victim call, which
     * billing holds; returns it with the message id it was written under (ids count from 1 per
     * outbound peer, so it is `warmups + 1`: mallory is told it, the strongest guess there is).
     */
    async function victimCall(warmups: number): Promise<{ call: Promise<Buffer>; id: number }> {
      for (let i = 0; i < warmups; i++) {
        const answer = await lastValueFrom(client.request(BILLING, Buffer.from(`warm ${i}`)));
        expect(answer.toString()).toBe(`genuine warm ${i}`);
      }
      const call = lastValueFrom(client.request(BILLING, Buffer.from('charge')));
      await eventually(() => release !== undefined, 'billing to hold the call');
      return { call, id: warmups + 1 };
    }

    /**
     * Mallory, speaking wire version 2 correctly: answers the hello of the callis orders dials,
     * reads `count` requests and answers each with a well-formed final reply. Returns the
     * connection and the ids of the requests it answered.
     */
    async function malloryServes(count: number): Promise<{ peer: HostilePeer; ids: number[] }> {
      const calls = Array.from({ length: count }, (_, i) =>
        lastValueFrom(client.request(MALLORY, Buffer.from(`ask ${i}`))),
      );
      const peer = new HostilePeer(await server.connections.next());
      expect((await peer.next()).msgType).toBe(ControlType.Hello);
      peer.write([encodeHelloResponse({ sessionEpoch: randomBytes(8).readBigUInt64BE(0) })]);
      const ids: number[] = [];
      while (ids.length < count) {
        const frame = await peer.next();
        if (frame.msgType === ControlType.ReplyAck) continue;
        ids.push(frame.peerMsgId);
        peer.write([lastReply(frame.peerMsgId, `mallory's own answer ${ids.length}`)]);
      }
      // Mallory's replies to its own calls are honoured: it speaks the protocol correctly.
      const answers = await within(Promise.all(calls), 3000, "mallory's own calls");
      expect(answers.map(String).sort()).toEqual(
        Array.from({ length: count }, (_, i) => `mallory's own answer ${i + 1}`).sort(),
      );
      return { peer, ids };
    }

    it("a well-formed reply naming the victim's message id, which mallory's connection never carried, is a protocol violation that closes it", async () => {
      const { call, id } = await victimCall(3);
      const { peer, ids } = await malloryServes(1);
      expect(ids).not.toContain(id);
      const violations = orders.reporting.snapshot().protocolViolations;

      peer.write([lastReply(id, 'forged')]);
      await peer.closed();
      expect(orders.reporting.snapshot().protocolViolations).toBe(violations + 1);

      // Orders dials mallory again for nothing it still owes; the victim's call waits for billing.
      release!();
      expect((await call).toString()).toBe('genuine charge');
    });

    it("a well-formed reply naming the victim's message id, which mallory's connection used for a call of its own, answers nothing", async () => {
      const { call, id } = await victimCall(1);
      // Mallory's own calls took ids 1..3 on its connection: the victim's id among them.
      const { peer, ids } = await malloryServes(3);
      expect(ids).toContain(id);

      // Every id mallory's connection ever carried, each with a well-formed final reply, then a
      // second reply (seq 1) to each, as if the calls were still streaming.
      peer.write(ids.map((n) => lastReply(n, 'forged')));
      peer.write(
        ids.map((n) =>
          encodeReply(n, { seq: 1, flags: ReplyFlags.Last, reason: '', body: Buffer.from('x') }),
        ),
      );
      // Orders acknowledges each as a reply to a call that is over, and drops it.
      const acked = new Set<string>();
      while (!ids.every((n) => acked.has(`${n}/1`))) {
        const frame = await peer.next();
        if (frame.msgType !== ControlType.ReplyAck) continue;
        const pairs = decodeReplyAcks(frame);
        for (let i = 0; i < pairs.length; i += 2) acked.add(`${pairs[i]}/${pairs[i + 1]}`);
      }
      expect(ids.every((n) => acked.has(`${n}/0`))).toBe(true);
      // Nothing of the victim's moved: its call still waits for billing, then gets its answer.
      release!();
      expect((await call).toString()).toBe('genuine charge');
      expect(billing.reporting.snapshot().dialAttempts).toBe(0);
    });
  });
});
