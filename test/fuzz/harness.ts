// What every fuzz input is put through, and the one rule it must obey: fail only as the protocol says.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { decodeBlobAcks } from '../../lib/engine/blob/ack.js';
import { AureliaError, ErrorId, errorIdName } from '../../lib/engine/errors.js';
import { decodeRequest } from '../../lib/engine/services/request-reply-wire.js';
import { decodeAck, decodeControl } from '../../lib/engine/wire/control.js';
import { FrameDecoder } from '../../lib/engine/wire/decoder.js';
import { ControlType, isControlType, type Frame } from '../../lib/engine/wire/frame.js';

/** `AURELIA_FUZZ_RUNS=<n>` sets the runs per property; short by default so CI stays fast. */
export const FUZZ_RUNS = Number.parseInt(process.env.AURELIA_FUZZ_RUNS ?? '', 10) || 500;

/** The regression corpus: every file is one byte stream replayed on every run. */
export const CORPUS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'corpus');

/** A limit as small as a cautious operator would configure, so oversize paths are reached. */
export const FUZZ_MAX_PAYLOAD = 64 * 1024;
/** A small negotiated chunk size, for the same reason. */
export const FUZZ_MAX_CHUNK = 4 * 1024;

/** What one input did: the frames it produced and the error that stopped it, if any. */
export interface Exercised {
  readonly frames: number;
  readonly stoppedBy: ErrorId | undefined;
}

/** Throws unless `err` is an `AureliaError` of one of `allowed`. */
function expectOnly(err: unknown, allowed: readonly ErrorId[], where: string): ErrorId {
  if (AureliaError.is(err) && allowed.includes(err.kind)) return err.kind;
  const shown = AureliaError.is(err)
    ? `AureliaError ${errorIdName(err.kind)}: ${err.message}`
    : String(err instanceof Error ? (err.stack ?? err) : err);
  throw new Error(`${where} failed with ${shown}; allowed: ${allowed.map(errorIdName).join(', ')}`);
}

const WIRE_ERRORS = [ErrorId.ProtocolViolation, ErrorId.UnsupportedVersion] as const;
const CONTROL_ERRORS = [ErrorId.ProtocolViolation] as const;
const SERVICE_ERRORS = [ErrorId.DecodeFailure] as const;

/**
 * Decodes `frame` the way a callis would: control payloads with their strict decoders (and an
 * ack's ids as blob acks), A2 payloads with the request/reply decoders. Throws when any of them
 * fails other than the documented way.
 */
function exerciseFrame(frame: Frame): void {
  if (frame.payload.length !== frame.payloadLen) {
    throw new Error(
      `frame payload is ${frame.payload.length} bytes, header said ${frame.payloadLen}`,
    );
  }
  if (isControlType(frame.msgType)) {
    try {
      decodeControl(frame, FUZZ_MAX_CHUNK);
    } catch (err) {
      expectOnly(err, CONTROL_ERRORS, `decodeControl(type ${frame.msgType})`);
    }
    if (frame.msgType === ControlType.Ack) {
      try {
        decodeBlobAcks(decodeAck(frame));
      } catch (err) {
        expectOnly(err, CONTROL_ERRORS, 'decodeBlobAcks');
      }
    }
    return;
  }
  exercisePayload(frame.payload);
}

/** Runs the A2 request/reply payload decoders over `payload`; only `DecodeFailure` may come out. */
export function exercisePayload(payload: Buffer): void {
  try {
    decodeRequest(payload);
  } catch (err) {
    expectOnly(err, SERVICE_ERRORS, 'decodeRequest');
  }
}

/**
 * Pushes `chunks` through a fresh `FrameDecoder` and decodes each frame it yields. Throws (with
 * a message naming the culprit) when anything fails other than the protocol allows, or when the
 * decoder holds more than its documented bound.
 */
export function exercise(chunks: readonly Buffer[]): Exercised {
  let frames = 0;
  const decoder = new FrameDecoder({
    maxPayloadLen: FUZZ_MAX_PAYLOAD,
    maxBlobChunkLen: FUZZ_MAX_CHUNK,
    onFrame: (frame) => {
      frames++;
      exerciseFrame(frame);
    },
  });
  for (const chunk of chunks) {
    try {
      decoder.push(chunk);
    } catch (err) {
      if (err instanceof Error && !AureliaError.is(err)) throw err;
      return { frames, stoppedBy: expectOnly(err, WIRE_ERRORS, 'FrameDecoder.push') };
    }
    if (decoder.bufferedBytes > decoder.maxBufferedBytes) {
      throw new Error(
        `decoder holds ${decoder.bufferedBytes} bytes, over its bound ${decoder.maxBufferedBytes}`,
      );
    }
  }
  return { frames, stoppedBy: undefined };
}

/** The corpus files, by name. */
export function corpus(): { name: string; bytes: Buffer }[] {
  return readdirSync(CORPUS_DIR)
    .filter((name) => name.endsWith('.bin'))
    .sort()
    .map((name) => ({ name, bytes: readFileSync(path.join(CORPUS_DIR, name)) }));
}
