// A member answering at an address a route names (a poisoned DNS answer, a reused port) while the
// route names the identity that must serve it.
import { lastValueFrom } from 'rxjs';
import {
  ErrorId,
  JsonCodec,
  ReplicaSet,
  a3MessageType,
  type Domus,
  type DomusAddr,
} from '../../lib/index.js';
import { RequestReplyClient, RequestReplyServer } from '../../lib/engine/services/request-reply.js';
import { acceptAll } from '../support/accept.js';
import { rejection } from '../support/expect.js';
import { TestMesh } from '../support/mesh.js';

const codec = new JsonCodec<{ n: number }>({ msgType: a3MessageType(5) });
/** Billing's tabernae: one for messages and blobs, one for requests. */
const CHARGES = 401n;
const QUOTE = 402n;

describe('a route that names the identity serving it', () => {
  let mesh: TestMesh;
  let orders: Domus;
  let billing: Domus;
  let mallory: Domus;
  /** What each domus's application received on CHARGES, and the requests its QUOTE handler ran. */
  const seen = new Map<Domus, { charges: { n: number }[]; quotes: number }>();

  beforeEach(async () => {
    mesh = await TestMesh.create();
    orders = await mesh.add('orders');
    billing = await mesh.add('billing');
    mallory = await mesh.add('mallory');
    // Mallory serves the same tabernae as billing, ready to take whatever reaches it.
    for (const domus of [billing, mallory]) {
      const record = { charges: acceptAll(await domus.taberna(CHARGES, codec)), quotes: 0 };
      seen.set(domus, record);
      await RequestReplyServer.serve(domus, QUOTE, (req) => {
        record.quotes++;
        return Buffer.from(`quote from ${domus.identity}: ${req.body.toString()}`);
      });
    }
  });
  afterEach(() => mesh.close());

  /** Routes billing's tabernae to `addresses`, to be served by `identity` when given. */
  function routeBilling(addresses: DomusAddr | DomusAddr[], identity?: string): void {
    const route = ReplicaSet.of(addresses, { identity });
    mesh.resolver.insert(CHARGES, route);
    mesh.resolver.insert(QUOTE, route);
  }

  it('refuses messages, requests and blobs with AddressMismatch when another member answers at its address: nothing reaches that member', async () => {
    // Without the identity, the address alone decides: mallory takes billing's traffic.
    routeBilling(mallory.localAddr);
    await orders.send(codec, CHARGES, { n: 0 });
    expect(seen.get(mallory)!.charges).toEqual([{ n: 0 }]);

    routeBilling(mallory.localAddr, billing.identity);
    const client = RequestReplyClient.of(orders);
    const refusals = await Promise.all([
      rejection(orders.send(codec, CHARGES, { n: 1 })),
      rejection(client.request(QUOTE, Buffer.from('q'))),
      rejection(orders.send(codec, CHARGES, { n: 2 }, { blob: true })),
    ]);
    for (const err of refusals) {
      expect(err.kind).toBe(ErrorId.AddressMismatch);
      expect(err.message).toContain(billing.identity);
    }
    expect(seen.get(mallory)).toEqual({ charges: [{ n: 0 }], quotes: 0 });
    expect(orders.reporting.snapshot().identityMismatches).toBeGreaterThanOrEqual(3);

    // The same route at billing's own address serves as usual.
    routeBilling(billing.localAddr, billing.identity);
    await orders.send(codec, CHARGES, { n: 3 });
    const quote = await lastValueFrom(client.request(QUOTE, Buffer.from('q')));
    expect(quote.toString()).toBe(`quote from ${billing.identity}: q`);
    expect(seen.get(billing)).toEqual({ charges: [{ n: 3 }], quotes: 1 });
  });

  it('keeps a replica set to its identity: sends balanced to the member among its addresses fail and never reach it', async () => {
    routeBilling([billing.localAddr, mallory.localAddr], billing.identity);
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, n) =>
        orders.send(codec, CHARGES, { n }).then(
          () => 'ok',
          (err: { kind: ErrorId }) => err.kind,
        ),
      ),
    );
    for (const outcome of outcomes) expect([ErrorId.AddressMismatch, 'ok']).toContain(outcome);
    // Balancing did pick mallory's address, and billing served the rest.
    expect(outcomes).toContain(ErrorId.AddressMismatch);
    expect(outcomes).toContain('ok');
    expect(seen.get(mallory)!.charges).toEqual([]);
    expect(seen.get(billing)!.charges.length).toBe(outcomes.filter((o) => o === 'ok').length);
  });

  it('refuses a route to this domus itself when it names another identity, and a send expecting a third', async () => {
    routeBilling(orders.localAddr, billing.identity);
    const local = await rejection(orders.send(codec, CHARGES, { n: 1 }), ErrorId.AddressMismatch);
    expect(local.message).toContain(`which is ${orders.identity}`);

    routeBilling(billing.localAddr, billing.identity);
    const client = RequestReplyClient.of(orders);
    const conflict = await rejection(
      client.request(QUOTE, Buffer.from('q'), { expectedIdentity: mallory.identity }),
      ErrorId.AddressMismatch,
    );
    expect(conflict.message).toContain(`is served by ${billing.identity}`);
    expect(seen.get(billing)!.quotes).toBe(0);
  });
});
