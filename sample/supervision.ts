// How main.ts drives the service processes: the IPC messages, and the service side of them.
import type { INestMicroservice } from '@nestjs/common';
import { AureliaError, errorIdName } from 'aurelia-mesh';
import type { ProcessName } from './contracts.js';
import { trace } from './mesh.js';
import { type SampleSpan, startTracing } from './tracing.js';

/** What `main.ts` asks a service to do. */
export type ToService =
  { readonly kind: 'run'; readonly step: string; readonly id: number } | { readonly kind: 'stop' };

/** What a service tells `main.ts`. */
export type FromService =
  | { readonly kind: 'ready' }
  | { readonly kind: 'failed'; readonly error: string }
  | { readonly kind: 'done'; readonly id: number; readonly error?: string }
  | { readonly kind: 'span'; readonly span: SampleSpan };

/** One step of the scenario a service can run; it throws when the outcome is not the expected one. */
export type Step = () => Promise<void>;

/**
 * Runs a service under `main.ts`: bootstraps it, reports `ready`, runs the steps asked for (each
 * answered with `done`, carrying the error if it failed), and on `stop` — or when `main.ts`
 * goes away, or on SIGINT / SIGTERM — closes the application, so the process ends once nothing
 * is left open.
 */
export async function superviseService(
  service: ProcessName,
  bootstrap: () => Promise<INestMicroservice>,
  steps: (app: INestMicroservice) => Readonly<Record<string, Step>> = () => ({}),
): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) {
    process.stderr.write(`${service} runs under the sample's main process: npm run sample\n`);
    process.exitCode = 2;
    return;
  }
  const tell = (message: FromService): void => {
    if (process.connected) send(message);
  };
  const stopTracing = startTracing(service, (span) => tell({ kind: 'span', span }));
  let app: INestMicroservice;
  try {
    app = await bootstrap();
  } catch (err) {
    tell({ kind: 'failed', error: describeError(err) });
    process.exitCode = 1;
    process.disconnect();
    return;
  }
  const table = steps(app);
  let closing: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    closing ??= app
      .close()
      .then(stopTracing)
      .then(
        () => trace(service, 'stopped'),
        (err: unknown) => {
          trace(service, `could not stop cleanly: ${describeError(err)}`);
          process.exitCode = 1;
        },
      )
      .finally(() => {
        // The IPC channel is the last thing open: the process ends here.
        if (process.connected) process.disconnect();
      });
    return closing;
  };
  process.on('message', (message: ToService) => {
    if (message.kind === 'stop') {
      void stop();
      return;
    }
    const step = table[message.step];
    const outcome = step
      ? step()
      : Promise.reject(new Error(`${service} has no step '${message.step}'`));
    outcome.then(
      () => tell({ kind: 'done', id: message.id }),
      (err: unknown) => tell({ kind: 'done', id: message.id, error: describeError(err) }),
    );
  });
  // main.ts went away (crashed or killed), or Ctrl-C reached the whole process group.
  process.once('disconnect', () => void stop());
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  tell({ kind: 'ready' });
}

/** An error as one line: `AureliaError`s with their kind (`SendTimeout: …`). */
export function describeError(err: unknown): string {
  if (AureliaError.is(err)) return `${errorIdName(err.kind) ?? err.kind}: ${err.message}`;
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && 'message' in err) {
    return String((err as { message: unknown }).message);
  }
  return String(err);
}
