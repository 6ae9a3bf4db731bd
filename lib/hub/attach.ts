/**
 * Attaching the hub to its backplane, and knowing whether it can serve. A broker that is not up yet when the hub
 * starts is no reason to stay down: the hub keeps calling {@link Backplane.attach} with capped exponential backoff
 * and jitter ({@link ATTACH_BACKOFF}: 100 ms doubling to 5 s, each delay drawn from its upper half) until it
 * succeeds or the hub closes, reporting every failure through the hub's `error` event. Meanwhile the hub answers
 * what needs the backplane at once instead of hanging: upgrades get `503` with `Retry-After`, `publish` and the
 * history reject with a {@link BackplaneUnavailableError}. Once attached, everything works without a restart. The
 * same holds after attach while the adapter reports its broker unreachable ({@link Backplane.reachable}).
 *
 * {@link Hub.health} exposes the state ({@link HubHealth}), the `backplane` event announces its changes.
 *
 * @module
 */
import type { AuthRejection } from '../transport/server.js';
import type { Backplane, BackplaneSink } from './backplane.js';

/** Delays between attach attempts: the first retry after ~`initial` ms, doubling up to `max` ms. */
export const ATTACH_BACKOFF = { initial: 100, max: 5_000 } as const;

/**
 * The backplane as the hub sees it: `'attaching'` during the first attach attempt (startup), `'up'` when attached
 * and its broker reachable, `'down'` otherwise (attach failed and is being retried, or the broker connection was
 * lost after attach and the adapter is reconnecting).
 */
export type BackplaneState = 'attaching' | 'up' | 'down';

/** What {@link Hub.health} answers: whether the hub can serve, and why not. */
export interface HubHealth {
  /** See {@link BackplaneState}. Readiness: serve traffic only while `'up'` (and not `closing`). */
  backplane: BackplaneState;
  /** Whether `attach` succeeded (it stays true while the broker is unreachable afterwards). */
  attached: boolean;
  /**
   * Whether the broker answers now: attached, and the adapter does not report its connection lost
   * ({@link Backplane.reachable}; the in-memory backplane is always reachable once attached).
   */
  reachable: boolean;
  /** Whether new WebSocket connections are accepted now (`backplane` is `'up'` and the hub is not closing). */
  accepting: boolean;
  /** Whether `close()` was called. */
  closing: boolean;
  /** Failed attach attempts since the hub was created (0 when the first one succeeded). */
  attempts: number;
  /** While attach is being retried: milliseconds until the next attempt. Otherwise null. */
  retryIn: number | null;
  /** While not `'up'`: the last attach failure, or why the broker connection was lost (when the adapter said). */
  error: string | null;
  /** When `backplane` last changed, ms since 1970. */
  since: number;
}

/**
 * What the hub rejects with while its backplane is not up (see {@link HubHealth}): `publish`, `history` and the
 * like fail at once rather than wait for a broker that is known to be away. The service answers it with 503.
 */
export class BackplaneUnavailableError extends Error {
  /** Machine-readable. */
  readonly code = 'backplane_unavailable';
  /** Seconds after which trying again makes sense. */
  readonly retryAfter: number;
  constructor(message: string, retryAfter = 1) {
    super(message);
    this.name = 'BackplaneUnavailableError';
    this.retryAfter = retryAfter;
  }
}

