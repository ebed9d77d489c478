// Peer text in log lines: escaped, bounded, and left out of rate-limit keys.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';

import {
  MAX_LOG_LINE,
  RateLimitedLogger,
  escapeLogText,
  logKeyOf,
  quotePeerText,
} from '../../lib/engine/logger.js';

describe('escapeLogText', () => {
  it('escapes control characters, line separators and bidirectional overrides', () => {
    expect(escapeLogText('a\nb\r\u001b[2J\u2028\u202e\u0085')).toBe(
      'a\\u000ab\\u000d\\u001b[2J\\u2028\\u202e\\u0085',
    );
  });

  it('bounds a line and says how much was cut', () => {
    const line = escapeLogText('y'.repeat(MAX_LOG_LINE + 10));
    expect(line).toBe(`${'y'.repeat(MAX_LOG_LINE)}… (10 more characters)`);
  });

  it('never leaves a character that could start a new line, whatever the input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        // eslint-disable-next-line no-control-regex -- the property is that none survive
        expect(escapeLogText(text)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
      }),
    );
  });
});

describe('quotePeerText', () => {
  it('quotes, escapes quotes and backslashes, and keeps at most 200 characters', () => {
    expect(quotePeerText('say "hi"\\\n')).toBe('"say \\"hi\\"\\\\\\u000a"');
    expect(quotePeerText('z'.repeat(500))).toBe(`"${'z'.repeat(200)}…"`);
  });
});

describe('logKeyOf', () => {
  it('gives every variation of quoted peer text, numbers and addresses one key', () => {
    const key = (text: string, port: number) =>
      logKeyOf(
        'ConnectionLost',
        `outbound callis to spiffe://m/x (tls://127.0.0.1:${port}) reported: ${quotePeerText(text)}`,
      );
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.nat(65535), (text, port) => {
        expect(key(text, port)).toBe(key('', 1));
      }),
    );
  });

  it('tells different problems apart', () => {
    expect(logKeyOf('ConnectionLost', 'a callis closed')).not.toBe(
      logKeyOf('ProtocolViolation', 'a callis closed'),
    );
  });
});

describe('RateLimitedLogger and peer text', () => {
  it('writes lines escaped and bounded', () => {
    const lines: string[] = [];
    const logger = new RateLimitedLogger({
      error: (m: string) => lines.push(m),
      warn: (m: string) => lines.push(m),
      log: (m: string) => lines.push(m),
    });
    logger.warn('k', `first\nFORGED: second ${'w'.repeat(3000)}`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('\n');
    expect(lines[0]!.startsWith('first\\u000aFORGED: second')).toBe(true);
    expect(lines[0]!.length).toBeLessThan(MAX_LOG_LINE + 40);
  });
});
