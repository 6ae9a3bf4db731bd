/**
 * Prometheus text exposition (format 0.0.4) for the service's `GET /metrics`: counters and gauges with labels.
 *
 * @module
 */

/** One metric family: a name, its kind, its help line and its samples (label set → value). */
export interface MetricFamily {
  /** `wsengine_…`; must match `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  /**
   * Samples; a family with no labels has one sample with `labels` undefined. A histogram's samples carry their
   * `suffix` (`_bucket` with an `le` label, `_sum`, `_count`): build them with {@link histogramSamples}.
   */
  samples: ReadonlyArray<{ labels?: Readonly<Record<string, string | number>>; value: number; suffix?: '_bucket' | '_sum' | '_count' }>;
}

/**
 * The samples of a histogram from cumulative counts per upper bound (`counts[i]` observations ≤ `bounds[i]`), with
 * the `+Inf` bucket, `_sum` and `_count`; `labels` are added to each.
 */
export function histogramSamples(h: { bounds: readonly number[]; counts: readonly number[]; sum: number; count: number }, labels: Readonly<Record<string, string>> = {}): MetricFamily['samples'] {
  const out: Array<MetricFamily['samples'][number]> = [];
  h.bounds.forEach((bound, i) => out.push({ suffix: '_bucket', labels: { ...labels, le: String(bound) }, value: h.counts[i] }));
  out.push({ suffix: '_bucket', labels: { ...labels, le: '+Inf' }, value: h.count });
  out.push({ suffix: '_sum', labels, value: h.sum });
  out.push({ suffix: '_count', labels, value: h.count });
  return out;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function escapeLabel(value: string): string {
  return value.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** Renders families in the Prometheus text format, `# HELP` and `# TYPE` lines included. */
export function renderMetrics(families: readonly MetricFamily[]): string {
  let out = '';
  for (const family of families) {
    if (!NAME.test(family.name)) throw new TypeError(`invalid metric name ${JSON.stringify(family.name)}`);
    out += `# HELP ${family.name} ${family.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}\n# TYPE ${family.name} ${family.type}\n`;
    for (const sample of family.samples) {
      const labels = sample.labels ? Object.entries(sample.labels) : [];
      const labelText = labels.length === 0 ? '' : `{${labels.map(([k, v]) => `${k}="${escapeLabel(String(v))}"`).join(',')}}`;
      out += `${family.name}${sample.suffix ?? ''}${labelText} ${formatValue(sample.value)}\n`;
    }
  }
  return out;
}

/** A counter keyed by a label value (close codes, refusal reasons), bounded so a peer cannot grow it forever. */
export class LabelledCounter {
  private readonly counts = new Map<string, number>();
  /** @param maxLabels distinct label values kept; further values are counted under `other`. Default: 64. */
  constructor(private readonly maxLabels = 64) {}

  /** Adds `by` (default 1) to the count of `label`. */
  inc(label: string | number, by = 1): void {
    let key = String(label);
    if (!this.counts.has(key) && this.counts.size >= this.maxLabels) key = 'other';
    this.counts.set(key, (this.counts.get(key) ?? 0) + by);
  }

  /** The count of one label (0 if never counted). */
  get(label: string | number): number {
    return this.counts.get(String(label)) ?? 0;
  }

  /** Samples for {@link MetricFamily.samples}, with the label named `labelName`, in label order. */
  samples(labelName: string): Array<{ labels: Record<string, string>; value: number }> {
    return [...this.counts.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([label, value]) => ({ labels: { [labelName]: label }, value }));
  }
}
