/**
 * The committed baseline of the end-to-end benchmarks (`bench/baseline/e2e.json`): every table row of the last
 * full run (medians, ranges, every engine, the floor included), so that each later run can check ours against its
 * own previous figures (issue 13: "never more than 1.1× our own previous figure").
 *
 * - Written by `npm run bench -- --update-chart` (a full default run: all benchmarks replaced) and by
 *   `--update-baseline` (any run: the benchmarks it ran replace theirs; each entry records its date and whether it
 *   was quick or partial, so a seeded or partial baseline says so).
 * - Read by every run that includes an end-to-end benchmark: rows are matched by scenario id, label and metric;
 *   compared are the rates (messages, deliveries, handshakes per second), the server CPU rows and the memory per
 *   connection (RSS, JS heap). Latency percentiles, the publish loop and external memory are left out: they move
 *   more than 10 % between two runs on this machine with nothing changed.
 * - Each comparison line also gives how far the floor moved against its own baseline figure: absolute figures
 *   follow the machine (a shared VM's kernel time moves by 20 % from one hour to the next), and a regression of
 *   ours that the floor shares is the machine's, not lib/'s.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EngineName, formatBytes, formatMicros, formatRate, ratio } from './common.js';
import type { E2EReport, Row, TargetReport } from './e2e.js';

export const BASELINE_FILE = fileURLToPath(new URL('../baseline/e2e.json', import.meta.url));

/** Ours may be at most this many times worse than its baseline figure. */
export const BASELINE_TOLERANCE = 1.1;

interface BaselineRow {
  id: string;
  label: string;
  metric: string;
  unit: Row['unit'];
  better: Row['better'];
  /** Median, min and max over rounds, per engine. */
  values: Partial<Record<EngineName, { median: number; min: number; max: number }>>;
  noisy?: EngineName[];
}

interface BaselineEntry {
  /** When the run started (ISO), and how. */
  date: string;
  quick: boolean;
  only: string[];
  /** End-to-end options given on the command line (empty for a default run). */
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  config: unknown;
  engines: E2EReport['engines'];
  wallSeconds: number;
  rows: BaselineRow[];
}

export interface Baseline {
  about: string;
  benchmarks: Record<string, BaselineEntry>;
}

const ABOUT =
  'Baseline of the end-to-end benchmarks (bench/e2e/baseline.ts): every row of the last full run, medians per engine. ' +
  'Refreshed by `npm run bench -- --update-chart` (full default run) or `--update-baseline` (the benchmarks run replace theirs; ' +
  'each entry says whether it was quick or partial). Every run compares ours to it in the "project goals" section.';

export function readBaseline(path = BASELINE_FILE): Baseline | null {
  if (!existsSync(path)) return null;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Baseline;
    return typeof parsed.benchmarks === 'object' && parsed.benchmarks !== null ? parsed : null;
  } catch {
    return null;
  }
}

/** Replaces the entries of the benchmarks in `reports` (others are kept), and writes the file. */
export function writeBaseline(
  reports: Record<string, E2EReport>,
  run: { machine: Record<string, unknown>; quick: boolean; only: string[]; options: Record<string, unknown> },
  path = BASELINE_FILE,
): Baseline {
  const previous = readBaseline(path);
  const out: Baseline = { about: ABOUT, benchmarks: { ...(previous?.benchmarks ?? {}) } };
  for (const [name, report] of Object.entries(reports)) {
    out.benchmarks[name] = {
      date: String(run.machine.date),
      quick: run.quick,
      only: run.only,
      options: run.options,
      machine: run.machine,
      config: report.config,
      engines: report.engines,
      wallSeconds: Math.round(report.wallSeconds * 10) / 10,
      rows: report.rows.map((r) => ({
        id: r.id,
        label: r.label,
        metric: r.metric,
        unit: r.unit,
        better: r.better,
        values: Object.fromEntries(Object.entries(r.values).map(([e, s]) => [e, { median: s!.median, min: s!.min, max: s!.max }])),
        ...(r.noisy !== undefined && r.noisy.length > 0 ? { noisy: r.noisy } : {}),
      })),
    };
  }
  const ordered: Baseline = { about: out.about, benchmarks: Object.fromEntries(Object.entries(out.benchmarks).sort(([a], [b]) => a.localeCompare(b))) };
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(ordered, null, 2) + '\n');
  return ordered;
}

