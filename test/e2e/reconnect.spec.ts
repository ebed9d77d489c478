// Reconnecting on demand: a new send does not wait out a long reconnect backoff.
import { DomusAddr, JsonCodec, type DomusReportingEvent } from '../../lib/index.js';
import { acceptAll } from '../support/accept.js';
import { TestMesh, eventually, fastConfig, socketDir } from '../support/mesh.js';

const codec = new JsonCodec<{ n: number }>();
const TABERNA = 10n;

describe('reconnect on demand', () => {
  let mesh: TestMesh;
  const sockets = socketDir();

  beforeEach(async () => {
    mesh = await TestMesh.create();
  });
  afterEach(async () => {
    await mesh.close();
  });
  afterAll(() => sockets.cleanup());

  it('dials at once for a new send while the next retry is a minute away, once the peer is back', async () => {
    const betaAddr = DomusAddr.socket(sockets.path('beta-on-demand'));
    const alpha = await mesh.add('alpha', {
      transport: 'socket',
      config: fastConfig((b) => b.reconnectBackoffMs([100, 60_000])),
    });
    const failedAt: number[] = [];
    alpha.reporting.events$.subscribe((e: DomusReportingEvent) => {
      if (e.type === 'PeerDialFailed') failedAt.push(e.at);
    });
    mesh.resolver.insert(TABERNA, betaAddr);

    // Nothing listens yet: the first dial and its retry after 100 ms fail, the next is 60 s away.
    const first = alpha.send(codec, TABERNA, { n: 1 });
    await eventually(() => failedAt.length >= 2, 'two failed dials');
    // Dials on demand are paced by the first backoff step (100 ms) since the last dial.
    await eventually(() => Date.now() - failedAt[1] > 150, 'the first backoff step to pass');

    const beta = await mesh.add('beta', { addr: betaAddr });
    const received = acceptAll(await beta.taberna(TABERNA, codec));
    const started = Date.now();
    await Promise.all([first, alpha.send(codec, TABERNA, { n: 2 })]);
    // Well inside the 5 s deadline, where waiting for the scheduled retry would have failed both.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(received.map((m) => m.n).sort()).toEqual([1, 2]);
    expect(failedAt).toHaveLength(2);
  });

  it('does not dial for every send while the peer stays down', async () => {
    const alpha = await mesh.add('alpha', {
      transport: 'socket',
      config: fastConfig((b) => b.reconnectBackoffMs([60_000])),
    });
    let dials = 0;
    alpha.reporting.events$.subscribe((e: DomusReportingEvent) => {
      if (e.type === 'PeerDialFailed') dials++;
    });
    mesh.resolver.insert(TABERNA, DomusAddr.socket(sockets.path('nobody')));
    const sends = Array.from({ length: 20 }, (_, n) =>
      alpha.send(codec, TABERNA, { n }).catch(() => undefined),
    );
    await eventually(() => dials >= 1, 'the first failed dial');
    for (let n = 20; n < 40; n++)
      sends.push(alpha.send(codec, TABERNA, { n }).catch(() => undefined));
    expect(alpha.reporting.snapshot().dialAttempts).toBe(1);
    await mesh.close();
    await Promise.all(sends);
  });
});
