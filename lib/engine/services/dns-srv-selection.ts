// RFC 2782 selection among SRV endpoints: grouping by priority and weighted random choice.
import type { DomusAddr } from '../addr.js';

/** One SRV record with the addresses of its target. */
export interface Endpoint {
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
  readonly addrs: readonly DomusAddr[];
}

/** Groups by ascending priority; zero-weight endpoints first in a group, as RFC 2782 orders them. */
export function groupByPriority(endpoints: readonly Endpoint[]): Endpoint[][] {
  const byPriority = new Map<number, Endpoint[]>();
  for (const e of endpoints) {
    const group = byPriority.get(e.priority);
    if (group === undefined) byPriority.set(e.priority, [e]);
    else group.push(e);
  }
  return [...byPriority.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, group]) => [
      ...group.filter((e) => e.weight === 0),
      ...group.filter((e) => e.weight > 0),
    ]);
}

/**
 * RFC 2782 selection inside one priority: with the zero-weight endpoints first, a uniform integer
 * r in 0..sum(weights) picks the first endpoint whose running weight sum is at least r. Read
 * literally that gives r = 0 to the first endpoint even when its weight is not 0 (weights 1 and 1
 * would win 2/3 and 1/3), so r = 0 goes to the zero-weight endpoints only — their "very small
 * chance", 1/(sum + 1) together — and without any, r is drawn from 1..sum. Every endpoint of
 * weight w > 0 is then chosen with probability exactly w/sum (or w/(sum + 1) beside zero-weight
 * ones); when all weights are 0 the choice is uniform. `group` must list zero weights first.
 */
export function pickWeighted(group: readonly Endpoint[], random: () => number): Endpoint {
  let total = 0;
  let zeros = 0;
  for (const e of group) {
    total += e.weight;
    if (e.weight === 0) zeros++;
  }
  if (total === 0) return group[Math.min(group.length - 1, Math.floor(random() * group.length))];
  const slots = zeros > 0 ? total + 1 : total;
  const r = Math.min(slots - 1, Math.floor(random() * slots)) + (zeros > 0 ? 0 : 1);
  if (r === 0) return group[Math.min(zeros - 1, Math.floor(random() * zeros))];
  let running = 0;
  for (const e of group) {
    running += e.weight;
    if (running >= r) return e;
  }
  return group[group.length - 1];
}
