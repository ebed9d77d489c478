import fc from 'fast-check';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import {
  BLOB_ACK_WINDOW_MAX,
  BLOB_CHUNK_SIZE_MAX,
  DEFAULT_BLOB_WINDOWS,
  DOMUS_CONFIG_MAX,
  DomusConfigBuilder,
  RECONNECT_BACKOFF_STEPS_MAX,
  RECONNECT_BACKOFF_STEP_MS_MAX,
  defaultDomusConfig,
  mergeDomusConfig,
  validateDomusConfig,
  type DomusConfig,
} from '../../lib/engine/config.js';
import { expectError } from '../support/expect.js';

/** Runs `fn`, expecting `AureliaError(InvalidConfig)` whose message contains every fragment. */
const expectInvalid = (fn: () => unknown, ...fragments: string[]): AureliaError =>
  expectError(ErrorId.InvalidConfig, fn, ...fragments);

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

type IntegerField = keyof typeof DOMUS_CONFIG_MAX;
const INTEGER_FIELDS = Object.keys(DOMUS_CONFIG_MAX) as IntegerField[];

/** Defaults with the cross-field partners relaxed, so any single field may take 1 or its max. */
function permissive(): Record<string, unknown> {
  return {
    ...defaultDomusConfig(),
    sendTimeoutMs: DOMUS_CONFIG_MAX.sendTimeoutMs,
    callisConnectTimeoutMs: 1,
    inboundHandshakeLimitTotal: DOMUS_CONFIG_MAX.inboundHandshakeLimitTotal,
    inboundHandshakeLimitPerPeer: 1,
    tcpBlobWindow: { chunkSize: 1, ackWindow: 1 },
    socketBlobWindow: { chunkSize: 1, ackWindow: 1 },
    replicaEjectionMs: 1,
    replicaMaxEjectionMs: DOMUS_CONFIG_MAX.replicaMaxEjectionMs,
  };
}

describe('defaultDomusConfig', () => {
  it('returns the defaults of the design, section 7', () => {
    expect(defaultDomusConfig()).toEqual({
      sendQueueSize: 512,
      sendTimeoutMs: 30_000,
      callisConnectTimeoutMs: 15_000,
      acceptTimeoutMs: 5_000,
      tabernaAcceptQueueSize: 2,
      keepaliveIntervalMs: 15_000,
      reconnectBackoffMs: [1_000, 2_000, 4_000],
      tcpHandshakeTimeoutMs: 10_000,
      socketHandshakeTimeoutMs: 5_000,
      inboundHandshakeLimitTotal: 64,
      inboundHandshakeLimitPerPeer: 3,
      maxParallelCallisPerPeer: 8,
      tcpBlobWindow: DEFAULT_BLOB_WINDOWS.tcp,
      socketBlobWindow: DEFAULT_BLOB_WINDOWS.socket,
      blobOutboundBufferBytes: 256 * MiB,
      blobInboundBufferBytes: 256 * MiB,
      maxPayloadLen: 8 * MiB,
      limitedLogIntervalMs: 120_000,
      maxInFlightPerPeer: 1024,
      maxQueuedBytesPerPeer: 64 * MiB,
      maxInFlightTotal: 16_384,
      maxQueuedBytesTotal: 512 * MiB,
      maxTabernaOverflowPerPeer: 128,
      maxDecisionBacklogBytesPerPeer: MiB,
      maxBlobInboundBytesPerPeer: 64 * MiB,
      maxRequestDeadlineMs: 300_000,
      replicaFailuresToEject: 5,
      replicaEjectionMs: 1_000,
      replicaMaxEjectionMs: 30_000,
      drainTimeoutMs: 10_000,
    });
    expect(DEFAULT_BLOB_WINDOWS.tcp).toEqual({ chunkSize: 262_144, ackWindow: 16 });
    expect(DEFAULT_BLOB_WINDOWS.socket).toEqual({ chunkSize: 131_072, ackWindow: 16 });
  });

  it('returns a fresh, deeply frozen object on every call', () => {
    const a = defaultDomusConfig();
    const b = defaultDomusConfig();
    expect(a).not.toBe(b);
    expect(a.reconnectBackoffMs).not.toBe(b.reconnectBackoffMs);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.reconnectBackoffMs)).toBe(true);
    expect(Object.isFrozen(a.tcpBlobWindow)).toBe(true);
    expect(Object.isFrozen(a.socketBlobWindow)).toBe(true);
    expect(() => {
      (a as { sendQueueSize: number }).sendQueueSize = 1;
    }).toThrow(TypeError);
    expect(() => (a.reconnectBackoffMs as number[]).push(1)).toThrow(TypeError);
  });

  it('passes its own validation', () => {
    expect(validateDomusConfig(defaultDomusConfig())).toEqual(defaultDomusConfig());
  });
});

