/**
 * The scale-out seam of the service: turns `--redis` / `--nats` into a hub {@link Backplane}. Without either, the
 * hub uses its in-memory backplane (one process, nothing installed). The adapters are loaded only when a flag asks
 * for them, so the service runs without the `redis` / `nats` packages otherwise.
 *
 * @module
 */
import type { Backplane } from '../hub/backplane.js';
import { ConfigError, type ServiceConfig } from './config.js';
import type { Logger } from './log.js';

/**
 * The backplane for the configured broker, or undefined for the hub's in-memory default. Throws a
 * {@link ConfigError} naming the flag when the broker's client package is not installed.
 */
export async function createBackplane(config: ServiceConfig, log?: Logger): Promise<Backplane | undefined> {
  // Broker errors the adapter survives (connection loss, reconnects) are logged, never thrown.
  const onError = (e: Error): void => log?.('warn', 'backplane_error', { error: e.message });
  const common = {
    onError,
    historySize: config.historySize,
    historyTtl: config.historyTtl,
    prefix: config.brokerPrefix,
    heartbeat: config.nodeHeartbeat,
    ...(config.nodeTtl !== undefined ? { nodeTtl: config.nodeTtl } : {}),
  };
  if (config.redis !== undefined) {
    await requirePackage('redis', '--redis');
    const { createRedisBackplane } = await import('../hub/redis.js');
    return createRedisBackplane(config.redis, common);
  }
  if (config.nats !== undefined) {
    await requirePackage('nats', '--nats');
    const { createNatsBackplane } = await import('../hub/nats.js');
    return createNatsBackplane(config.nats, common);
  }
  return undefined;
}

async function requirePackage(name: string, flag: string): Promise<void> {
  try {
    await import(name);
  } catch {
    throw new ConfigError(`${flag} needs the "${name}" package: npm install ${name}`);
  }
}
