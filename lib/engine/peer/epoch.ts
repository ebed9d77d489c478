// Session epochs: random 64-bit values that name one session and can be learned from nothing a peer sees.
import { randomBytes } from 'node:crypto';

/**
 * A fresh session epoch: 64 bits from the system's cryptographic random source, never zero.
 * A domus draws one for its listener (sent in every hello-response, so dialers notice a restart)
 * and one for every outbound peer object it creates (sent in that peer's hellos); none is derived
 * from another, so seeing one tells an attacker nothing about the others. Never throws.
 */
export function randomSessionEpoch(): bigint {
  for (;;) {
    const epoch = randomBytes(8).readBigUInt64BE(0);
    if (epoch !== 0n) return epoch;
  }
}