describe('validateDomusConfig', () => {
  it('returns a frozen deep copy that later changes to the input do not affect', () => {
    const input = {
      ...defaultDomusConfig(),
      reconnectBackoffMs: [10, 20],
      tcpBlobWindow: { chunkSize: 1024, ackWindow: 4 },
    };
    const config = validateDomusConfig(input);
    input.reconnectBackoffMs.push(30);
    input.tcpBlobWindow.ackWindow = 99;
    expect(config.reconnectBackoffMs).toEqual([10, 20]);
    expect(config.tcpBlobWindow).toEqual({ chunkSize: 1024, ackWindow: 4 });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.reconnectBackoffMs)).toBe(true);
    expect(Object.isFrozen(config.tcpBlobWindow)).toBe(true);
  });

  it('rejects a value that is not an object', () => {
    for (const bad of [null, undefined, 5, 'config', [], true]) {
      expectInvalid(() => validateDomusConfig(bad), 'DomusConfig must be an object');
    }
  });

  it.each(INTEGER_FIELDS)('accepts 1 and the maximum for %s', (field) => {
    for (const value of [1, DOMUS_CONFIG_MAX[field]]) {
      const config = validateDomusConfig({ ...permissive(), [field]: value });
      expect(config[field]).toBe(value);
    }
  });

  it.each(INTEGER_FIELDS)(
    'rejects 0, negatives, fractions, NaN, Infinity, over-max and non-numbers for %s',
    (field) => {
      const max = DOMUS_CONFIG_MAX[field];
      const cases: [unknown, string][] = [
        [0, '0'],
        [-0, '-0'],
        [-1, '-1'],
        [1.5, '1.5'],
        [Number.NaN, 'NaN'],
        [Number.POSITIVE_INFINITY, 'Infinity'],
        [max + 1, String(max + 1)],
        ['5', "'5'"],
        [5n, '5n'],
        [undefined, 'undefined'],
        [null, 'null'],
      ];
      for (const [value, shown] of cases) {
        expectInvalid(
          () => validateDomusConfig({ ...permissive(), [field]: value }),
          `${field} must be an integer in 1..${max}, got ${shown}`,
        );
      }
    },
  );

  it('reports a missing field by name and range', () => {
    const { maxPayloadLen: _omitted, ...rest } = defaultDomusConfig();
    expectInvalid(
      () => validateDomusConfig(rest),
      `maxPayloadLen must be an integer in 1..${64 * MiB}, got undefined`,
    );
  });

  it('uses the exact message format of the design for sendQueueSize', () => {
    const error = expectInvalid(() =>
      validateDomusConfig({ ...defaultDomusConfig(), sendQueueSize: 0 }),
    );
    expect(error.message).toBe('sendQueueSize must be an integer in 1..4096, got 0');
  });

  it('accepts any in-range values that respect the cross-field rules', () => {
    const integer = (field: IntegerField) => fc.integer({ min: 1, max: DOMUS_CONFIG_MAX[field] });
    const window = fc.record({
      chunkSize: fc.integer({ min: 1, max: BLOB_CHUNK_SIZE_MAX }),
      ackWindow: fc.integer({ min: 1, max: BLOB_ACK_WINDOW_MAX }),
    });
    const arbitrary = fc
      .record({
        sendQueueSize: integer('sendQueueSize'),
        sendTimeoutMs: integer('sendTimeoutMs'),
        acceptTimeoutMs: integer('acceptTimeoutMs'),
        tabernaAcceptQueueSize: integer('tabernaAcceptQueueSize'),
        keepaliveIntervalMs: integer('keepaliveIntervalMs'),
        reconnectBackoffMs: fc.array(fc.integer({ min: 1, max: RECONNECT_BACKOFF_STEP_MS_MAX }), {
          minLength: 1,
          maxLength: RECONNECT_BACKOFF_STEPS_MAX,
        }),
        tcpHandshakeTimeoutMs: integer('tcpHandshakeTimeoutMs'),
        socketHandshakeTimeoutMs: integer('socketHandshakeTimeoutMs'),
        inboundHandshakeLimitTotal: integer('inboundHandshakeLimitTotal'),
        maxParallelCallisPerPeer: integer('maxParallelCallisPerPeer'),
        tcpBlobWindow: window,
        socketBlobWindow: window,
        maxPayloadLen: integer('maxPayloadLen'),
        limitedLogIntervalMs: integer('limitedLogIntervalMs'),
        maxInFlightPerPeer: integer('maxInFlightPerPeer'),
        maxQueuedBytesPerPeer: integer('maxQueuedBytesPerPeer'),
        maxInFlightTotal: integer('maxInFlightTotal'),
        maxQueuedBytesTotal: integer('maxQueuedBytesTotal'),
        maxTabernaOverflowPerPeer: integer('maxTabernaOverflowPerPeer'),
        maxDecisionBacklogBytesPerPeer: integer('maxDecisionBacklogBytesPerPeer'),
        maxRequestDeadlineMs: integer('maxRequestDeadlineMs'),
        replicaFailuresToEject: integer('replicaFailuresToEject'),
        replicaMaxEjectionMs: integer('replicaMaxEjectionMs'),
        drainTimeoutMs: integer('drainTimeoutMs'),
        ejectionShare: fc.double({ min: 0, max: 1, noNaN: true }),
        connectShare: fc.double({ min: 0, max: 1, noNaN: true }),
        perPeerShare: fc.double({ min: 0, max: 1, noNaN: true }),
        bufferExtra: fc.nat({ max: 2 ** 30 }),
      })
      .map(({ connectShare, perPeerShare, bufferExtra, ejectionShare, ...fields }) => {
        const window = Math.max(
          fields.tcpBlobWindow.chunkSize * fields.tcpBlobWindow.ackWindow,
          fields.socketBlobWindow.chunkSize * fields.socketBlobWindow.ackWindow,
        );
        const buffer = Math.min(DOMUS_CONFIG_MAX.blobInboundBufferBytes, window + bufferExtra);
        return {
          ...fields,
          callisConnectTimeoutMs: Math.max(1, Math.floor(fields.sendTimeoutMs * connectShare)),
          inboundHandshakeLimitPerPeer: Math.max(
            1,
            Math.min(64, Math.floor(fields.inboundHandshakeLimitTotal * perPeerShare)),
          ),
          blobOutboundBufferBytes: buffer,
          blobInboundBufferBytes: buffer,
          maxBlobInboundBytesPerPeer: buffer,
          replicaEjectionMs: Math.max(1, Math.floor(fields.replicaMaxEjectionMs * ejectionShare)),
        } satisfies DomusConfig;
      });
    fc.assert(
      fc.property(arbitrary, (input) => {
        expect(validateDomusConfig(input)).toEqual(input);
      }),
    );
  });

  it('rejects any single out-of-range integer field, naming that field', () => {
    const outOfRange = fc.oneof(
      fc.integer({ max: 0 }),
      fc.constantFrom(0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...INTEGER_FIELDS),
        fc.oneof(outOfRange, fc.integer({ min: 1, max: 2 ** 40 })),
        (field, value) => {
          fc.pre(!(Number.isInteger(value) && value >= 1 && value <= DOMUS_CONFIG_MAX[field]));
          expectInvalid(
            () => validateDomusConfig({ ...permissive(), [field]: value }),
            `${field} must be an integer in 1..${DOMUS_CONFIG_MAX[field]}`,
          );
        },
      ),
    );
  });

  describe('reconnectBackoffMs', () => {
    const withBackoff = (value: unknown) => () =>
      validateDomusConfig({ ...defaultDomusConfig(), reconnectBackoffMs: value });

    it('accepts 1 to 16 steps of 1..300000 ms', () => {
      expect(withBackoff([1])().reconnectBackoffMs).toEqual([1]);
      const sixteen = Array.from({ length: 16 }, () => RECONNECT_BACKOFF_STEP_MS_MAX);
      expect(withBackoff(sixteen)().reconnectBackoffMs).toEqual(sixteen);
    });

    it('rejects an empty list, more than 16 steps and non-arrays', () => {
      const seventeen = Array.from({ length: 17 }, () => 1000);
      for (const bad of [[], seventeen, 1000, '1000', null, undefined, { 0: 1000 }]) {
        expectInvalid(withBackoff(bad), 'reconnectBackoffMs must be an array of 1..16 delays');
      }
    });

    it('names the index of a bad step and the allowed range', () => {
      expectInvalid(
        withBackoff([1000, 0]),
        'reconnectBackoffMs[1] must be an integer in 1..300000, got 0',
      );
      expectInvalid(
        withBackoff([300_001]),
        'reconnectBackoffMs[0] must be an integer in 1..300000',
      );
      expectInvalid(withBackoff([1000, '2000']), 'reconnectBackoffMs[1]', "got '2000'");
      expectInvalid(withBackoff([1.5]), 'reconnectBackoffMs[0]', 'got 1.5');
      // eslint-disable-next-line no-sparse-arrays
      expectInvalid(withBackoff([1000, , 3000]), 'reconnectBackoffMs[1]', 'got undefined');
    });
  });

  describe('blob windows', () => {
    it.each(['tcpBlobWindow', 'socketBlobWindow'] as const)(
      'checks %s chunkSize in 1..1 MiB and ackWindow in 1..4096',
      (field) => {
        const withWindow = (value: unknown) => () =>
          validateDomusConfig({ ...defaultDomusConfig(), [field]: value });
        expect(withWindow({ chunkSize: BLOB_CHUNK_SIZE_MAX, ackWindow: 1 })()[field]).toEqual({
          chunkSize: 1_048_576,
          ackWindow: 1,
        });
        expect(withWindow({ chunkSize: 1, ackWindow: BLOB_ACK_WINDOW_MAX })()[field]).toEqual({
          chunkSize: 1,
          ackWindow: 4096,
        });
        expectInvalid(
          withWindow({ chunkSize: 0, ackWindow: 16 }),
          `${field}.chunkSize must be an integer in 1..1048576, got 0`,
        );
        expectInvalid(
          withWindow({ chunkSize: BLOB_CHUNK_SIZE_MAX + 1, ackWindow: 16 }),
          `${field}.chunkSize must be an integer in 1..1048576, got 1048577`,
        );
        expectInvalid(
          withWindow({ chunkSize: 1024, ackWindow: 4097 }),
          `${field}.ackWindow must be an integer in 1..4096, got 4097`,
        );
        expectInvalid(
          withWindow({ chunkSize: 1024 }),
          `${field}.ackWindow must be an integer in 1..4096, got undefined`,
        );
        for (const bad of [null, 5, [], 'big']) {
          expectInvalid(withWindow(bad), `${field} must be an object { chunkSize, ackWindow }`);
        }
        expectInvalid(
          withWindow({ chunkSize: 1024, ackWindow: 4, window: 8 }),
          `unknown field of ${field} "window"`,
        );
      },
    );
  });

  describe('cross-field rules', () => {
    it('accepts callisConnectTimeoutMs equal to sendTimeoutMs and rejects it above, naming both', () => {
      const base = defaultDomusConfig();
      expect(
        validateDomusConfig({ ...base, sendTimeoutMs: 20_000, callisConnectTimeoutMs: 20_000 })
          .callisConnectTimeoutMs,
      ).toBe(20_000);
      expectInvalid(
        () =>
          validateDomusConfig({ ...base, sendTimeoutMs: 10_000, callisConnectTimeoutMs: 10_001 }),
        'callisConnectTimeoutMs (10001) must not exceed sendTimeoutMs (10000)',
      );
    });

    it('rejects a per-peer handshake limit above the total, naming both', () => {
      const base = defaultDomusConfig();
      expect(
        validateDomusConfig({
          ...base,
          inboundHandshakeLimitTotal: 5,
          inboundHandshakeLimitPerPeer: 5,
        }).inboundHandshakeLimitPerPeer,
      ).toBe(5);
      expectInvalid(
        () =>
          validateDomusConfig({
            ...base,
            inboundHandshakeLimitTotal: 4,
            inboundHandshakeLimitPerPeer: 5,
          }),
        'inboundHandshakeLimitPerPeer (5) must not exceed inboundHandshakeLimitTotal (4)',
      );
    });

    it('requires replicaEjectionMs ≤ replicaMaxEjectionMs', () => {
      const base = defaultDomusConfig();
      expect(
        validateDomusConfig({ ...base, replicaEjectionMs: 5_000, replicaMaxEjectionMs: 5_000 })
          .replicaEjectionMs,
      ).toBe(5_000);
      expectInvalid(
        () =>
          validateDomusConfig({ ...base, replicaEjectionMs: 5_001, replicaMaxEjectionMs: 5_000 }),
        'replicaEjectionMs (5001) must not exceed replicaMaxEjectionMs (5000)',
      );
    });

    it.each([
      ['blobOutboundBufferBytes', 'tcpBlobWindow'],
      ['blobInboundBufferBytes', 'tcpBlobWindow'],
      ['blobOutboundBufferBytes', 'socketBlobWindow'],
      ['blobInboundBufferBytes', 'socketBlobWindow'],
      ['maxBlobInboundBytesPerPeer', 'tcpBlobWindow'],
      ['maxBlobInboundBytesPerPeer', 'socketBlobWindow'],
    ] as const)('requires %s to hold one full %s', (buffer, window) => {
      const input = {
        ...defaultDomusConfig(),
        tcpBlobWindow: { chunkSize: 1000, ackWindow: 2 },
        socketBlobWindow: { chunkSize: 1000, ackWindow: 2 },
        [window]: { chunkSize: 1000, ackWindow: 10 },
      };
      expect(validateDomusConfig({ ...input, [buffer]: 10_000 })[buffer]).toBe(10_000);
      expectInvalid(
        () => validateDomusConfig({ ...input, [buffer]: 9_999 }),
        `${buffer} (9999) must hold one full blob window: at least 10000 bytes`,
        `${window}.chunkSize 1000`,
        `${window}.ackWindow 10`,
      );
    });

    it('accepts the largest windows with the largest buffers', () => {
      const largest = { chunkSize: BLOB_CHUNK_SIZE_MAX, ackWindow: BLOB_ACK_WINDOW_MAX };
      const config = validateDomusConfig({
        ...defaultDomusConfig(),
        tcpBlobWindow: largest,
        socketBlobWindow: largest,
        blobOutboundBufferBytes: 8 * GiB,
        blobInboundBufferBytes: 8 * GiB,
        maxBlobInboundBytesPerPeer: 8 * GiB,
      });
      expect(config.blobInboundBufferBytes).toBe(8 * GiB);
    });
  });

  describe('unknown fields', () => {
    it('rejects a typo, naming it and suggesting the field that was meant', () => {
      expectInvalid(
        () => validateDomusConfig({ ...defaultDomusConfig(), sendTimeout: 5000 }),
        'unknown config field "sendTimeout"',
        'did you mean sendTimeoutMs?',
      );
      expectInvalid(
        () => validateDomusConfig({ ...defaultDomusConfig(), sendQueueSzie: 5 }),
        'unknown config field "sendQueueSzie"',
        'did you mean sendQueueSize?',
      );
    });

    it('lists the known fields when nothing is close', () => {
      expectInvalid(
        () => validateDomusConfig({ ...defaultDomusConfig(), colour: 'blue' }),
        'unknown config field "colour"',
        'known fields: sendQueueSize, sendTimeoutMs',
      );
    });
  });
});

