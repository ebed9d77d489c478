// Validation of DnsSrvResolver options: DNS names, id ranges, servers and durations.
import { promises as dns } from 'node:dns';
import { AureliaError, ErrorId } from '../errors.js';
import { assertTabernaId } from '../ids.js';
import type { DnsSrvRange } from './dns-srv-resolver.js';

const DNS_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** A DNS name (a trailing dot dropped); throws `InvalidConfig` naming `field` otherwise. */
export function checkService(service: unknown, field: string): string {
  if (typeof service !== 'string') throw invalid(`${field} must be a DNS name string`);
  const name = service.endsWith('.') ? service.slice(0, -1) : service;
  if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => DNS_LABEL.test(l))) {
    throw invalid(
      `${field} ${JSON.stringify(service)} is not a DNS name ` +
        '(dot-separated labels of letters, digits, "-" and "_", at most 253 characters)',
    );
  }
  return name;
}

/** Id ranges, sorted; throws `InvalidConfig` for an inverted or overlapping one. */
export function checkRanges(ranges: readonly DnsSrvRange[]): DnsSrvRange[] {
  if (!Array.isArray(ranges)) throw invalid('ranges must be an array of { from, to, service }');
  const checked = ranges.map((range, i) => {
    const from = assertTabernaId(range?.from, ErrorId.InvalidConfig);
    const to = assertTabernaId(range?.to, ErrorId.InvalidConfig);
    if (from > to) throw invalid(`ranges[${i}] is inverted: from ${from} is after to ${to}`);
    return Object.freeze({
      from,
      to,
      service: checkService(range.service, `ranges[${i}].service`),
    });
  });
  const sorted = [...checked].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].from <= sorted[i - 1].to) {
      throw invalid(
        `ranges ${sorted[i - 1].from}..${sorted[i - 1].to} and ` +
          `${sorted[i].from}..${sorted[i].to} overlap`,
      );
    }
  }
  return sorted;
}

/** DNS servers `node:dns` accepts, frozen; throws `InvalidConfig` otherwise. */
export function checkServers(
  servers: readonly string[] | undefined,
): readonly string[] | undefined {
  if (servers === undefined) return undefined;
  if (!Array.isArray(servers) || servers.length === 0) {
    throw invalid('servers must be a non-empty array of "IP" or "IP:PORT" strings');
  }
  try {
    // node:dns validates the forms; a throwaway resolver holds no socket until it queries.
    new dns.Resolver().setServers(servers);
  } catch (err) {
    throw invalid(
      `servers ${JSON.stringify(servers)} are not valid DNS servers: ${(err as Error).message}`,
    );
  }
  return Object.freeze([...servers]);
}

/** `value` when an integer in `min..max`; throws `InvalidConfig` naming `field` otherwise. */
export function integer(field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

/** An `InvalidConfig` error with `message`. */
export function invalid(message: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, message);
}
