// A Nest application over Aurelia in its own process, for what only a real process shows: an
// unhandled rejection or uncaught exception (Jest's sandbox never sees them), the exit once
// everything closed, and shutdown on a real signal. It imports the BUILT package (dist/, or
// AURELIA_ENTRY), so it runs on plain `node`; decorators are applied as plain calls.
//
// Environment:
//   NEST_MODE            resets: a server, a client and fault proxies on both legs in this process;
//                        many calls while the proxies reset connections, then everything closes
//                        and the process must exit by itself.
//                        serve: a hybrid app with enableShutdownHooks() serving until a signal.
//   AURELIA_SERVER_DIR   ca.pem, cert.pem, key.pem of the serving domus
//   AURELIA_CLIENT_DIR   the same for the calling domus (resets only)
//   AURELIA_ENTRY        optional path of the built index.js to import
//
// Any unhandled rejection or uncaught exception exits at once with code 3 or 4. It reports on
// stdout, one line per event:
//   ready <address>      serve: listening
//   round <n> <ok> <failed>  resets: a round of calls settled (answers, AureliaErrors)
//   bad <what>           resets: a call settled with something else (then exit code 1)
//   stopped <d> <l>      serve: Nest's shutdown hooks ran on SIGTERM; d domus still run and l TCP
//                        listeners are left (then exit code 0)
//   connections <a> <b>  resets: connections each proxy accepted (to the server, to the client)
//   done                 resets: everything closed (the process should exit 0 next)
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inspect } from 'node:util';

import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { Observable, interval, lastValueFrom, map, take, toArray } from 'rxjs';

const say = (line) => process.stdout.write(`${line}\n`);
process.on('unhandledRejection', (reason) => {
  say(`unhandled ${inspect(reason, { depth: 2 })}`);
  process.exit(3);
});
process.on('uncaughtException', (err) => {
  say(`uncaught ${inspect(err, { depth: 2 })}`);
  process.exit(4);
});

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = process.env.AURELIA_ENTRY ?? path.join(here, '..', '..', 'dist', 'lib', 'index.js');
const { Aurelia, AureliaError, AureliaModule, AureliaServer, ClientAurelia, Domus } = await import(
  pathToFileURL(entry).href
);
const { FaultProxy } = await import(
  pathToFileURL(path.join(path.dirname(entry), 'cli', 'soak', 'fault-proxy.js')).href
);

const FAST = {
  sendTimeoutMs: 4000,
  callisConnectTimeoutMs: 1000,
  acceptTimeoutMs: 2000,
  reconnectBackoffMs: [20, 50, 100],
  tcpHandshakeTimeoutMs: 2000,
};

function auth(variable) {
  const dir = process.env[variable];
  if (!dir) {
    process.stderr.write(`nest-process: ${variable} is not set\n`);
    process.exit(2);
  }
  return {
    ca: path.join(dir, 'ca.pem'),
    cert: path.join(dir, 'cert.pem'),
    key: path.join(dir, 'key.pem'),
  };
}

function decorate(target, method, ...decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(target.prototype, method);
  for (const decorator of decorators.reverse()) decorator(target.prototype, method, descriptor);
}

class Billing {
  sum(numbers) {
    return numbers.reduce((a, b) => a + b, 0);
  }
  ticks(n) {
    return interval(5).pipe(
      take(n),
      map((i) => i + 1),
    );
  }
  held() {
    return new Observable(() => undefined);
  }
  note() {}
}
decorate(Billing, 'sum', MessagePattern('sum'));
decorate(Billing, 'ticks', MessagePattern('ticks'));
decorate(Billing, 'held', MessagePattern('held'));
decorate(Billing, 'note', EventPattern('note'));
Controller()(Billing);

const settle = (promise) =>
  promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  );

