// Handshakes that must fail: untrusted, expired or forged certificates, and peers that do not speak TLS 1.3.
import { beforeAll, describe, expect, it } from '@jest/globals';

import type { AddressInfo } from 'node:net';
import tls from 'node:tls';

import { DomusAddr, type TransportKind } from '../../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { dial } from '../../../lib/engine/transport/dial.js';
import { makeTestPki, type TestPki } from '../../support/pki.js';
import {
  HTTP_REQUEST,
  closedWithin,
  dialAs,
  forgedKeyContext,
  listenAddr,
  material,
  noCertificateContext,
  sendRaw,
  startListener,
  testLimits,
  tls12Client,
  unvalidatedContext,
  type RecordingListener,
  cleanupAfterEach,
  socketDirForFile,
} from '../../support/transport.js';
import { rejection } from '../../support/expect.js';

let pki: TestPki;
let foreign: TestPki;
const sockets = socketDirForFile();
const cleanup = cleanupAfterEach();

beforeAll(async () => {
  [pki, foreign] = await Promise.all([makeTestPki(), makeTestPki({ commonName: 'Foreign CA' })]);
});

/** Expects exactly one refusal of `kind` whose message contains every fragment, and a free slot. */
async function expectRefusal(
  server: RecordingListener,
  kind: ErrorId,
  ...fragments: string[]
): Promise<AureliaError> {
  const { err, source } = await server.refusals.next();
  expect(err).toBeInstanceOf(AureliaError);
  expect(err.kind).toBe(kind);
  for (const fragment of fragments) expect(err.message).toContain(fragment);
  expect(err.message).toContain(source);
  if (server.addr.kind === 'tcp') expect(source).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
  else expect(source).toBe(server.addr.key);
  expect(server.listener.handshakesInProgress).toBe(0);
  expect(server.connections.size).toBe(0);
  return err;
}

