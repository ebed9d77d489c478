// Rendezvous (highest random weight) hashing: which replica a key sticks to.

/**
 * The replica of `replicas` (non-empty) with the highest score for `key`, the score being a
 * 52-bit mix of the key's and the replica's hashes. A key keeps its replica while that replica is
 * listed; adding a replica moves only the keys whose highest score is the new one's, removing one
 * moves only the keys it held. Ties (practically absent) go to the earlier replica.
 */
export function rendezvousPick(key: string, replicas: readonly string[]): string {
  const k = fnv1a(key);
  let best = replicas[0];
  let bestScore = -1;
  for (let i = 0; i < replicas.length; i++) {
    const score = rendezvousScore(k, replicas[i]);
    if (score > bestScore) {
      bestScore = score;
      best = replicas[i];
    }
  }
  return best;
}

/** The score of `replica` for a key hashed to `keyHash`; a non-negative integer below 2^52. */
export function rendezvousScore(keyHash: number, replica: string): number {
  const r = fnv1a(replica);
  const hi = fmix32(keyHash ^ r);
  const lo = fmix32((keyHash + 0x9e3779b9) ^ Math.imul(r, 0x85ebca6b));
  return (hi >>> 0) * 0x100000 + (lo >>> 12);
}

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finalizer: every input bit affects every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