describe('mergeDomusConfig', () => {
  it('applies the patch over the base and leaves the base untouched', () => {
    const base = defaultDomusConfig();
    const merged = mergeDomusConfig(base, { sendQueueSize: 256, reconnectBackoffMs: [50] });
    expect(merged).toEqual({ ...base, sendQueueSize: 256, reconnectBackoffMs: [50] });
    expect(base.sendQueueSize).toBe(512);
    expect(Object.isFrozen(merged)).toBe(true);
  });

  it('keeps the base value for patch fields that are undefined', () => {
    const merged = mergeDomusConfig(defaultDomusConfig(), {
      sendQueueSize: undefined,
      maxPayloadLen: 1024,
    });
    expect(merged.sendQueueSize).toBe(512);
    expect(merged.maxPayloadLen).toBe(1024);
  });

  it('validates the merged result, including cross-field rules against the base', () => {
    expectInvalid(
      () => mergeDomusConfig(defaultDomusConfig(), { sendTimeoutMs: 1000 }),
      'callisConnectTimeoutMs (15000) must not exceed sendTimeoutMs (1000)',
    );
    expectInvalid(
      () => mergeDomusConfig(defaultDomusConfig(), { acceptTimeoutMs: 0 }),
      'acceptTimeoutMs must be an integer in 1..60000, got 0',
    );
  });

  it('rejects unknown fields in the patch and arguments that are not objects', () => {
    expectInvalid(
      () => mergeDomusConfig(defaultDomusConfig(), { sendTimeout: 1 } as Partial<DomusConfig>),
      'unknown config field "sendTimeout"',
    );
    expectInvalid(
      () => mergeDomusConfig(defaultDomusConfig(), null as unknown as Partial<DomusConfig>),
      'DomusConfig patch must be an object, got null',
    );
    expectInvalid(
      () => mergeDomusConfig(undefined as unknown as DomusConfig, {}),
      'base DomusConfig must be an object, got undefined',
    );
  });
});

