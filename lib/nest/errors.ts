// How handler errors travel: Nest's error payloads as rejection reasons and back.
import { AureliaError, ErrorId } from '../engine/errors.js';
import { PEER_NOT_ALLOWED } from './authorization.js';
import { NOT_SERVED_THERE } from '../engine/taberna/registry.js';
import { ROUTE_FIX } from './route-table.js';

const MAX_REASON_BYTES = 1024;

/**
 * The rejection reason for an event whose handler failed with Nest's error `payload` (what the
 * exception filters produced, e.g. `{ status: 'error', message: 'Internal server error' }`): its
 * JSON when that fits the 1024 bytes a rejection carries, else `{ status, message }` with the
 * message shortened to fit. `maxBytes` lowers the limit (a blob abort carries 1000 bytes).
 */
export function rejectionReason(payload: unknown, maxBytes = MAX_REASON_BYTES): string {
  const json = safeJson(payload);
  if (json !== undefined && Buffer.byteLength(json) <= maxBytes) return json;
  let message = messageOf(payload);
  for (;;) {
    const text = JSON.stringify({ status: 'error', message });
    if (Buffer.byteLength(text) <= maxBytes) return text;
    message = message.slice(0, Math.max(0, message.length - Math.ceil(message.length / 8) - 1));
  }
}

/**
 * A transport failure of a Nest call (`send`, `emit`, `sendBlob` to `pattern`), worded for the
 * caller: `UnknownTaberna` names the pattern and the fix (a route, or a handler where the route
 * points), `SendTimeout` names the deadline and the option that sets it (`requestTimeoutMs`,
 * default the domus's `sendTimeoutMs`). The engine's error is the `cause`; other errors pass
 * through unchanged.
 */
export function callFailure(err: unknown, pattern: string, timeoutMs: number | undefined): unknown {
  if (!AureliaError.is(err)) return err;
  const deadline =
    timeoutMs === undefined
      ? "the domus's sendTimeoutMs (requestTimeoutMs is not set)"
      : `requestTimeoutMs, ${timeoutMs} ms`;
  switch (err.kind) {
    case ErrorId.UnknownTaberna:
      // The route table already names the pattern (or the explicit id) and the route to add.
      if (err.message.includes(`'${pattern}'`) || err.message.includes(ROUTE_FIX)) return err;
      return new AureliaError(
        ErrorId.UnknownTaberna,
        err.message.includes(NOT_SERVED_THERE)
          ? `'${pattern}' is not served where its route points (${err.message}): point the route for '${pattern}' in routes at the service that handles it, or give that service a handler for exactly '${pattern}'`
          : `no route for '${pattern}': add a route for '${pattern}' in routes (of AureliaModule.forRoot() or of this ClientAurelia) or to discovery, pointing at the domus that serves it (${err.message})`,
        { cause: err },
      );
    case ErrorId.SendTimeout:
      return new AureliaError(
        ErrorId.SendTimeout,
        `'${pattern}' did not finish within its deadline (${deadline}): ${err.message}`,
        { cause: err },
      );
    default:
      return err;
  }
}

/**
 * The error `emit()` reports for a rejected event: `RemoteTabernaRejected` naming the pattern and
 * the handler's message, with the handler's error payload as `cause` when the reason carried one
 * (a refusal by the authorization policy keeps the policy's own message). Other errors pass
 * through unchanged.
 */
export function emitError(err: unknown, pattern: string): unknown {
  if (!AureliaError.is(err, ErrorId.RemoteTabernaRejected)) return err;
  const payload = parseJson(err.message);
  if (payload === undefined) return err;
  // A refusal by the authorization policy never reached the handler; its message says so.
  const refused = (payload as { code?: unknown } | null)?.code === PEER_NOT_ALLOWED;
  return new AureliaError(
    ErrorId.RemoteTabernaRejected,
    refused ? messageOf(payload) : `the handler of '${pattern}' failed: ${messageOf(payload)}`,
    { cause: payload },
  );
}

/**
 * The error `sendBlob()` reports: a rejection or a handler's abort as `emitError` shapes it,
 * another `AureliaError` unchanged, and anything else — the source stream's own failure — as
 * `ConnectionLost` naming the pattern, with the source's error as `cause`.
 */
export function blobSendError(err: unknown, pattern: string): AureliaError {
  if (AureliaError.is(err)) return emitError(err, pattern) as AureliaError;
  return new AureliaError(
    ErrorId.ConnectionLost,
    `the source stream of the blob for '${pattern}' failed, so the stream was aborted: ${messageOf(err)}`,
    { cause: err },
  );
}

/**
 * `InvalidConfig` for an `AureliaServer` with handlers (`patterns`) on a domus without a listen
 * address: no peer could reach them, so the server refuses to start instead of serving nothing.
 */
export function handlersWithoutListener(patterns: readonly string[]): AureliaError {
  const shown = patterns.slice(0, 5).map((p) => `'${p}'`);
  if (patterns.length > shown.length) shown.push(`and ${patterns.length - shown.length} more`);
  return new AureliaError(
    ErrorId.InvalidConfig,
    `AureliaServer has handlers (${shown.join(', ')}) but its domus has no listen address, so no ` +
      `peer could reach them: set the AureliaModule option 'listen' (or serve them from a domus ` +
      `built with one)`,
  );
}

/** A readable message for an error payload of any shape. */
export function messageOf(payload: unknown): string {
  if (payload instanceof Error) return payload.message;
  if (typeof payload === 'string') return payload;
  if (typeof payload === 'object' && payload !== null) {
    const message = (payload as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  }
  return safeJson(payload) ?? String(payload);
}

function safeJson(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

function parseJson(text: string): unknown {
  if (!text.startsWith('{') && !text.startsWith('"')) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
