/**
 * The inbound rate limit: a token bucket per connection ({@link HubLimits.rate}), and the count of rate-limited
 * messages in a row after which the connection is closed (`maxRateViolations`).
 *
 * @module
 */
import type { HubClient } from './client.js';
import type { HubLimits, HubRate } from './options.js';

/**
 * Takes a token for one inbound message at `now` (ms): `ok`; `limited` (refuse this message: `rate_limited`); or
 * `close` (the `maxRateViolations`-th refusal in a row: close with 4429).
 */
export function takeToken(client: HubClient, rate: Required<HubRate> | false, maxViolations: number, now: number): 'ok' | 'limited' | 'close' {
  if (rate === false) return 'ok';
  const elapsed = now - client.refilledAt;
  if (elapsed > 0) {
    client.tokens = Math.min(rate.burst, client.tokens + (elapsed * rate.messages) / rate.interval);
    client.refilledAt = now;
  }
  if (client.tokens >= 1) {
    client.tokens -= 1;
    client.strikes = 0;
    return 'ok';
  }
  return ++client.strikes >= maxViolations ? 'close' : 'limited';
}
