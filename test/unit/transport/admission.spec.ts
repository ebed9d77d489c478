// Handshake admission: limits in total and per source, read live, slots given back exactly once.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';

import {
  HandshakeAdmission,
  type AdmissionLimits,
  type AdmissionTicket,
} from '../../../lib/engine/transport/admission.js';

function admitted(admission: HandshakeAdmission, source: string): AdmissionTicket {
  const decision = admission.tryAdmit(source);
  if (!decision.admitted) throw new Error(`expected ${source} to be admitted`);
  return decision.ticket;
}

describe('HandshakeAdmission', () => {
  it('admits up to the per-source limit from one source, then refuses naming that limit', () => {
    const admission = new HandshakeAdmission(() => ({ total: 10, perSource: 2 }));
    admitted(admission, '10.0.0.1');
    admitted(admission, '10.0.0.1');
    expect(admission.tryAdmit('10.0.0.1')).toEqual({
      admitted: false,
      limit: 'perSource',
      max: 2,
      inFlight: 2,
    });
    expect(admission.tryAdmit('10.0.0.2').admitted).toBe(true);
  });

  it('refuses every source once the total limit is reached, checking it before the per-source one', () => {
    const admission = new HandshakeAdmission(() => ({ total: 2, perSource: 2 }));
    admitted(admission, 'a');
    admitted(admission, 'a');
    expect(admission.tryAdmit('a')).toEqual({
      admitted: false,
      limit: 'total',
      max: 2,
      inFlight: 2,
    });
    expect(admission.tryAdmit('b')).toEqual({
      admitted: false,
      limit: 'total',
      max: 2,
      inFlight: 2,
    });
  });

  it('a released slot can be taken again, and releasing twice gives back only one slot', () => {
    const admission = new HandshakeAdmission(() => ({ total: 1, perSource: 1 }));
    const ticket = admitted(admission, 'a');
    expect(admission.release(ticket)).toBe(true);
    expect(admission.release(ticket)).toBe(false);
    expect(admission.inFlight).toBe(0);
    admitted(admission, 'b');
    expect(admission.tryAdmit('c').admitted).toBe(false);
  });

  it('ignores a ticket issued by another instance', () => {
    const one = new HandshakeAdmission(() => ({ total: 1, perSource: 1 }));
    const other = new HandshakeAdmission(() => ({ total: 1, perSource: 1 }));
    admitted(one, 'a');
    const foreign = admitted(other, 'a');
    expect(one.release(foreign)).toBe(false);
    expect(one.inFlight).toBe(1);
  });

  it('reads the limits at every admission: lowering them keeps admitted slots but refuses new ones', () => {
    let limits: AdmissionLimits = { total: 4, perSource: 4 };
    const admission = new HandshakeAdmission(() => limits);
    const tickets = [admitted(admission, 'a'), admitted(admission, 'a'), admitted(admission, 'b')];
    limits = { total: 2, perSource: 1 };
    expect(admission.tryAdmit('c')).toMatchObject({ admitted: false, limit: 'total', inFlight: 3 });
    admission.release(tickets[0]!);
    admission.release(tickets[2]!);
    expect(admission.tryAdmit('a')).toMatchObject({
      admitted: false,
      limit: 'perSource',
      inFlight: 1,
    });
    expect(admission.tryAdmit('b').admitted).toBe(true);
    limits = { total: 8, perSource: 8 };
    expect(admission.tryAdmit('a').admitted).toBe(true);
  });

  it('never exceeds either limit and always agrees with a model, whatever the order of events', () => {
    type Op =
      | { kind: 'admit'; source: number }
      | { kind: 'release'; pick: number }
      | { kind: 'limits'; total: number; perSource: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({ kind: fc.constant('admit' as const), source: fc.nat(4) }),
      },
      {
        weight: 3,
        arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat(50) }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('limits' as const),
          total: fc.integer({ min: 1, max: 8 }),
          perSource: fc.integer({ min: 1, max: 4 }),
        }),
      },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(op, { maxLength: 200 }),
        (total, perSource, ops) => {
          let limits: AdmissionLimits = { total, perSource };
          const admission = new HandshakeAdmission(() => limits);
          const held: AdmissionTicket[] = [];
          const count = (source: string) => held.filter((t) => t.source === source).length;
          for (const step of ops) {
            if (step.kind === 'limits') {
              limits = { total: step.total, perSource: step.perSource };
            } else if (step.kind === 'admit') {
              const source = `s${step.source}`;
              const allowed = held.length < limits.total && count(source) < limits.perSource;
              const decision = admission.tryAdmit(source);
              expect(decision.admitted).toBe(allowed);
              if (decision.admitted) held.push(decision.ticket);
            } else if (held.length > 0) {
              const [ticket] = held.splice(step.pick % held.length, 1);
              expect(admission.release(ticket!)).toBe(true);
              expect(admission.release(ticket!)).toBe(false);
            }
            expect(admission.inFlight).toBe(held.length);
            for (let s = 0; s <= 4; s++)
              expect(admission.inFlightFrom(`s${s}`)).toBe(count(`s${s}`));
          }
        },
      ),
    );
  });
});
