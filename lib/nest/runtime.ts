// Builds the domus a Nest application uses from validated module options.
import { Aurelia } from '../engine/aurelia.js';
import type { Pkcs8AuthConfig } from '../engine/auth.js';
import { checkAuthWatch, readAuthFiles, watchAuthFiles } from '../engine/auth-watch.js';
import type { Domus } from '../engine/domus.js';
import {
  type AureliaModuleOptions,
  type ResolvedAureliaOptions,
  resolveAureliaOptions,
} from './options.js';

/**
 * Validates `options` (when not already resolved), reads the certificate files if given as
 * paths, and builds and binds a domus with `aurelia`. Files are watched and reloaded when they
 * change (`watchAuthFiles`) unless `auth.watch` is `false`. Rejects with
 * `AureliaError(InvalidConfig)` naming the option, file or field at fault, or when the address
 * cannot be bound.
 */
export async function buildDomus(
  aurelia: Aurelia,
  options: AureliaModuleOptions | ResolvedAureliaOptions,
): Promise<Domus> {
  const resolved = resolveOnce(options);
  if ('format' in resolved.auth) return build(aurelia, resolved, resolved.auth);
  const files = resolved.auth;
  const loaded = await readAuthFiles(files);
  const domus = await build(aurelia, resolved, loaded.config);
  const watch = checkAuthWatch(files.watch, true);
  if (watch) watchAuthFiles(domus, files, { ...watch, digest: loaded.digest });
  return domus;
}

function build(
  aurelia: Aurelia,
  resolved: ResolvedAureliaOptions,
  auth: Pkcs8AuthConfig,
): Promise<Domus> {
  const builder = aurelia.domusBuilder(resolved.config, resolved.listen, auth, resolved.resolver);
  if (resolved.logger !== undefined) builder.logger(resolved.logger);
  return builder.build();
}

/** True for options that went through `resolveAureliaOptions`. */
export function isResolved(
  options: AureliaModuleOptions | ResolvedAureliaOptions,
): options is ResolvedAureliaOptions {
  return resolvedOptions.has(options as object);
}

const resolvedOptions = new WeakSet<object>();

/** `resolveAureliaOptions`, remembering the result so it is not validated twice. */
export function resolveOnce(
  options: AureliaModuleOptions | ResolvedAureliaOptions,
): ResolvedAureliaOptions {
  if (isResolved(options)) return options;
  const resolved = resolveAureliaOptions(options);
  resolvedOptions.add(resolved);
  return resolved;
}
