/**
 * The scale-out seam of the service: turns `--redis` / `--nats` into a hub {@link Backplane}. Without either, the
 * hub uses its in-memory backplane (one process, nothing installed).
 *
 * @module
 */
import type { Backplane } from '../hub/backplane.js';
import { ConfigError, type ServiceConfig } from './config.js';

/**
 * The backplane for the configured broker, or undefined for the hub's in-memory default. Throws a
 * {@link ConfigError} naming the flag when the broker is not available in this build.
 */
export async function createBackplane(config: ServiceConfig): Promise<Backplane | undefined> {
  if (config.redis !== undefined) throw new ConfigError('--redis: the Redis backplane is not available in this build yet');
  if (config.nats !== undefined) throw new ConfigError('--nats: the NATS backplane is not available in this build yet');
  return undefined;
}