/** Rows whose figure is compared with the baseline. */
function compared(row: { metric: string; unit: Row['unit'] }): boolean {
  if (row.unit === 'rate') return row.metric !== 'achieved msg/s';
  return row.metric.startsWith('server CPU') || row.metric.startsWith('RSS') || row.metric.startsWith('JS heap');
}

function format(unit: Row['unit'], x: number): string {
  return unit === 'rate' ? formatRate(x) : unit === 'micros' ? formatMicros(x) : formatBytes(x);
}

/**
 * Ours in this run against the baseline: one summary line per benchmark compared, and one line per figure where
 * ours is more than {@link BASELINE_TOLERANCE} times worse.
 */
export function compareBaseline(reports: Record<string, E2EReport>, baseline: Baseline): TargetReport[] {
  const out: TargetReport[] = [];
  const goal = `issue 13: never more than ${BASELINE_TOLERANCE}× our own previous figure`;
  for (const [name, report] of Object.entries(reports)) {
    const entry = baseline.benchmarks[name];
    if (entry === undefined) continue;
    const kind = `${entry.date.slice(0, 10)}${entry.quick ? ', quick' : ''}${entry.only.length > 0 ? `, only ${entry.only.join(',')}` : ''}`;
    const misses: TargetReport[] = [];
    let worst = 0;
    let worstRow: { row: Row; ratio: number } | null = null;
    let n = 0;
    for (const row of report.rows) {
      if (!compared(row)) continue;
      const base = entry.rows.find((b) => b.id === row.id && b.label === row.label && b.metric === row.metric);
      const now = row.values.ours?.median;
      const then = base?.values.ours?.median;
      if (base === undefined || now === undefined || then === undefined || !(now > 0) || !(then > 0)) continue;
      n++;
      const r = now / then;
      const worse = row.better === 'lower' ? r : 1 / r;
      if (worse > worst) {
        worst = worse;
        worstRow = { row, ratio: r };
      }
      if (worse <= BASELINE_TOLERANCE) continue;
      const floorNow = row.values.floor?.median;
      const floorThen = base.values.floor?.median;
      const floorMoved = floorNow !== undefined && floorThen !== undefined && floorNow > 0 && floorThen > 0 ? floorNow / floorThen : null;
      const floorWorse = floorMoved === null ? null : row.better === 'lower' ? floorMoved : 1 / floorMoved;
      misses.push({
        target: goal,
        scenario: `${row.id} (${row.label}) ${row.metric}`,
        metric: row.metric,
        versus: 'baseline',
        ratio: r,
        threshold: row.better === 'lower' ? BASELINE_TOLERANCE : 1 / BASELINE_TOLERANCE,
        better: row.better,
        met: false,
        note:
          `${format(row.unit, now)} against ${format(row.unit, then)} on ${kind}` +
          (floorWorse === null ? '' : `; the floor ${ratio(floorMoved)} its own (${floorWorse > BASELINE_TOLERANCE ? 'the machine moved too' : 'the machine did not'})`) +
          ((row.noisy ?? []).includes('ours') ? '; ours noisy (!) in this run' : ''),
      });
    }
    if (worstRow === null) continue;
    const { row: w, ratio: wr } = worstRow;
    out.push({
      target: goal,
      scenario: `${name}, worst of ${n} figures: ${w.id} ${w.metric}`,
      metric: w.metric,
      versus: 'baseline',
      ratio: wr,
      threshold: w.better === 'lower' ? BASELINE_TOLERANCE : 1 / BASELINE_TOLERANCE,
      better: w.better,
      met: misses.length === 0,
      note: `baseline of ${kind}${misses.length > 0 ? `; ${misses.length} figure(s) more than ${BASELINE_TOLERANCE}× worse, below` : ''}`,
    });
    out.push(...misses);
  }
  return out;
}
