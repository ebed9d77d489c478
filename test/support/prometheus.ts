// A strict reader of Prometheus text exposition, for tests of what a scrape returns.
import { expect } from '@jest/globals';

/** One sample line: the sample's own name (a summary's `_sum` keeps its suffix), labels, value. */
export interface ParsedSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A metric family: its HELP and TYPE lines and the samples that followed them. */
export interface ParsedFamily {
  help: string;
  type: string;
  readonly samples: ParsedSample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\["\\\\n])*)"`;
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|summary|histogram|untyped)$`);
const SAMPLE_LINE = new RegExp(
  `^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?\\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$`,
);
/** The suffixes a summary's or histogram's samples add to the family name. */
const AGGREGATE_SUFFIX = /_(sum|count|bucket)$/;

/** The family a sample named `name` belongs to, or undefined when none was declared. */
function familyOf(families: Map<string, ParsedFamily>, name: string): ParsedFamily | undefined {
  const own = families.get(name);
  if (own !== undefined) return own;
  const base = families.get(name.replace(AGGREGATE_SUFFIX, ''));
  return base?.type === 'summary' || base?.type === 'histogram' ? base : undefined;
}

/**
 * Parses Prometheus text exposition format 0.0.4 strictly, by family name: every line is a HELP,
 * a TYPE, a sample of a family whose HELP and TYPE came first, or blank. Fails the test on any
 * other line, a repeated HELP or label, or text that does not end with a newline.
 */
export function parseExposition(text: string): Map<string, ParsedFamily> {
  const families = new Map<string, ParsedFamily>();
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const help = HELP_LINE.exec(line);
    if (help !== null) {
      expect(families.has(help[1]!)).toBe(false);
      families.set(help[1]!, { help: help[2]!, type: '', samples: [] });
      continue;
    }
    const type = TYPE_LINE.exec(line);
    if (type !== null) {
      const family = families.get(type[1]!);
      expect(family).toBeDefined();
      family!.type = type[2]!;
      continue;
    }
    const sample = SAMPLE_LINE.exec(line);
    if (sample === null) throw new Error(`not a valid exposition line: ${line}`);
    const family = familyOf(families, sample[1]!);
    if (family === undefined || family.type === '') {
      throw new Error(`sample before its HELP and TYPE: ${line}`);
    }
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(new RegExp(LABEL, 'g'))) {
      expect(labels[m[1]!]).toBeUndefined();
      labels[m[1]!] = m[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const raw = sample.at(-1)!;
    family.samples.push({
      name: sample[1]!,
      labels,
      value: raw === 'NaN' ? NaN : Number(raw),
    });
  }
  return families;
}

/**
 * The value of the first sample named `name` whose labels include every one of `labels`, or
 * undefined when the scrape has none.
 */
export function sampleValue(
  families: Map<string, ParsedFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return familyOf(families, name)?.samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}
