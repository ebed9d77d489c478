// Handshake admission when full: which waiting connection a newcomer may cut, and when it is refused.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';

import {
  HandshakeAdmission,
  type AdmissionTicket,
} from '../../../lib/engine/transport/admission.js';

/** An admission whose cuttable tickets are those in `cuttable`. */
function admissionWith(total: number, perSource: number, cuttable: Set<AdmissionTicket>) {
  return new HandshakeAdmission(
    () => ({ total, perSource }),
    (ticket) => cuttable.has(ticket),
  );
}

function admit(admission: HandshakeAdmission, source: string, now = 0): AdmissionTicket {
  const decision = admission.tryAdmit(source, now);
  if (!decision.admitted) throw new Error(`expected ${source} to be admitted`);
  return decision.ticket;
}

describe('HandshakeAdmission cutting for newcomers', () => {
  it('cuts the oldest cuttable connection of a full source for a newcomer from it', () => {
    const cuttable = new Set<AdmissionTicket>();
    const admission = admissionWith(10, 3, cuttable);
    const [a, b, c] = [0, 1, 2].map((t) => admit(admission, 'x', t));
    cuttable.add(b!).add(c!);
    const decision = admission.tryAdmit('x', 5);
    expect(decision).toMatchObject({ admitted: true, cut: b });
    expect(admission.inFlightFrom('x')).toBe(3);
    expect(admission.release(b!)).toBe(false);
    expect(admission.release(a!)).toBe(true);
  });

  it('cuts from the source holding the most slots when the total is full, oldest first', () => {
    const cuttable = new Set<AdmissionTicket>();
    const admission = admissionWith(5, 5, cuttable);
    const few = admit(admission, 'few', 0);
    const crowd = [1, 2, 3, 4].map((t) => admit(admission, 'crowd', t));
    cuttable.add(few);
    for (const ticket of crowd) cuttable.add(ticket);
    expect(admission.tryAdmit('new', 9)).toMatchObject({ admitted: true, cut: crowd[0] });
    expect(admission.inFlightFrom('few')).toBe(1);
    expect(admission.inFlightFrom('crowd')).toBe(3);
  });

  it('refuses the newcomer, naming the total limit first, when nothing is cuttable', () => {
    const admission = admissionWith(2, 2, new Set());
    admit(admission, 'a');
    admit(admission, 'a');
    expect(admission.tryAdmit('a')).toEqual({
      admitted: false,
      limit: 'total',
      max: 2,
      inFlight: 2,
    });
    expect(admission.tryAdmit('b')).toMatchObject({ admitted: false, limit: 'total' });
  });

  it('never exceeds either limit and cuts only cuttable tickets, whatever the order of events', () => {
    type Op = { kind: 'admit'; source: number } | { kind: 'mark' | 'release'; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('admit' as const), source: fc.nat(3) }),
      fc.record({ kind: fc.constantFrom('mark' as const, 'release' as const), pick: fc.nat(50) }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(op, { maxLength: 150 }),
        (total, perSource, ops) => {
          const cuttable = new Set<AdmissionTicket>();
          const admission = admissionWith(total, perSource, cuttable);
          const held: AdmissionTicket[] = [];
          ops.forEach((step, now) => {
            if (step.kind === 'admit') {
              const decision = admission.tryAdmit(`s${step.source}`, now);
              if (decision.admitted) {
                if (decision.cut !== undefined) {
                  expect(cuttable.has(decision.cut)).toBe(true);
                  held.splice(held.indexOf(decision.cut), 1);
                }
                held.push(decision.ticket);
              } else {
                // Refused only when nothing it could have cut was cuttable.
                const fromSource = held.filter((t) => t.source === `s${step.source}`);
                const candidates = fromSource.length >= perSource ? fromSource : held;
                expect(candidates.some((t) => cuttable.has(t))).toBe(false);
              }
            } else if (held.length > 0) {
              const ticket = held[step.pick % held.length]!;
              if (step.kind === 'mark') cuttable.add(ticket);
              else {
                held.splice(held.indexOf(ticket), 1);
                admission.release(ticket);
              }
            }
            expect(admission.inFlight).toBe(held.length);
            expect(held.length).toBeLessThanOrEqual(total);
            for (let s = 0; s <= 3; s++) {
              expect(admission.inFlightFrom(`s${s}`)).toBeLessThanOrEqual(perSource);
            }
          });
        },
      ),
    );
  });
});
