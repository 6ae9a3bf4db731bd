/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for tests: every problem found, as readable
 * lines (empty when the text is well formed), and the samples by series.
 */
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses `{a="x",b="y\"z"}` from `text` at `i` (just after `{`); returns the labels and the index after `}`. */
function parseLabels(text: string, i: number, problems: string[], where: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  while (i < text.length && text[i] !== '}') {
    const eq = text.indexOf('=', i);
    if (eq === -1) {
      problems.push(`${where}: a label without "="`);
      return [labels, text.length];
    }
    const name = text.slice(i, eq);
    if (!LABEL.test(name)) problems.push(`${where}: bad label name ${JSON.stringify(name)}`);
    if (text[eq + 1] !== '"') problems.push(`${where}: label ${name} value not quoted`);
    let j = eq + 2;
    let value = '';
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        const next = text[++j];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else problems.push(`${where}: bad escape \\${next} in label ${name}`);
      } else value += text[j];
    }
    if (name in labels) problems.push(`${where}: label ${name} given twice`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
  }
  return [labels, i + 1];
}

/** Checks a whole exposition. */
export function readExposition(text: string): { problems: string[]; samples: Sample[]; types: Map<string, string> } {
  const problems: string[] = [];
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const seen = new Set<string>();
  const finished = new Set<string>();
  let current: string | null = null;
  if (!text.endsWith('\n')) problems.push('the text does not end with a newline');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // another comment
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) problems.push(`${where}: bad metric name ${name}`);
      if (kind === 'HELP') {
        if (helps.has(name)) problems.push(`${where}: HELP for ${name} twice`);
        helps.add(name);
      } else {
        if (types.has(name)) problems.push(`${where}: TYPE for ${name} twice`);
        if (!TYPES.has(rest)) problems.push(`${where}: unknown type ${rest}`);
        if (finished.has(name) || seen.has(name)) problems.push(`${where}: TYPE for ${name} after its samples`);
        types.set(name, rest);
      }
      if (current !== null && current !== name) finished.add(current);
      current = name;
      return;
    }
    if (line.trim() === '') return;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    const nameEnd = brace !== -1 && brace < space ? brace : space;
    const name = line.slice(0, nameEnd);
    if (!NAME.test(name)) problems.push(`${where}: bad sample name ${JSON.stringify(name)}`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') [labels, i] = parseLabels(line, i + 1, problems, where);
    const valueText = line.slice(i).trim().split(/\s+/)[0];
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : valueText === 'NaN' ? NaN : Number(valueText);
    if (valueText === '' || (Number.isNaN(value) && valueText !== 'NaN')) problems.push(`${where}: bad value ${JSON.stringify(valueText)}`);
    const family = [...types.keys()].find((f) => name === f || ((types.get(f) === 'histogram' || types.get(f) === 'summary') && /^(.*)_(bucket|sum|count)$/.exec(name)?.[1] === f));
    if (family === undefined) problems.push(`${where}: sample ${name} without a TYPE line before it`);
    else {
      if (finished.has(family)) problems.push(`${where}: sample of ${family} after another family began (families must be contiguous)`);
      if (current !== family) {
        if (current !== null) finished.add(current);
        current = family;
      }
      if (types.get(family) === 'counter' && !name.endsWith('_total')) problems.push(`${where}: counter ${name} does not end in _total`);
      if (name.endsWith('_bucket') && types.get(family) === 'histogram' && labels.le === undefined) problems.push(`${where}: bucket without le`);
    }
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
    if (seen.has(key)) problems.push(`${where}: series ${key} twice`);
    seen.add(key);
    seen.add(name);
    samples.push({ name, labels, value });
  });
  // Histograms: cumulative buckets, +Inf = _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const groups = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      const k = JSON.stringify(rest);
      groups.set(k, [...(groups.get(k) ?? []), s]);
    }
    for (const [k, buckets] of groups) {
      const sorted = [...buckets].sort((a, b) => (a.labels.le === '+Inf' ? 1 : b.labels.le === '+Inf' ? -1 : Number(a.labels.le) - Number(b.labels.le)));
      for (let j = 1; j < sorted.length; j++) if (sorted[j].value < sorted[j - 1].value) problems.push(`${family}${k}: buckets not cumulative`);
      const inf = sorted[sorted.length - 1];
      if (inf?.labels.le !== '+Inf') problems.push(`${family}${k}: no +Inf bucket`);
      const count = samples.find((s) => s.name === `${family}_count` && JSON.stringify(s.labels) === k);
      if (count === undefined || inf?.value !== count.value) problems.push(`${family}${k}: +Inf bucket is not _count`);
    }
  }
  return { problems, samples, types };
}
