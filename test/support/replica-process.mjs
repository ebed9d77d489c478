// One replica of a Nest "billing" service in its own process, for rolling-restart, kill and
// balancing tests. It imports the BUILT package (dist/, or AURELIA_ENTRY), so it runs on plain
// `node`; decorators are applied as plain calls.
//
// Environment:
//   AURELIA_SERVER_DIR  ca.pem, cert.pem, key.pem of the replica (replicas may share one)
//   REPLICA_NAME        what its answers say served them (e.g. r1)
//   REPLICA_LISTEN      its listen address, e.g. tls://127.0.0.1:7001 (the same on every restart)
//   REPLICA_DELAY_MS    optional: how long each handler takes
//   AURELIA_CONFIG      optional JSON patch over the module's config
//   AURELIA_ENTRY       optional path of the built index.js to import
//
// It reports on stdout, one line per event, each written with a synchronous write(2) so that a
// line is in the pipe before the handler goes on, even if the process is killed right after:
//   ready <address>   serving
//   call <key>        a billing.charge handler started (it answers { replica, key })
//   event <key>       a billing.record handler ran
//   stopped           Nest's shutdown hooks ran on SIGTERM (the process then exits 0)
// Any unhandled rejection or uncaught exception exits at once with code 3 or 4.
import path from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inspect } from 'node:util';

import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern } from '@nestjs/microservices';

import { say } from './say.mjs';

process.on('unhandledRejection', (reason) => {
  say(`unhandled ${inspect(reason, { depth: 2 })}`);
  process.exit(3);
});
process.on('uncaughtException', (err) => {
  say(`uncaught ${inspect(err, { depth: 2 })}`);
  process.exit(4);
});

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`replica-process: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = process.env.AURELIA_ENTRY ?? path.join(here, '..', '..', 'dist', 'lib', 'index.js');
const { AureliaModule, AureliaServer, Domus } = await import(pathToFileURL(entry).href);

const name = required('REPLICA_NAME');
const delayMs = Number(process.env.REPLICA_DELAY_MS ?? 0);
const dir = required('AURELIA_SERVER_DIR');

function decorate(target, method, ...decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(target.prototype, method);
  for (const decorator of decorators.reverse()) decorator(target.prototype, method, descriptor);
}

class Billing {
  async charge(data) {
    say(`call ${data.key}`);
    if (delayMs > 0) await sleep(delayMs);
    return { replica: name, key: data.key };
  }
  async record(data) {
    if (delayMs > 0) await sleep(delayMs);
    say(`event ${data.key}`);
  }
}
decorate(Billing, 'charge', MessagePattern('billing.charge'));
decorate(Billing, 'record', EventPattern('billing.record'));
Controller()(Billing);

class AppModule {}
Module({
  imports: [
    AureliaModule.forRoot({
      listen: required('REPLICA_LISTEN'),
      auth: {
        ca: path.join(dir, 'ca.pem'),
        cert: path.join(dir, 'cert.pem'),
        key: path.join(dir, 'key.pem'),
      },
      config: JSON.parse(process.env.AURELIA_CONFIG ?? '{}'),
    }),
  ],
  controllers: [Billing],
})(AppModule);

const app = await NestFactory.create(AppModule, { logger: false });
app.connectMicroservice({ strategy: app.get(AureliaServer) }, { inheritAppConfig: true });
app.enableShutdownHooks();
await app.startAllMicroservices();
await app.init();
// Nest closes the application on the first SIGTERM (the domus drains), then drops its listener
// and raises the signal again; this listener then ends the process as the default action would.
let signals = 0;
process.on('SIGTERM', () => {
  if (++signals === 1) return;
  say('stopped');
  process.exit(0);
});
say(`ready ${app.get(Domus).localAddr}`);
