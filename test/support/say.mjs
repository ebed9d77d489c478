// The one way the child processes of the tests report to their parent: a line on stdout.
import { Buffer } from 'node:buffer';
import { writeSync } from 'node:fs';

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes `line` to fd 1 before returning, retrying while a full non-blocking pipe says EAGAIN.
 * Never through process.stdout: to a pipe, process.stdout is asynchronous on POSIX, and the lines
 * it still queued are lost at a SIGKILL. A line written here is in the pipe before the caller
 * goes on, so the parent reads every event that took effect.
 */
export function say(line) {
  const bytes = Buffer.from(`${line}\n`);
  for (let written = 0; written < bytes.length;) {
    try {
      written += writeSync(1, bytes, written);
    } catch (err) {
      if (err?.code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 1); // let the parent read; stays synchronous
    }
  }
}
