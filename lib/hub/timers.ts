/**
 * One timer for many deadlines: an indexed min-heap of (time, callback) entries behind a single `setTimeout`,
 * so a hub with 100,000 connections holds one timer for their auth deadlines and token expiries, not 100,000.
 *
 * @module
 */

/** A scheduled deadline; pass it to {@link TimerQueue.cancel}. */
export interface Deadline {
  /** When it fires, ms (the queue's clock). */
  readonly at: number;
  /** @internal position in the heap, -1 once fired or cancelled. */
  index: number;
  /** @internal */
  readonly fire: () => void;
}

/** Deadlines sharing one timer. Cancelling is O(log n); nothing is held for a cancelled deadline. */
export class TimerQueue {
  private readonly heap: Deadline[] = [];
  private timer: NodeJS.Timeout | null = null;
  private armedAt = Infinity;
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Number of pending deadlines. */
  get size(): number {
    return this.heap.length;
  }

  /** Whether the shared timer is armed (false when nothing is pending). */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Calls `fire` after `delay` ms. */
  schedule(delay: number, fire: () => void): Deadline {
    const d: Deadline = { at: this.now() + delay, index: this.heap.length, fire };
    this.heap.push(d);
    this.up(d.index);
    this.arm();
    return d;
  }

  /** Cancels a deadline (no-op when it already fired or was cancelled). */
  cancel(d: Deadline | null | undefined): void {
    if (!d || d.index < 0) return;
    const i = d.index;
    const last = this.heap.pop()!;
    d.index = -1;
    if (last !== d) {
      this.heap[i] = last;
      last.index = i;
      this.down(i);
      this.up(i);
    }
    if (this.heap.length === 0) this.disarm();
  }

  /** Cancels everything. */
  clear(): void {
    for (const d of this.heap) d.index = -1;
    this.heap.length = 0;
    this.disarm();
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.armedAt = Infinity;
  }

  private arm(): void {
    const first = this.heap[0];
    if (first === undefined) return this.disarm();
    if (this.timer !== null && this.armedAt <= first.at) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.armedAt = first.at;
    this.timer = setTimeout(() => this.run(), Math.max(0, first.at - this.now()));
    this.timer.unref();
  }

  private run(): void {
    this.timer = null;
    this.armedAt = Infinity;
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0].at <= now) {
      const d = this.heap[0];
      this.cancel(d);
      try {
        d.fire();
      } catch {
        // A failing callback must not stop the others; callers handle their own errors.
      }
    }
    this.arm();
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].at <= h[i].at) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l].at < h[m].at) m = l;
      if (r < h.length && h[r].at < h[m].at) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(a: number, b: number): void {
    const h = this.heap;
    const t = h[a];
    h[a] = h[b];
    h[b] = t;
    h[a].index = a;
    h[b].index = b;
  }
}
