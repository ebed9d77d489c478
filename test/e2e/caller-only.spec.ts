// A domus built without a listen address: it calls other domus and hears their answers on the
// connections it dialed, and refuses, naming the fix, what only a listener could serve.
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { lastValueFrom, toArray, Observable } from 'rxjs';
import {
  Aurelia,
  ErrorId,
  JsonCodec,
  SendOptions,
  SimpleResolver,
  type Domus,
} from '../../lib/index.js';
import { RequestReplyClient, RequestReplyServer } from '../../lib/engine/services/request-reply.js';
import { BlobReceiver } from '../../lib/engine/blob/receiver.js';
import { LogCapture } from '../support/logs.js';
import { makeTestPki } from '../support/pki.js';
import { expectError, rejection } from '../support/expect.js';
import { countResources, expectNothingLeftSince } from '../support/resources.js';
import { TestMesh, fastConfig, type TestTransport } from '../support/mesh.js';

const codec = new JsonCodec<{ n: number }>();
const NOTES = 10n;
const ECHO = 11n;

describe.each(['tcp', 'socket'] as TestTransport[])(
  'a domus without a listener over %s',
  (transport) => {
    let mesh: TestMesh;
    let caller: Domus;
    let server: Domus;

    beforeEach(async () => {
      mesh = await TestMesh.create();
      caller = await mesh.add('caller', { listen: false });
      server = await mesh.add('server', { transport });
      mesh.route(NOTES, 'server');
      mesh.route(ECHO, 'server');
    });
    afterEach(() => mesh.close());

    it('sends messages and hears each decision on the connection it dialed', async () => {
      const notes = await server.taberna(NOTES, codec);
      const accepted = caller.send(codec, NOTES, { n: 1 });
      const request = await notes.next(3000);
      expect(request.peer.identity).toBe(caller.identity);
      request.accept();
      await expect(accepted).resolves.toEqual({ kind: 'message' });

      const refused = caller.send(codec, NOTES, { n: 2 });
      (await notes.next(3000)).reject('not today');
      expect((await rejection(refused, ErrorId.RemoteTabernaRejected)).message).toBe('not today');
    });

    it('makes request/reply calls and receives every reply', async () => {
      await RequestReplyServer.serve(
        server,
        ECHO,
        (req: { body: Buffer }) =>
          new Observable<Buffer>((s) => {
            for (let i = 0; i < 3; i++) s.next(Buffer.concat([req.body, Buffer.from(`-${i}`)]));
            s.complete();
          }),
      );
      const client = await RequestReplyClient.for(caller);
      const replies = await lastValueFrom(client.request(ECHO, Buffer.from('v')).pipe(toArray()));
      expect(replies.map((b) => b.toString())).toEqual(['v-0', 'v-1', 'v-2']);
    });

    it('streams a blob to a listening domus', async () => {
      const notes = await server.taberna(NOTES, codec);
      const data = randomBytes(300 * 1024);
      const sending = caller.send(codec, NOTES, { n: 3 }, SendOptions.BLOB);
      const request = await notes.next(3000);
      const receiver = request.blobReceiver;
      if (!(receiver instanceof BlobReceiver)) throw new Error('the request carries no blob');
      request.accept();
      const outcome = await sending;
      if (outcome.kind !== 'blob') throw new Error('expected a blob outcome');
      const received = (async () => {
        const hash = createHash('sha256');
        for await (const part of receiver) hash.update(part as Buffer);
        return hash.digest('hex');
      })();
      await pipeline(Readable.from([data]), outcome.sender);
      expect(await received).toBe(createHash('sha256').update(data).digest('hex'));
    });
  },
);

describe('what a domus without a listener refuses', () => {
  let mesh: TestMesh;
  let caller: Domus;

  beforeEach(async () => {
    mesh = await TestMesh.create();
    caller = await mesh.add('caller', { listen: false });
  });
  afterEach(() => mesh.close());

  it('refuses a taberna, which no peer could reach, naming the id and the fix', async () => {
    const err = await rejection(caller.taberna(0x1092n, codec), ErrorId.InvalidConfig);
    expect(err.message).toContain('without a listen address');
    expect(err.message).toContain('taberna 0x1092 (4242)');
    expect(err.message).toContain("the AureliaModule option 'listen'");
    await rejection(
      RequestReplyServer.serve(caller, ECHO, () => new Observable()),
      ErrorId.InvalidConfig,
    );
  });

  it('says it has no listener, and has no address to give', () => {
    expect(caller.hasListener).toBe(false);
    expectError(ErrorId.InvalidConfig, () => caller.localAddr, 'without a listen address');
  });

  it('still answers a send to a taberna nobody routes with UnknownTaberna', async () => {
    await rejection(caller.send(codec, 77n, { n: 1 }), ErrorId.UnknownTaberna);
  });
});

it('a domus without a listener logs that it only calls out, and leaves nothing behind', async () => {
  const before = countResources();
  const pki = await makeTestPki();
  const aurelia = new Aurelia();
  const logs = new LogCapture();
  try {
    const node = await pki.node('lonely');
    const domus = await aurelia
      .domusBuilder(fastConfig(), undefined, node.auth(), new SimpleResolver())
      .logger(logs)
      .build();
    expect(domus.hasListener).toBe(false);
    expect(logs.at('log').map((line) => line.message)).toContain(
      `domus ${domus.identity} started without a listen address (it only calls out)`,
    );
  } finally {
    await aurelia.shutdown();
  }
  await expectNothingLeftSince(before);
});
