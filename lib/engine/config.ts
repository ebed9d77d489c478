// Domus tuning knobs: their shape, limits and defaults, the one validator every entry point uses,
// and the builder (see `config/`). Live updates of a running domus are applied in domus.ts.
//
// A new field goes in five places: its documented type in config/domus-config.ts, its bounds in
// config/limits.ts (integers), its default in config/defaults.ts, its check in
// validateDomusConfig (config/validation.ts) and its setter in config/builder.ts; the compiler
// flags the first four when one is missing. If a running domus must react to a change, handle it
// in `Domus.applyConfig` (domus.ts).
export { type BlobWindowConfig, type DomusConfig } from './config/domus-config.js';
export {
  BLOB_ACK_WINDOW_MAX,
  BLOB_CHUNK_SIZE_MAX,
  DOMUS_CONFIG_MAX,
  RECONNECT_BACKOFF_STEPS_MAX,
  RECONNECT_BACKOFF_STEP_MS_MAX,
} from './config/limits.js';
export { DEFAULT_BLOB_WINDOWS, defaultDomusConfig } from './config/defaults.js';
export { mergeDomusConfig, validateDomusConfig } from './config/validation.js';
export { DomusConfigBuilder } from './config/builder.js';
export { closestName } from './config/did-you-mean.js';
