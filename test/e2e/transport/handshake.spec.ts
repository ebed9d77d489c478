// Mutual TLS 1.3 over TCP and Unix sockets: who sees whom, and what a dialer is told.
import net from 'node:net';

import { beforeAll, describe, expect, it } from '@jest/globals';

import { DomusAddr, type TransportKind } from '../../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import { dial } from '../../../lib/engine/transport/dial.js';
import { TlsListener } from '../../../lib/engine/transport/tls-listener.js';
import { makeTestPki, type TestPki } from '../../support/pki.js';
import {
  EventQueue,
  closedWithin,
  dialAs,
  listenAddr,
  material,
  startListener,
  testLimits,
  within,
  cleanupAfterEach,
  socketDirForFile,
} from '../../support/transport.js';
import { expectElapsedBetween, rejection } from '../../support/expect.js';
import { unusedPort } from '../../support/ports.js';

let pki: TestPki;
const sockets = socketDirForFile();
const cleanup = cleanupAfterEach();

beforeAll(async () => {
  pki = await makeTestPki();
});

describe.each<TransportKind>(['tcp', 'socket'])('over %s', (transport) => {
  it('each side sees the identity of the other once the handshake completed', async () => {
    const alpha = await pki.node('alpha');
    const beta = await pki.node('beta');
    const server = await startListener(
      cleanup,
      listenAddr(transport, sockets, `both-${transport}`),
      alpha,
    );
    const client = await dialAs(cleanup, server.addr, beta);
    const accepted = await server.connections.next();

    expect(client.identity).toBe('spiffe://aurelia.local/alpha');
    expect(accepted.identity).toBe('spiffe://aurelia.local/beta');
    expect(client.transport).toBe(transport);
    expect(accepted.transport).toBe(transport);
    expect(accepted.certificate.subject).toBe('CN=beta');
    expect(Math.abs(client.certificate.notAfter.getTime() - alpha.notAfter.getTime())).toBeLessThan(
      1000,
    );
    expect(accepted.socket.getProtocol()).toBe('TLSv1.3');
    if (transport === 'tcp') {
      expect(accepted.remoteAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
      expect(client.remoteAddress).toBe(server.addr.key);
    } else {
      expect(accepted.remoteAddress).toBe(server.addr.key);
      expect(client.remoteAddress).toBe(server.addr.key);
    }
  });

  it('carries application bytes both ways after the handshake, none consumed before hand-over', async () => {
    const alpha = await pki.node('alpha');
    const beta = await pki.node('beta');
    const server = await startListener(
      cleanup,
      listenAddr(transport, sockets, `bytes-${transport}`),
      alpha,
    );
    const client = await dialAs(cleanup, server.addr, beta);
    // Written at once: the listener must keep these bytes for the owner of the connection.
    client.socket.write('hello from beta');
    const accepted = await server.connections.next();
    const received = within(
      new Promise<string>((resolve) =>
        accepted.socket.once('data', (d: Buffer) => resolve(d.toString())),
      ),
      5000,
      'the first bytes on the accepted connection',
    );
    expect(await received).toBe('hello from beta');
    const reply = within(
      new Promise<string>((resolve) =>
        client.socket.once('data', (d: Buffer) => resolve(d.toString())),
      ),
      5000,
      'the reply on the dialed connection',
    );
    accepted.socket.write('hello from alpha');
    expect(await reply).toBe('hello from alpha');
  });

  it('an expected identity that matches lets the dial through', async () => {
    const alpha = await pki.node('alpha');
    const beta = await pki.node('beta');
    const server = await startListener(
      cleanup,
      listenAddr(transport, sockets, `expect-${transport}`),
      alpha,
    );
    const client = await dialAs(cleanup, server.addr, beta, {
      expectedIdentity: 'spiffe://aurelia.local/alpha',
    });
    expect(client.identity).toBe('spiffe://aurelia.local/alpha');
    await server.connections.next();
  });

  it('another identity than the expected one rejects the dial with AddressMismatch naming both', async () => {
    const alpha = await pki.node('alpha');
    const beta = await pki.node('beta');
    const server = await startListener(
      cleanup,
      listenAddr(transport, sockets, `mismatch-${transport}`),
      alpha,
    );
    const err = await rejection(
      dial(server.addr, {
        secureContext: material(beta).secureContext,
        timeoutMs: 5000,
        expectedIdentity: 'spiffe://aurelia.local/gamma',
      }),
    );
    expect(err.kind).toBe(ErrorId.AddressMismatch);
    expect(err.message).toContain('spiffe://aurelia.local/alpha');
    expect(err.message).toContain('spiffe://aurelia.local/gamma');
    expect(err.message).toContain(server.addr.key);
  });
});

describe('hand-over', () => {
  it('destroys a connection whose handler rejects, and keeps listening', async () => {
    const outcomes = new EventQueue<string>('a handler call');
    const listener = await TlsListener.listen({
      addr: DomusAddr.tcp('127.0.0.1', 0),
      secureContext: material(await pki.node('alpha')).secureContext,
      limits: () => testLimits(),
      onConnection: (conn) => {
        outcomes.push(conn.identity);
        return Promise.reject(new Error('the application could not take it'));
      },
      onRefused: (err) => outcomes.push(`refused: ${err.message}`),
    });
    cleanup.add(listener, (l) => l.close());
    const first = await dialAs(cleanup, listener.localAddr, await pki.node('beta'));
    expect(await outcomes.next()).toBe('spiffe://aurelia.local/beta');
    await closedWithin(first.socket);
    await dialAs(cleanup, listener.localAddr, await pki.node('gamma'));
    expect(await outcomes.next()).toBe('spiffe://aurelia.local/gamma');
  });
});

describe('identity extraction end to end', () => {
  it.each([
    [
      'a URI SAN',
      { uri: 'spiffe://mesh.example/billing', dnsNames: ['billing.internal'] },
      'spiffe://mesh.example/billing',
    ],
    [
      'a DNS SAN when there is no URI SAN',
      { uri: false as const, dnsNames: ['ledger.internal', 'other.internal'] },
      'ledger.internal',
    ],
    [
      'the CN when there is no SAN',
      { uri: false as const, commonName: 'plain-cn-node' },
      'plain-cn-node',
    ],
  ])('both sides identify a certificate with %s', async (_what, options, identity) => {
    const named = await pki.issue('named', options);
    const other = await pki.node('other');
    const asServer = await startListener(cleanup, DomusAddr.tcp('127.0.0.1', 0), named);
    const dialed = await dialAs(cleanup, asServer.addr, other);
    expect(dialed.identity).toBe(identity);
    const asClient = await startListener(cleanup, DomusAddr.tcp('127.0.0.1', 0), other);
    await dialAs(cleanup, asClient.addr, named);
    expect((await asClient.connections.next()).identity).toBe(identity);
  });
});

describe('dial failures', () => {
  it('rejects with PeerUnavailable naming the address when nothing listens on the TCP port', async () => {
    const addr = DomusAddr.tcp('127.0.0.1', await unusedPort());
    const err = await rejection(dialAs(cleanup, addr, await pki.node('beta')));
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain(addr.key);
    expect(err.message).toContain('connection refused');
  });

  it('rejects with PeerUnavailable when the socket file does not exist', async () => {
    const addr = DomusAddr.socket(sockets.path('nobody-here'));
    const err = await rejection(dialAs(cleanup, addr, await pki.node('beta')));
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain(addr.key);
    expect(err.message).toContain('no such socket file');
  });

  /** A TCP listener that accepts connections and never says a word; closed by the clean-up. */
  async function silentListener(): Promise<{ addr: DomusAddr; accepted: EventQueue<net.Socket> }> {
    const accepted = new EventQueue<net.Socket>('a connection to the silent listener');
    const silent = net.createServer((socket) => {
      cleanup.add(socket, (s) => s.destroy());
      accepted.push(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanup.add(silent, (s) => new Promise((resolve) => s.close(resolve)));
    return {
      addr: DomusAddr.tcp('127.0.0.1', (silent.address() as net.AddressInfo).port),
      accepted,
    };
  }

  it('rejects with PeerUnavailable at its deadline when the listener never answers the handshake', async () => {
    const { addr } = await silentListener();
    const secureContext = material(await pki.node('beta')).secureContext;
    const started = Date.now();
    const err = await rejection(dial(addr, { secureContext, timeoutMs: 200 }));
    expectElapsedBetween(started, 200, 3000);
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toBe(`could not dial ${addr.key}: timed out after 200 ms`);
  });

  it('an abort signal cancels a dial in progress and destroys its socket', async () => {
    const { addr, accepted } = await silentListener();
    const controller = new AbortController();
    const dialing = dial(addr, {
      secureContext: material(await pki.node('beta')).secureContext,
      timeoutMs: 30_000,
      signal: controller.signal,
    });
    const connected = await accepted.next();
    const reason = new AureliaError(ErrorId.DomusClosed, 'the domus is closing');
    controller.abort(reason);
    expect(await rejection(dialing)).toBe(reason);
    await closedWithin(connected);
  });

  it('an already aborted signal rejects at once without connecting', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await rejection(
      dial(DomusAddr.tcp('127.0.0.1', 9), {
        secureContext: material(await pki.node('beta')).secureContext,
        timeoutMs: 5000,
        signal: controller.signal,
      }),
    );
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toBe('dial to tls://127.0.0.1:9 was cancelled');
  });
});