describe('DomusConfigBuilder', () => {
  it('builds the defaults when nothing is set', () => {
    expect(new DomusConfigBuilder().build()).toEqual(defaultDomusConfig());
  });

  it('chains setters named like the fields', () => {
    const config = new DomusConfigBuilder()
      .sendQueueSize(256)
      .sendTimeoutMs(60_000)
      .callisConnectTimeoutMs(20_000)
      .acceptTimeoutMs(1_000)
      .tabernaAcceptQueueSize(8)
      .keepaliveIntervalMs(5_000)
      .reconnectBackoffMs([100, 200])
      .tcpHandshakeTimeoutMs(3_000)
      .socketHandshakeTimeoutMs(2_000)
      .inboundHandshakeLimitTotal(100)
      .inboundHandshakeLimitPerPeer(10)
      .maxParallelCallisPerPeer(4)
      .tcpBlobWindow({ chunkSize: 65_536, ackWindow: 32 })
      .socketBlobWindow({ chunkSize: 131_072, ackWindow: 8 })
      .blobOutboundBufferBytes(64 * MiB)
      .blobInboundBufferBytes(32 * MiB)
      .maxPayloadLen(MiB)
      .limitedLogIntervalMs(60_000)
      .maxInFlightPerPeer(64)
      .maxQueuedBytesPerPeer(4 * MiB)
      .maxInFlightTotal(1024)
      .maxQueuedBytesTotal(64 * MiB)
      .maxTabernaOverflowPerPeer(16)
      .maxDecisionBacklogBytesPerPeer(256 * 1024)
      .maxBlobInboundBytesPerPeer(16 * MiB)
      .maxRequestDeadlineMs(20_000)
      .replicaFailuresToEject(3)
      .replicaEjectionMs(500)
      .replicaMaxEjectionMs(10_000)
      .drainTimeoutMs(2_000)
      .build();
    expect(config).toEqual({
      sendQueueSize: 256,
      sendTimeoutMs: 60_000,
      callisConnectTimeoutMs: 20_000,
      acceptTimeoutMs: 1_000,
      tabernaAcceptQueueSize: 8,
      keepaliveIntervalMs: 5_000,
      reconnectBackoffMs: [100, 200],
      tcpHandshakeTimeoutMs: 3_000,
      socketHandshakeTimeoutMs: 2_000,
      inboundHandshakeLimitTotal: 100,
      inboundHandshakeLimitPerPeer: 10,
      maxParallelCallisPerPeer: 4,
      tcpBlobWindow: { chunkSize: 65_536, ackWindow: 32 },
      socketBlobWindow: { chunkSize: 131_072, ackWindow: 8 },
      blobOutboundBufferBytes: 64 * MiB,
      blobInboundBufferBytes: 32 * MiB,
      maxPayloadLen: MiB,
      limitedLogIntervalMs: 60_000,
      maxInFlightPerPeer: 64,
      maxQueuedBytesPerPeer: 4 * MiB,
      maxInFlightTotal: 1024,
      maxQueuedBytesTotal: 64 * MiB,
      maxTabernaOverflowPerPeer: 16,
      maxDecisionBacklogBytesPerPeer: 256 * 1024,
      maxBlobInboundBytesPerPeer: 16 * MiB,
      maxRequestDeadlineMs: 20_000,
      replicaFailuresToEject: 3,
      replicaEjectionMs: 500,
      replicaMaxEjectionMs: 10_000,
      drainTimeoutMs: 2_000,
    });
  });

  it('has a setter for every integer field', () => {
    for (const field of INTEGER_FIELDS) {
      const builder = DomusConfigBuilder.from(permissive() as unknown as DomusConfig);
      const setter = (builder as unknown as Record<string, (value: number) => DomusConfigBuilder>)[
        field
      ];
      expect(typeof setter).toBe('function');
      expect(setter.call(builder, 1).build()[field]).toBe(1);
    }
  });

  it('blobWindow sets both the TCP and the socket window', () => {
    const config = new DomusConfigBuilder().blobWindow({ chunkSize: 4096, ackWindow: 64 }).build();
    expect(config.tcpBlobWindow).toEqual({ chunkSize: 4096, ackWindow: 64 });
    expect(config.socketBlobWindow).toEqual({ chunkSize: 4096, ackWindow: 64 });
  });

  it('validates only in build(), so a bad value can be corrected before building', () => {
    const builder = new DomusConfigBuilder().sendQueueSize(0);
    expectInvalid(() => builder.build(), 'sendQueueSize must be an integer in 1..4096, got 0');
    expect(builder.sendQueueSize(10).build().sendQueueSize).toBe(10);
  });

  it('throws the typed error naming the field for each kind of bad value', () => {
    expectInvalid(
      () => new DomusConfigBuilder().reconnectBackoffMs([]).build(),
      'reconnectBackoffMs must be an array of 1..16 delays',
    );
    expectInvalid(
      () => new DomusConfigBuilder().blobWindow({ chunkSize: 2 * MiB, ackWindow: 1 }).build(),
      'tcpBlobWindow.chunkSize must be an integer in 1..1048576',
    );
    expectInvalid(
      () => new DomusConfigBuilder().callisConnectTimeoutMs(40_000).build(),
      'callisConnectTimeoutMs (40000) must not exceed sendTimeoutMs (30000)',
    );
  });

  it('copies arrays and windows when set, so later mutation by the caller has no effect', () => {
    const steps = [100, 200];
    const window = { chunkSize: 1024, ackWindow: 2 };
    const builder = new DomusConfigBuilder().reconnectBackoffMs(steps).blobWindow(window);
    steps.push(0);
    window.ackWindow = 0;
    const config = builder.build();
    expect(config.reconnectBackoffMs).toEqual([100, 200]);
    expect(config.tcpBlobWindow).toEqual({ chunkSize: 1024, ackWindow: 2 });
  });

  it('from() starts from the given config and does not change it', () => {
    const base = new DomusConfigBuilder().sendQueueSize(7).build();
    const derived = DomusConfigBuilder.from(base).maxPayloadLen(1000).build();
    expect(derived).toEqual({ ...base, maxPayloadLen: 1000 });
    expect(base.maxPayloadLen).toBe(8 * MiB);
  });

  it('from() keeps unknown fields so build() reports them', () => {
    const withTypo = { ...defaultDomusConfig(), sendTimeout: 1 } as unknown as DomusConfig;
    expectInvalid(
      () => DomusConfigBuilder.from(withTypo).build(),
      'unknown config field "sendTimeout"',
    );
  });

  it('from() rejects a value that is not an object at once', () => {
    expectInvalid(
      () => DomusConfigBuilder.from(null as unknown as DomusConfig),
      'DomusConfig must be an object, got null',
    );
  });

  it('can build many configs, each independent of later setter calls', () => {
    const builder = new DomusConfigBuilder().sendQueueSize(5);
    const first = builder.build();
    const second = builder.sendQueueSize(6).build();
    expect(first.sendQueueSize).toBe(5);
    expect(second.sendQueueSize).toBe(6);
  });
});