async function resets() {
  class ServerModule {}
  Module({ controllers: [Billing] })(ServerModule);
  const server = new AureliaServer({
    listen: 'tls://127.0.0.1:0',
    auth: auth('AURELIA_SERVER_DIR'),
    config: FAST,
  });
  const service = await NestFactory.createMicroservice(ServerModule, {
    strategy: server,
    logger: false,
  });
  await service.listen();
  const toServer = await FaultProxy.start(server.unwrap().localAddr.port);
  const address = `tls://127.0.0.1:${toServer.port}`;
  class ClientModule {}
  Module({
    imports: [
      AureliaModule.forRoot({
        listen: 'tls://127.0.0.1:0',
        auth: auth('AURELIA_CLIENT_DIR'),
        config: FAST,
        requestTimeoutMs: 3000,
        routes: Object.fromEntries(['sum', 'ticks', 'note'].map((p) => [p, address])),
      }),
    ],
  })(ClientModule);
  const caller = await NestFactory.createApplicationContext(ClientModule, { logger: false });
  const client = caller.get(ClientAurelia);

  let bad = 0;
  const check = (what, outcome, expected) => {
    if ('error' in outcome) {
      if (outcome.error instanceof AureliaError) return false;
      bad++;
      say(`bad ${what} failed with ${inspect(outcome.error, { depth: 1 })}`);
      return false;
    }
    if (inspect(outcome.value) !== inspect(expected)) {
      bad++;
      say(`bad ${what} answered ${inspect(outcome.value)}`);
      return false;
    }
    return true;
  };
  for (let round = 0; round < 6; round++) {
    const calls = [];
    const call = (i) => {
      const what = `sum ${round}/${i}`;
      calls.push(
        settle(lastValueFrom(client.send('sum', [i, 1]))).then((o) => check(what, o, i + 1)),
      );
      const emitted = lastValueFrom(client.emit('note', i), { defaultValue: undefined });
      calls.push(
        settle(emitted.then(() => 'emitted')).then((o) =>
          check(`note ${round}/${i}`, o, 'emitted'),
        ),
      );
    };
    for (let i = 0; i < 20; i++) call(i);
    // Reset mid-stream: once the stream has delivered a few values, while more calls start.
    let values = 0;
    const streamed = new Promise((resolve) => {
      client.send('ticks', 60).subscribe({
        next: () => {
          values++;
          if (values !== 10) return;
          // Requests and their replies share this one leg: a reset cuts both directions.
          toServer.reset();
          for (let i = 20; i < 40; i++) call(i);
        },
        error: (error) => resolve({ error }),
        complete: () => resolve({ value: values }),
      });
    });
    // The stream settles after its 10th value started the second batch of calls.
    const whole = check(`ticks ${round}`, await streamed, 60);
    const results = [whole, ...(await Promise.all(calls))];
    const ok = results.filter(Boolean).length;
    say(`round ${round} ${ok} ${results.length - ok}`);
  }
  const after = await settle(lastValueFrom(client.send('ticks', 3).pipe(toArray())));
  check('the call after the resets', after, [1, 2, 3]);
  say(`connections ${toServer.accepted}`);
  await caller.close();
  await service.close();
  await toServer.close();
  say('done');
  if (bad > 0) process.exitCode = 1;
}

async function serve() {
  class AppModule {}
  Module({
    imports: [
      AureliaModule.forRoot({
        listen: 'tls://127.0.0.1:0',
        auth: auth('AURELIA_SERVER_DIR'),
        config: FAST,
      }),
    ],
    controllers: [Billing],
  })(AppModule);
  const app = await NestFactory.create(AppModule, { logger: false });
  app.connectMicroservice({ strategy: app.get(AureliaServer) }, { inheritAppConfig: true });
  app.enableShutdownHooks();
  await app.startAllMicroservices();
  await app.init();
  // Nest shuts down on the first SIGTERM, then drops its listener and raises the signal again;
  // this listener then reports what is left and ends the process, as the default action would.
  const aurelia = app.get(Aurelia);
  let signals = 0;
  process.on('SIGTERM', () => {
    if (++signals === 1) return;
    const listening = process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap');
    say(`stopped ${aurelia.running.length} ${listening.length}`);
    process.exit(0);
  });
  say(`ready ${app.get(Domus).localAddr}`);
}

const mode = process.env.NEST_MODE;
if (mode === 'resets') await resets();
else if (mode === 'serve') await serve();
else {
  process.stderr.write(`nest-process: NEST_MODE must be resets or serve, got ${mode}\n`);
  process.exit(2);
}