describe.each<TransportKind>(['tcp', 'socket'])('over %s', (transport) => {
  // A long deadline proves that refused peers are dropped at once, not when the deadline passes.
  const patientLimits = testLimits({
    tcpHandshakeTimeoutMs: 60_000,
    socketHandshakeTimeoutMs: 60_000,
  });
  let counter = 0;
  const listen = (auth: Parameters<typeof startListener>[2]) =>
    startListener(cleanup, listenAddr(transport, sockets, `r${++counter}`), auth, patientLimits);

  it('refuses a client whose certificate comes from a foreign CA', async () => {
    const server = await listen(await pki.node('alpha'));
    const intruder = await foreign.node('intruder');
    // The intruder trusts our CA, so only its own certificate is at fault. TLS 1.3 lets the
    // client finish first; the listener then drops it.
    const conn = await dialAs(
      cleanup,
      server.addr,
      material(intruder, pki.ca.rootPem).secureContext,
    );
    await expectRefusal(
      server,
      ErrorId.ProtocolViolation,
      'client certificate signed by an unknown authority',
      'CN=intruder',
      'CA roots',
    );
    await closedWithin(conn.socket);
  });

  it('a dialer refuses a listener whose certificate comes from a foreign CA', async () => {
    const server = await listen(await foreign.node('impostor'));
    const err = await rejection(dialAs(cleanup, server.addr, await pki.node('beta')));
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain(`could not dial ${server.addr.key}`);
    expect(err.message).toContain('server certificate signed by an unknown authority');
    await expectRefusal(server, ErrorId.ConnectionLost, 'during the TLS handshake');
  });

  it('refuses a client whose certificate has expired', async () => {
    const server = await listen(await pki.node('alpha'));
    const stale = await pki.expired('stale');
    const conn = await dialAs(cleanup, server.addr, unvalidatedContext(stale));
    await expectRefusal(
      server,
      ErrorId.ProtocolViolation,
      'client certificate has expired (CERT_HAS_EXPIRED)',
      'CN=stale',
    );
    await closedWithin(conn.socket);
  });

  it('a dialer refuses a listener whose certificate has expired', async () => {
    const server = await listen(unvalidatedContext(await pki.expired('stale-server')));
    const err = await rejection(dialAs(cleanup, server.addr, await pki.node('beta')));
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain('server certificate has expired (CERT_HAS_EXPIRED)');
  });

  it('refuses a client whose certificate is not yet valid', async () => {
    const server = await listen(await pki.node('alpha'));
    const early = await pki.notYetValid('early');
    const conn = await dialAs(cleanup, server.addr, unvalidatedContext(early));
    await expectRefusal(
      server,
      ErrorId.ProtocolViolation,
      'client certificate is not yet valid (CERT_NOT_YET_VALID)',
    );
    await closedWithin(conn.socket);
  });

  it('a dialer refuses a listener whose certificate is not yet valid', async () => {
    const server = await listen(unvalidatedContext(await pki.notYetValid('early-server')));
    const err = await rejection(dialAs(cleanup, server.addr, await pki.node('beta')));
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain('server certificate is not yet valid (CERT_NOT_YET_VALID)');
  });

  it('refuses a client that presents no certificate', async () => {
    const server = await listen(await pki.node('alpha'));
    const conn = await dialAs(cleanup, server.addr, noCertificateContext(pki.ca.rootPem));
    await expectRefusal(server, ErrorId.ProtocolViolation, 'no client certificate presented');
    await closedWithin(conn.socket);
  });

  it('refuses a client presenting a valid certificate without holding its key', async () => {
    const server = await listen(await pki.node('alpha'));
    const victim = await pki.node('victim');
    const err = await rejection(
      dial(server.addr, { secureContext: forgedKeyContext(victim), timeoutMs: 5000 }).then(
        (conn) => {
          conn.socket.on('error', () => undefined);
          cleanup.add(conn.socket, (s) => s.destroy());
          return closedWithin(conn.socket).then(() => {
            throw new AureliaError(ErrorId.ConnectionLost, 'closed after the handshake');
          });
        },
      ),
    );
    expect([ErrorId.PeerUnavailable, ErrorId.ConnectionLost]).toContain(err.kind);
    await expectRefusal(
      server,
      ErrorId.ProtocolViolation,
      "does not hold its certificate's private key",
    );
  });

  it('a dialer refuses a listener presenting a valid certificate without holding its key', async () => {
    const server = await listen(forgedKeyContext(await pki.node('alpha')));
    const err = await rejection(dialAs(cleanup, server.addr, await pki.node('beta')));
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain("does not hold its certificate's private key");
    await expectRefusal(server, ErrorId.ConnectionLost, 'alert decrypt_error');
  });

  it('drops a client sending bytes that are not TLS at once', async () => {
    const server = await listen(await pki.node('alpha'));
    await sendRaw(
      cleanup,
      server.addr,
      Buffer.from('\x00\x01garbage that is not a TLS record\r\n', 'latin1'),
    );
    await expectRefusal(server, ErrorId.ProtocolViolation, 'bytes that are not TLS');
  });

  it('drops a plain HTTP request at once', async () => {
    const server = await listen(await pki.node('alpha'));
    await sendRaw(cleanup, server.addr, HTTP_REQUEST);
    await expectRefusal(server, ErrorId.ProtocolViolation, 'plain HTTP request');
  });

  it('a dialer given a context that allows TLS 1.2 still refuses a TLS 1.2 server', async () => {
    // A plain node:tls server pinned to TLS 1.2 that would accept the dialer.
    const alpha = await pki.node('alpha');
    const legacy = tls.createServer({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      cert: alpha.chainPem,
      key: alpha.keyPem,
    });
    legacy.on('secureConnection', (socket) => cleanup.add(socket, (s) => s.destroy()));
    legacy.on('tlsClientError', () => undefined);
    const addr = listenAddr(transport, sockets, `legacy${++counter}`);
    await new Promise<void>((resolve) =>
      addr.isTcp() ? legacy.listen(0, addr.host, resolve) : legacy.listen(addr.path, resolve),
    );
    cleanup.add(legacy, (server) => new Promise((resolve) => server.close(resolve)));
    const target = addr.isTcp()
      ? DomusAddr.tcp(addr.host, (legacy.address() as AddressInfo).port)
      : addr;
    const err = await rejection(
      dial(target, {
        secureContext: unvalidatedContext(await pki.node('beta'), 'TLSv1.2'),
        timeoutMs: 5000,
      }),
    );
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toBe(
      `could not dial ${target.key}: negotiated TLSv1.2; only TLS 1.3 is accepted`,
    );
  });

  it('a listener given a context that allows TLS 1.2 still refuses a TLS 1.2 client', async () => {
    const server = await listen(unvalidatedContext(await pki.node('alpha'), 'TLSv1.2'));
    await tls12Client(cleanup, server.addr, await pki.node('beta'));
    await expectRefusal(
      server,
      ErrorId.ProtocolViolation,
      'negotiated TLSv1.2; only TLS 1.3 is accepted',
    );
  });

  it('refuses a TLS 1.2-only client, which learns the listener needs a newer version', async () => {
    const server = await listen(await pki.node('alpha'));
    const clientError = await tls12Client(cleanup, server.addr, await pki.node('beta'));
    expect((clientError as NodeJS.ErrnoException | undefined)?.code).toBe(
      'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
    );
    await expectRefusal(server, ErrorId.ProtocolViolation, 'TLS version older than 1.3');
  });
});
