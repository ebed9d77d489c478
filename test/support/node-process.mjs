// A domus in its own process, for tests that kill and restart nodes. It imports the BUILT
// package (dist/, or AURELIA_ENTRY), so it runs on plain `node` without a TypeScript loader.
//
// Environment:
//   AURELIA_CA, AURELIA_CERT, AURELIA_KEY  certificate files (PEM)
//   AURELIA_LISTEN   address to listen on, e.g. tls://127.0.0.1:7000
//   AURELIA_TABERNA  id of the one taberna it hosts
//   AURELIA_MODE     accept (default): accept every message; hold: take them and never decide
//   AURELIA_ACCEPT_PACE_MS  optional: wait this long before each decision (a slow application,
//                    so a backlog of undecided messages builds up)
//   AURELIA_CONFIG   optional JSON patch over the default DomusConfig
//   AURELIA_ENTRY    optional path of the built index.js to import
//
// It reports on stdout, one line per event. Each line is written with a synchronous write(2) on
// fd 1, never through process.stdout: to a pipe, process.stdout is asynchronous on POSIX, and the
// lines it still queued are lost at a SIGKILL. A line written here is in the pipe before the
// application goes on, so the parent reads every accept that took effect:
//   ready <address> <session epoch>   listening
//   got <key>                         a message was handed to the application
//   accepted <key>                    the application accepted it (accept() returned true)
//   closed                            after a graceful shutdown on SIGTERM
import path from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { say } from './say.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = process.env.AURELIA_ENTRY ?? path.join(here, '..', '..', 'dist', 'lib', 'index.js');
const {
  Aurelia,
  DomusAddr,
  ErrorId,
  JsonCodec,
  Pkcs8AuthConfig,
  SimpleResolver,
  mergeDomusConfig,
  defaultDomusConfig,
} = await import(pathToFileURL(entry).href);

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`node-process: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

const auth = await Pkcs8AuthConfig.fromFiles({
  ca: required('AURELIA_CA'),
  cert: required('AURELIA_CERT'),
  key: required('AURELIA_KEY'),
});
const config = mergeDomusConfig(
  defaultDomusConfig(),
  JSON.parse(process.env.AURELIA_CONFIG ?? '{}'),
);
const aurelia = new Aurelia();
const domus = await aurelia
  .domusBuilder(config, DomusAddr.parse(required('AURELIA_LISTEN')), auth, new SimpleResolver())
  .build();
const taberna = await domus.taberna(BigInt(required('AURELIA_TABERNA')), new JsonCodec());
const hold = process.env.AURELIA_MODE === 'hold';
const paceMs = Number(process.env.AURELIA_ACCEPT_PACE_MS ?? 0);
const held = [];

process.on('SIGTERM', () => {
  void aurelia.shutdown().then(() => {
    say('closed');
    process.exit(0);
  });
});

say(`ready ${domus.localAddr} ${domus.sessionEpoch}`);
try {
  for await (const request of taberna) {
    const key = request.message.key;
    say(`got ${key}`);
    if (hold) {
      held.push(request);
      continue;
    }
    if (paceMs > 0) await sleep(paceMs);
    if (request.accept()) say(`accepted ${key}`);
  }
} catch (err) {
  if (err?.kind !== ErrorId.DomusClosed) throw err; // the loop ends when the domus shuts down
}
