// One replica of the replicas workload, run by the bench as a child process (`ReplicaProcess`):
// a domus on loopback TCP whose taberna accepts everything and counts what it accepted.
import process from 'node:process';

import { DomusAddr } from '../../engine/addr.js';
import { Aurelia } from '../../engine/aurelia.js';
import { BufferCodec } from '../../engine/codec.js';
import { SimpleResolver } from '../../engine/resolver.js';
import { AureliaError, ErrorId } from '../../engine/errors.js';
import type { Taberna } from '../../engine/taberna/taberna.js';
import { benchDomusConfig } from './engine.suite.js';
import type { ReplicaReply, ReplicaRequest, ReplicaStart } from './replica-process.js';

const aurelia = new Aurelia();
let accepted = 0;
let stopping = false;

function reply(message: ReplicaReply): void {
  if (process.connected) process.send?.(message);
}

/** Shuts the domus down (bounded by the engine's own shutdown) and exits. */
function stop(code: number): void {
  if (stopping) return;
  stopping = true;
  const forced = setTimeout(() => process.exit(code), 5_000);
  forced.unref();
  void aurelia.shutdown().finally(() => process.exit(code));
}

/** Accepts and counts every request until the domus shuts down. */
async function serve(taberna: Taberna<Buffer>): Promise<void> {
  try {
    for await (const request of taberna) if (request.accept()) accepted++;
  } catch (err) {
    if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
  }
}

async function start(message: ReplicaStart): Promise<void> {
  const domus = await aurelia
    .domusBuilder(
      benchDomusConfig(),
      DomusAddr.tcp('127.0.0.1', 0),
      {
        format: 'pem',
        caPem: Buffer.from(message.caPem),
        certPem: Buffer.from(message.certPem),
        pkcs8KeyPem: Buffer.from(message.keyPem),
      },
      new SimpleResolver(),
    )
    .build();
  const taberna = await domus.taberna(BigInt(message.taberna), new BufferCodec());
  void serve(taberna).catch((err: unknown) => {
    reply({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    stop(1);
  });
  reply({ type: 'ready', port: domus.localAddr.port as number });
}

process.on('message', (message: ReplicaRequest) => {
  if (message.type === 'start') {
    start(message).catch((err: unknown) => {
      reply({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
      stop(1);
    });
  } else if (message.type === 'count') {
    const cpu = process.cpuUsage();
    reply({ type: 'count', id: message.id, accepted, cpuUs: cpu.user + cpu.system });
  }
});
// The bench went away (finished, crashed or was killed): nobody will stop this replica.
process.on('disconnect', () => stop(0));
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
