/**
 * A small SVG writer for one chart: horizontal bars of ours' advantage over ws (×, log scale, 1× = parity), two
 * bars per row (against ws with its native addons, and against ws in pure JS), grouped by benchmark, with the
 * project's targets marked. No dependencies: the SVG is built as text.
 *
 * @module
 */

export interface ChartRow {
  /** Benchmark group heading (`echo — messages/s`, …). */
  group: string;
  label: string;
  /** How many times better ours is (ours/ws for rates, ws/ours for costs); >1: ours better. */
  vsNative: number | null;
  vsJs: number | null;
  /** Target advantage over ws+native, when the project set one. */
  target?: number;
}

export interface ChartOptions {
  title: string;
  subtitle: string;
}

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const COLORS = { native: '#1f5fa8', js: '#8fb8e6', target: '#d14a00', grid: '#d9d9d9', axis: '#555', text: '#222', muted: '#666' };

function fmt(x: number): string {
  return `${x.toFixed(x >= 10 ? 1 : 2)}×`;
}

export function renderChart(input: ChartRow[], options: ChartOptions): string {
  // Rows of one group together, groups in order of first appearance.
  const order = [...new Set(input.map((r) => r.group))];
  const rows = order.flatMap((g) => input.filter((r) => r.group === g));
  const labelWidth = 300;
  const plotWidth = 560;
  const valueWidth = 60;
  const left = 16;
  const plotX = left + labelWidth;
  const width = plotX + plotWidth + valueWidth + 16;
  const rowHeight = 24;
  const groupHeight = 26;
  const top = 78;

  const values = rows.flatMap((r) => [r.vsNative, r.vsJs, r.target ?? null]).filter((v): v is number => v !== null && Number.isFinite(v) && v > 0);
  const lo = Math.min(0.5, ...values.map((v) => v / 1.15));
  const hi = Math.max(2, ...values.map((v) => v * 1.15));
  const minExp = Math.floor(Math.log2(lo));
  const maxExp = Math.ceil(Math.log2(hi));
  const x = (v: number): number => plotX + ((Math.log2(Math.max(v, 2 ** minExp)) - minExp) / (maxExp - minExp)) * plotWidth;

  // Layout: a heading per group, then its rows.
  const items: ({ kind: 'group'; text: string; y: number } | { kind: 'row'; row: ChartRow; y: number })[] = [];
  let y = top;
  let lastGroup = '';
  for (const row of rows) {
    if (row.group !== lastGroup) {
      lastGroup = row.group;
      y += 6;
      items.push({ kind: 'group', text: row.group, y });
      y += groupHeight - 6;
    }
    items.push({ kind: 'row', row, y });
    y += rowHeight;
  }
  const plotBottom = y + 4;
  const height = plotBottom + 44;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="600" fill="${COLORS.text}">${escape(options.title)}</text>`);
  out.push(`<text x="${left}" y="42" fill="${COLORS.muted}">${escape(options.subtitle)}</text>`);
  // Legend.
  const ly = 58;
  out.push(`<rect x="${left}" y="${ly - 9}" width="12" height="10" fill="${COLORS.native}"/><text x="${left + 16}" y="${ly}" fill="${COLORS.text}">vs ws + bufferutil/utf-8-validate</text>`);
  out.push(`<rect x="${left + 210}" y="${ly - 9}" width="12" height="10" fill="${COLORS.js}"/><text x="${left + 226}" y="${ly}" fill="${COLORS.text}">vs ws pure JS</text>`);
  out.push(`<line x1="${left + 330}" y1="${ly - 10}" x2="${left + 330}" y2="${ly + 1}" stroke="${COLORS.target}" stroke-width="2"/><text x="${left + 336}" y="${ly}" fill="${COLORS.text}">target (vs ws+native)</text>`);
  out.push(`<text x="${plotX + plotWidth}" y="${ly}" text-anchor="end" fill="${COLORS.muted}">× better than ws (log scale) →</text>`);

  // Grid: powers of two.
  for (let e = minExp; e <= maxExp; e++) {
    const gx = x(2 ** e);
    const isOne = e === 0;
    out.push(`<line x1="${gx.toFixed(1)}" y1="${top - 4}" x2="${gx.toFixed(1)}" y2="${plotBottom}" stroke="${isOne ? COLORS.axis : COLORS.grid}" stroke-width="${isOne ? 1.5 : 1}"/>`);
    const label = e >= 0 ? `${2 ** e}×` : `1/${2 ** -e}×`;
    out.push(`<text x="${gx.toFixed(1)}" y="${plotBottom + 16}" text-anchor="middle" fill="${COLORS.muted}">${label}</text>`);
  }
  out.push(`<text x="${x(1).toFixed(1)}" y="${plotBottom + 32}" text-anchor="middle" fill="${COLORS.muted}">parity</text>`);

  for (const item of items) {
    if (item.kind === 'group') {
      out.push(`<text x="${left}" y="${item.y + 12}" font-weight="600" fill="${COLORS.text}">${escape(item.text)}</text>`);
      continue;
    }
    const { row } = item;
    const cy = item.y;
    out.push(`<text x="${plotX - 8}" y="${cy + 14}" text-anchor="end" fill="${COLORS.text}">${escape(row.label)}</text>`);
    const bar = (v: number | null, yy: number, h: number, color: string): void => {
      if (v === null || !Number.isFinite(v) || v <= 0) return;
      const x0 = x(1);
      const x1 = x(v);
      out.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${yy}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${h}" fill="${color}"><title>${escape(`${row.label}: ${fmt(v)}`)}</title></rect>`);
    };
    bar(row.vsNative, cy + 3, 9, COLORS.native);
    bar(row.vsJs, cy + 13, 6, COLORS.js);
    if (row.target !== undefined) {
      const tx = x(row.target).toFixed(1);
      out.push(`<line x1="${tx}" y1="${cy + 1}" x2="${tx}" y2="${cy + 21}" stroke="${COLORS.target}" stroke-width="2"/>`);
    }
    if (row.vsNative !== null && Number.isFinite(row.vsNative)) {
      const met = row.target === undefined ? '' : row.vsNative >= row.target ? ' ✓' : ' ✗';
      out.push(`<text x="${plotX + plotWidth + 6}" y="${cy + 12}" fill="${COLORS.text}">${fmt(row.vsNative)}${met}</text>`);
    }
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