/** The delay before retry number `failures` (1 for the first): capped exponential, drawn from its upper half. */
export function attachDelay(failures: number, backoff: { initial: number; max: number } = ATTACH_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.max, backoff.initial * 2 ** Math.min(Math.max(0, failures - 1), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** What the attacher needs of its hub. */
export interface AttachHost {
  /** An attach attempt failed (the hub's `error` event). */
  report(error: Error): void;
  /** `health().backplane` changed (the hub's `backplane` event). */
  changed(health: HubHealth): void;
  /** Whether the hub is closing. */
  closing(): boolean;
}

/** Attaches a hub's backplane, retrying until it succeeds or {@link Attacher.stop}, and gates what needs it. */
export class Attacher {
  /** Settles (never rejects) once the first attempt has: the hub listens after it, attached or not. */
  readonly first: Promise<void>;
  private phase: 'first' | 'attached' | 'retrying' = 'first';
  private stopped = false;
  private failures = 0;
  private lastError: Error | null = null;
  private linkError: Error | null = null;
  private timer: NodeJS.Timeout | null = null;
  private retryAt = 0;
  private state: BackplaneState = 'attaching';
  private changedAt = Date.now();
  private readonly sink: BackplaneSink;

  constructor(
    private readonly backplane: Backplane,
    sink: BackplaneSink,
    private readonly host: AttachHost,
  ) {
    this.sink = {
      ...sink,
      status: (reachable: boolean, error?: Error) => {
        this.linkError = reachable ? null : (error ?? null);
        this.changed();
      },
    };
    this.first = this.attempt();
  }

  /** The first attempt while it runs (upgrades wait for it), else null. */
  get pending(): Promise<void> | null {
    return this.phase === 'first' ? this.first : null;
  }

  private attempt(): Promise<void> {
    let attaching: Promise<void>;
    try {
      attaching = Promise.resolve(this.backplane.attach(this.sink));
    } catch (error) {
      attaching = Promise.reject(error);
    }
    return attaching.then(
      () => {
        this.phase = 'attached';
        this.lastError = null;
        this.changed();
      },
      (error: unknown) => {
        const e = error instanceof Error ? error : new Error(String(error));
        this.failures++;
        this.lastError = e;
        this.phase = 'retrying';
        if (this.stopped) return;
        const delay = attachDelay(this.failures);
        this.retryAt = Date.now() + delay;
        this.timer = setTimeout(() => {
          this.timer = null;
          if (!this.stopped) void this.attempt();
        }, delay);
        this.timer.unref?.();
        this.host.report(new Error(`the backplane could not attach (attempt ${this.failures}, next in ${delay} ms): ${e.message}`, { cause: e }));
        this.changed();
      },
    );
  }

  /** No more attempts (the hub is closing). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  health(): HubHealth {
    const attached = this.phase === 'attached';
    const reachable = attached && this.backplane.reachable !== false;
    const backplane: BackplaneState = this.phase === 'first' ? 'attaching' : reachable ? 'up' : 'down';
    const closing = this.host.closing();
    const why = backplane === 'down' ? (attached ? (this.linkError?.message ?? 'the broker is unreachable') : (this.lastError?.message ?? null)) : null;
    return {
      backplane,
      attached,
      reachable,
      accepting: backplane === 'up' && !closing,
      closing,
      attempts: this.failures,
      retryIn: this.phase === 'retrying' && !this.stopped ? Math.max(0, this.retryAt - Date.now()) : null,
      error: why,
      since: this.changedAt,
    };
  }

  /** Why the backplane cannot be used now, or null when it can (or the first attempt is still running). */
  refusal(): BackplaneUnavailableError | null {
    if (this.phase === 'first') return null;
    if (this.phase === 'attached') {
      if (this.backplane.reachable !== false) return null;
      return new BackplaneUnavailableError(`the broker is unreachable${this.linkError ? ` (${this.linkError.message})` : ''}; the backplane is reconnecting, retry later`, 1);
    }
    const wait = this.stopped ? 1 : Math.max(1, Math.ceil((this.retryAt - Date.now()) / 1000));
    return new BackplaneUnavailableError(`the backplane is not attached (${this.lastError?.message ?? 'unknown error'}); ${this.stopped ? 'the hub is closing' : 'retrying'}`, wait);
  }

  /**
   * Resolves when the hub may use its backplane: at once when it is up, after the first attempt while that runs;
   * rejects at once with a {@link BackplaneUnavailableError} while it is down.
   */
  ready(): Promise<void> {
    if (this.phase === 'first') return this.first.then(() => this.ready());
    const refusal = this.refusal();
    return refusal === null ? Promise.resolve() : Promise.reject(refusal);
  }

  /** For the engine's `authenticate` hook: a 503 with `Retry-After` while the backplane is not up, else null. */
  upgradeRefusal(): AuthRejection | null {
    const refusal = this.phase === 'first' ? new BackplaneUnavailableError('the backplane is attaching', 1) : this.refusal();
    if (refusal === null) return null;
    // The body stays generic: the cause (a broker address, its error) is for the logs, not for whoever connects.
    return { reject: true, status: 503, headers: { 'Retry-After': String(refusal.retryAfter) }, message: 'the hub cannot reach its broker yet: retry later' };
  }

  private changed(): void {
    const health = this.health();
    if (health.backplane === this.state) return;
    this.state = health.backplane;
    this.changedAt = Date.now();
    this.host.changed({ ...health, since: this.changedAt });
  }
}
