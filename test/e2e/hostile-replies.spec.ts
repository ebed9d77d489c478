// A member with a valid certificate trying to answer calls it never received.
import { randomBytes } from 'node:crypto';
import { lastValueFrom } from 'rxjs';
import type { Domus } from '../../lib/index.js';
import { RequestReplyClient, RequestReplyServer } from '../../lib/engine/services/request-reply.js';
import { encodeReply } from '../../lib/engine/wire/control.js';
import { ReplyFlags } from '../../lib/engine/wire/frame.js';
import { TestMesh, eventually } from '../support/mesh.js';
import { Cleanup, dialAs } from '../support/transport.js';
import { HostilePeer } from '../support/hostile-peer.js';

const BILLING = 301n;

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
    // Billing answers only when the test says so, so the call is open while mallory acts.
    await RequestReplyServer.serve(billing, BILLING, async (req) => {
      await new Promise<void>((resolve) => (release = resolve));
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
    mallory.write(
      Array.from({ length: 64 }, (_, i) =>
        encodeReply(i + 1, {
          seq: 0,
          flags: ReplyFlags.Last,
          reason: '',
          body: Buffer.from('forged'),
        }),
      ),
    );
    // A reply on a connection orders accepted is not a reply to anything: a protocol violation
    // that closes mallory's connection only.
    await mallory.closed();
    expect(orders.reporting.snapshot().protocolViolations).toBeGreaterThanOrEqual(1);

    release!();
    expect((await call).toString()).toBe('genuine charge');
    // Billing answered on the connection orders dialed; it dialed nobody.
    expect(billing.reporting.snapshot().dialAttempts).toBe(0);
  });
});
