/**
 * A fixed-bucket histogram (Prometheus style: cumulative counts per upper bound, a sum and a count), cheap enough
 * for once-per-publication use on the hub's hot path: `observe` is a short loop over at most a dozen bounds.
 *
 * @module
 */

/** A histogram snapshot: `counts[i]` is how many observations were ≤ `bounds[i]` (cumulative); then `+Inf` = `count`. */
export interface HistogramSnapshot {
  /** Upper bounds, ascending, in the histogram's unit. */
  bounds: readonly number[];
  /** Cumulative counts per bound. */
  counts: number[];
  /** Sum of the observations. */
  sum: number;
  /** Number of observations. */
  count: number;
}

/** Default bounds of the hub's latency histograms, in seconds: 0.5 ms to 10 s. */
export const LATENCY_BOUNDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** A histogram with fixed bounds. */
export class Histogram {
  readonly bounds: readonly number[];
  private readonly buckets: number[];
  private sum = 0;
  private count = 0;

  /** @param bounds ascending upper bounds (default {@link LATENCY_BOUNDS}, seconds). */
  constructor(bounds: readonly number[] = LATENCY_BOUNDS) {
    for (let i = 1; i < bounds.length; i++) if (!(bounds[i] > bounds[i - 1])) throw new RangeError('histogram bounds must be ascending');
    this.bounds = bounds;
    this.buckets = new Array<number>(bounds.length).fill(0);
  }

  /** Records one observation. */
  observe(value: number): void {
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.buckets[i]++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }

  /** The cumulative snapshot. */
  snapshot(): HistogramSnapshot {
    const counts: number[] = [];
    let running = 0;
    for (const n of this.buckets) counts.push((running += n));
    return { bounds: this.bounds, counts, sum: this.sum, count: this.count };
  }
}
