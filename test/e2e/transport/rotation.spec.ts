// Swapping authentication material on a running listener: new handshakes only.
import { beforeAll, describe, expect, it } from '@jest/globals';

import type { TransportKind } from '../../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { dial } from '../../../lib/engine/transport/dial.js';
import { makeTestPki, type TestPki } from '../../support/pki.js';
import {
  WAIT_MS,
  dialAs,
  listenAddr,
  material,
  startListener,
  within,
  cleanupAfterEach,
  socketDirForFile,
} from '../../support/transport.js';

let oldPki: TestPki;
let newPki: TestPki;
const sockets = socketDirForFile();
const cleanup = cleanupAfterEach();
let counter = 0;

beforeAll(async () => {
  [oldPki, newPki] = await Promise.all([
    makeTestPki({ commonName: 'Old CA' }),
    makeTestPki({ commonName: 'Rotated CA' }),
  ]);
});

function firstData(socket: NodeJS.ReadableStream, what: string): Promise<string> {
  return within(
    new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString()))),
    WAIT_MS,
    what,
  );
}

describe.each<TransportKind>(['tcp', 'socket'])('over %s', (transport) => {
  it('a rotated CA applies to new handshakes while an existing connection keeps working', async () => {
    const server = await startListener(
      cleanup,
      listenAddr(transport, sockets, `rot${++counter}`),
      await oldPki.node('alpha'),
    );
    const before = await dialAs(cleanup, server.addr, await oldPki.node('beta'));
    const acceptedBefore = await server.connections.next();
    expect(before.certificate.issuer).toBe('CN=Old CA');

    server.listener.setSecureContext(material(await newPki.node('alpha')).secureContext);

    // A peer still on the old CA no longer trusts the listener, and is not trusted by it.
    const refused = await dial(server.addr, {
      secureContext: material(await oldPki.node('beta')).secureContext,
      timeoutMs: WAIT_MS,
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(AureliaError.is(refused, ErrorId.PeerUnavailable)).toBe(true);
    expect((refused as AureliaError).message).toContain(
      'server certificate signed by an unknown authority',
    );
    expect((await server.refusals.next()).err.kind).toBe(ErrorId.ConnectionLost);

    // A peer on the new CA gets in and sees the new certificate.
    const after = await dialAs(cleanup, server.addr, await newPki.node('gamma'));
    expect(after.identity).toBe('spiffe://aurelia.local/alpha');
    expect(after.certificate.issuer).toBe('CN=Rotated CA');
    expect((await server.connections.next()).identity).toBe('spiffe://aurelia.local/gamma');

    // The connection made with the old material still carries bytes both ways.
    const toServer = firstData(acceptedBefore.socket, 'bytes on the old accepted connection');
    before.socket.write('ping');
    expect(await toServer).toBe('ping');
    const toClient = firstData(before.socket, 'bytes on the old dialed connection');
    acceptedBefore.socket.write('pong');
    expect(await toClient).toBe('pong');
  });

  it('during a rotation a listener trusting both CAs accepts peers of either', async () => {
    const server = await startListener(
      cleanup,
      listenAddr(transport, sockets, `rot${++counter}`),
      await oldPki.node('alpha'),
    );
    server.listener.setSecureContext(
      material(await newPki.node('alpha'), oldPki.ca.rootPem).secureContext,
    );
    await dialAs(cleanup, server.addr, await newPki.node('beta'));
    expect((await server.connections.next()).identity).toBe('spiffe://aurelia.local/beta');
    // An old-CA peer that was given the new root too.
    const oldPeer = material(await oldPki.node('gamma'), newPki.ca.rootPem).secureContext;
    await dialAs(cleanup, server.addr, oldPeer);
    expect((await server.connections.next()).identity).toBe('spiffe://aurelia.local/gamma');
  });
});
