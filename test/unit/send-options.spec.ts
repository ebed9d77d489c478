import { ErrorId } from '../../lib/engine/errors.js';
import { SendOptions } from '../../lib/engine/send-options.js';
import { expectError } from '../support/expect.js';

describe('SendOptions', () => {
  it('offers frozen MESSAGE_ONLY and BLOB instances', () => {
    expect(SendOptions.MESSAGE_ONLY.blob).toBe(false);
    expect(SendOptions.BLOB.blob).toBe(true);
    expect(Object.isFrozen(SendOptions.MESSAGE_ONLY)).toBe(true);
    expect(Object.isFrozen(SendOptions.BLOB)).toBe(true);
    expect(() => {
      (SendOptions.MESSAGE_ONLY as { blob: boolean }).blob = true;
    }).toThrow(TypeError);
    expect(SendOptions.MESSAGE_ONLY.blob).toBe(false);
  });

  it('defaults to a message-only send', () => {
    expect(new SendOptions().blob).toBe(false);
    expect(new SendOptions({}).blob).toBe(false);
    expect(new SendOptions({ blob: true }).blob).toBe(true);
  });

  it('rejects a blob flag that is not a boolean with InvalidConfig', () => {
    for (const blob of ['yes', 1, null]) {
      const caught = expectError(
        ErrorId.InvalidConfig,
        () => new SendOptions({ blob: blob as unknown as boolean }),
      );
      expect(caught.message).toContain('send option blob must be a boolean');
    }
  });

  it('from() maps undefined, plain objects and instances to the shared instances', () => {
    expect(SendOptions.from()).toBe(SendOptions.MESSAGE_ONLY);
    expect(SendOptions.from({})).toBe(SendOptions.MESSAGE_ONLY);
    expect(SendOptions.from({ blob: true })).toBe(SendOptions.BLOB);
    expect(SendOptions.from(new SendOptions({ blob: true }))).toBe(SendOptions.BLOB);
    expect(SendOptions.from(SendOptions.MESSAGE_ONLY)).toBe(SendOptions.MESSAGE_ONLY);
    expect(() => SendOptions.from(null as unknown as SendOptions)).toThrow(
      expect.objectContaining({ kind: ErrorId.InvalidConfig }) as Error,
    );
  });
});
