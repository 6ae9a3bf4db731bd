/**
 * Summarises an Autobahn|Testsuite report folder (the `index.json` that `wstest` writes next to its HTML
 * report) per section, lists the failing cases with their descriptions, and optionally gates the outcome
 * against a committed expected-results file.
 *
 * CLI: `tsx autobahn/summary.ts <dir> [--agent NAME] [--cases LIST] [--expected FILE] [--write-expected FILE] [--json]`
 *
 * Exit codes: 0 clean (or, with `--expected`, identical to the expected results), 1 failing cases (or
 * differences from the expected results), 2 unusable input (bad arguments, missing folder, missing or
 * malformed JSON).
 *
 * Everything the CLI does is built from the exported pure functions, so tests can call them directly.
 */
import { readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Titles of the testsuite's sections, keyed by the first number of a case id. */
export const SECTION_NAMES: Readonly<Record<number, string>> = Object.freeze({
  1: 'Framing',
  2: 'Pings/Pongs',
  3: 'Reserved Bits',
  4: 'Opcodes',
  5: 'Fragmentation',
  6: 'UTF-8 Handling',
  7: 'Close Handling',
  9: 'Limits/Performance',
  10: 'Misc',
  12: 'WebSocket Compression (different payloads)',
  13: 'WebSocket Compression (different parameters)',
});

/** The `behavior` grades the testsuite gives, in the order the summary prints them. */
export const GRADES = ['OK', 'NON-STRICT', 'INFORMATIONAL', 'UNIMPLEMENTED', 'FAILED'] as const;

/** One of {@link GRADES}. */
export type Grade = (typeof GRADES)[number];

/** One case's entry in `index.json`. */
export interface CaseResult {
  behavior: string;
  behaviorClose: string;
  duration?: number;
  remoteCloseCode?: number | null;
  reportfile?: string;
}

/** The cases of one agent: case id → result. */
export type AgentCases = Record<string, CaseResult>;

/** The whole `index.json`: agent name → its cases. */
export type AutobahnIndex = Record<string, AgentCases>;

/** Per-grade counts plus the number of cases whose closing behaviour was not fine. */
export interface Counts {
  OK: number;
  'NON-STRICT': number;
  INFORMATIONAL: number;
  UNIMPLEMENTED: number;
  FAILED: number;
  /** Cases whose `behaviorClose` is neither OK nor INFORMATIONAL. */
  closeNotOk: number;
  total: number;
}

/** Counts for one section. */
export interface SectionSummary extends Counts {
  section: number;
  name: string;
}

/** A case that makes the run fail. */
export interface FailingCase {
  id: string;
  behavior: string;
  behaviorClose: string;
  remoteCloseCode: number | null;
  /** First line of the case's description, HTML stripped, when its per-case report was readable. */
  description?: string;
}

/** The result of {@link summarize}. */
export interface Summary {
  agent: string;
  sections: SectionSummary[];
  totals: Counts;
  failing: FailingCase[];
}

/** The outcome of one case as recorded in an expected-results file (never its duration). */
export interface Outcome {
  behavior: string;
  behaviorClose: string;
}

/** An expected-results file: case id → outcome. */
export type ExpectedResults = Record<string, Outcome>;

/** One difference between a report and the expected results. */
export interface Difference {
  id: string;
  kind: 'changed' | 'missing' | 'new';
  expected?: Outcome;
  actual?: Outcome;
}

/** Thrown for unusable input (missing folder or file, malformed JSON, unknown agent); the CLI exits 2. */
export class SummaryInputError extends Error {
  override name = 'SummaryInputError';
}

/** Exit code for a clean run. */
export const EXIT_OK = 0;
/** Exit code when cases fail or the results differ from the expected ones. */
export const EXIT_FAILED = 1;
/** Exit code for unusable input. */
export const EXIT_INPUT = 2;

/**
 * Compares two dotted case ids numerically, part by part, so `1.1.9` sorts before `1.1.10` and `9.x` before
 * `10.x`; usable as an `Array.prototype.sort` comparator.
 */
export function compareCaseIds(a: string, b: string): number {
  const pa = a.split('.');
  const pb = b.split('.');
  const n = Math.max(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    if (pa[i] === undefined) return -1;
    if (pb[i] === undefined) return 1;
    const na = Number(pa[i]);
    const nb = Number(pb[i]);
    if (Number.isFinite(na) && Number.isFinite(nb)) {
      if (na !== nb) return na - nb;
    } else if (pa[i] !== pb[i]) {
      return pa[i] < pb[i] ? -1 : 1;
    }
  }
  return 0;
}

/** Returns the ids sorted numerically (see {@link compareCaseIds}), without modifying the input. */
export function sortCaseIds(ids: Iterable<string>): string[] {
  return [...ids].sort(compareCaseIds);
}

/** The section a case belongs to: the first number of its id (`12` for `12.1.10`). */
export function sectionOf(caseId: string): number {
  return Number.parseInt(caseId.split('.')[0], 10);
}

/** The display name of a section, e.g. `6 UTF-8 Handling`; unknown sections get `N (unknown section)`. */
export function sectionName(section: number): string {
  const title = SECTION_NAMES[section];
  return title === undefined ? `${section} (unknown section)` : `${section} ${title}`;
}

/** Whether a `behaviorClose` value is acceptable: OK, or INFORMATIONAL (informational by design). */
export function isCloseOk(behaviorClose: string): boolean {
  return behaviorClose === 'OK' || behaviorClose === 'INFORMATIONAL';
}

/** Whether a `behavior` value makes the run fail: FAILED, UNIMPLEMENTED, or anything not a known grade. */
export function isBehaviorFailing(behavior: string): boolean {
  return behavior === 'FAILED' || behavior === 'UNIMPLEMENTED' || !(GRADES as readonly string[]).includes(behavior);
}

/** Whether a case makes the run fail: a failing behaviour ({@link isBehaviorFailing}) or a close that is not OK. */
export function isCaseFailing(result: Outcome): boolean {
  return isBehaviorFailing(result.behavior) || !isCloseOk(result.behaviorClose);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses and validates the text of an `index.json`. Throws {@link SummaryInputError} when it is not JSON or
 * not of the shape `{ agent: { caseId: { behavior, behaviorClose, ... } } }`.
 */
export function parseIndex(text: string, source = 'index.json'): AutobahnIndex {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new SummaryInputError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isRecord(data)) {
    throw new SummaryInputError(`${source} must be an object of agents, got ${Array.isArray(data) ? 'an array' : typeof data}`);
  }
  for (const [agent, cases] of Object.entries(data)) {
    if (!isRecord(cases)) throw new SummaryInputError(`${source}: agent "${agent}" must map case ids to results`);
    for (const [id, result] of Object.entries(cases)) {
      if (!isRecord(result) || typeof result.behavior !== 'string' || typeof result.behaviorClose !== 'string') {
        throw new SummaryInputError(`${source}: case ${id} of agent "${agent}" lacks string "behavior"/"behaviorClose"`);
      }
    }
  }
  return data as AutobahnIndex;
}

/**
 * Picks one agent's cases from an index: the named one, or the only one when no name is given. Throws
 * {@link SummaryInputError} when the agent is unknown, the index is empty, or several agents need choosing.
 */
export function pickAgent(index: AutobahnIndex, agent?: string): { agent: string; cases: AgentCases } {
  const agents = Object.keys(index);
  if (agents.length === 0) throw new SummaryInputError('the report holds no agents (no case was run)');
  if (agent !== undefined) {
    if (!Object.hasOwn(index, agent)) {
      throw new SummaryInputError(`agent "${agent}" is not in the report; it holds: ${agents.join(', ')}`);
    }
    return { agent, cases: index[agent] };
  }
  if (agents.length > 1) {
    throw new SummaryInputError(`the report holds several agents (${agents.join(', ')}); choose one with --agent`);
  }
  return { agent: agents[0], cases: index[agents[0]] };
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', '#39': "'" };

/**
 * Reduces a case description to its first non-empty line of plain text: `<br>` counts as a line break,
 * other tags are dropped, common entities decoded and whitespace collapsed. Returns undefined if nothing is left.
 */
export function cleanDescription(raw: string): string | undefined {
  const text = raw.replace(/<br\s*\/?>/gi, '\n').replace(/<[^>]*>/g, '');
  for (const line of text.split(/\r?\n/)) {
    const plain = line
      .replace(/&(amp|lt|gt|quot|apos|nbsp|#39);/g, (_, name: string) => ENTITIES[name])
      .replace(/\s+/g, ' ')
      .trim();
    if (plain.length > 0) return plain;
  }
  return undefined;
}

/**
 * Reads the description of a case from its per-case report file in `dir` (only the file's base name is used).
 * Returns undefined when the file is absent, unreadable, or has no description.
 */
export function readCaseDescription(dir: string, reportfile: string | undefined): string | undefined {
  if (!reportfile) return undefined;
  try {
    const data: unknown = JSON.parse(readFileSync(path.join(dir, path.basename(reportfile)), 'utf8'));
    if (isRecord(data) && typeof data.description === 'string') return cleanDescription(data.description);
  } catch {
    // A missing or broken per-case file only costs the description.
  }
  return undefined;
}

function emptyCounts(): Counts {
  return { OK: 0, 'NON-STRICT': 0, INFORMATIONAL: 0, UNIMPLEMENTED: 0, FAILED: 0, closeNotOk: 0, total: 0 };
}

function addCase(counts: Counts, result: Outcome): void {
  const grade = (GRADES as readonly string[]).includes(result.behavior) ? (result.behavior as Grade) : 'FAILED';
  counts[grade]++;
  if (!isCloseOk(result.behaviorClose)) counts.closeNotOk++;
  counts.total++;
}

/**
 * Summarises one agent's cases: counts per section (sections in numeric order, only those present) and in
 * total, and the failing cases ({@link isCaseFailing}) in numeric order. A `behavior` outside {@link GRADES}
 * is counted as FAILED. `describe` supplies a failing case's description (e.g. {@link readCaseDescription}).
 */
export function summarize(
  agent: string,
  cases: AgentCases,
  describe?: (id: string, result: CaseResult) => string | undefined,
): Summary {
  const bySection = new Map<number, Counts>();
  const totals = emptyCounts();
  const failing: FailingCase[] = [];
  for (const id of sortCaseIds(Object.keys(cases))) {
    const result = cases[id];
    const section = sectionOf(id);
    let counts = bySection.get(section);
    if (!counts) bySection.set(section, (counts = emptyCounts()));
    addCase(counts, result);
    addCase(totals, result);
    if (isCaseFailing(result)) {
      const entry: FailingCase = {
        id,
        behavior: result.behavior,
        behaviorClose: result.behaviorClose,
        remoteCloseCode: result.remoteCloseCode ?? null,
      };
      const description = describe?.(id, result);
      if (description !== undefined) entry.description = description;
      failing.push(entry);
    }
  }
  const sections = [...bySection.entries()]
    .sort(([a], [b]) => a - b)
    .map(([section, counts]) => ({ section, name: sectionName(section), ...counts }));
  return { agent, sections, totals, failing };
}

/** The exit code a summary deserves on its own: 1 if any case fails ({@link isCaseFailing}), else 0. */
export function summaryExitCode(summary: Summary): number {
  return summary.failing.length > 0 ? EXIT_FAILED : EXIT_OK;
}

/** Renders a summary as a plain-text table of sections, a totals row and the failing cases. */
export function formatSummary(summary: Summary, source?: string): string {
  const columns = [...GRADES, 'close not OK'];
  const values = (c: Counts): number[] => [...GRADES.map((g) => c[g]), c.closeNotOk];
  const label = (s: SectionSummary): string => `${String(s.section).padStart(2)}${s.name.slice(String(s.section).length)}`;
  const nameWidth = Math.max('Section'.length, 'Total'.length, ...summary.sections.map((s) => label(s).length));
  const row = (label: string, cells: (string | number)[]): string =>
    `${label.padEnd(nameWidth)}  ${cells.map((cell, i) => String(cell).padStart(columns[i].length)).join('  ')}`;
  const lines: string[] = [];
  const where = source === undefined ? '' : ` (${source})`;
  lines.push(`Autobahn results for agent "${summary.agent}": ${summary.totals.total} cases${where}`, '');
  lines.push(row('Section', columns));
  for (const section of summary.sections) lines.push(row(label(section), values(section)));
  lines.push('-'.repeat(row('', columns).length));
  lines.push(row('Total', values(summary.totals)));
  lines.push('');
  if (summary.failing.length === 0) {
    lines.push('No failing cases.');
  } else {
    lines.push(`Failing cases (${summary.failing.length}):`);
    const idWidth = Math.max(...summary.failing.map((f) => f.id.length));
    for (const f of summary.failing) {
      const code = f.remoteCloseCode === null ? '' : `, remote close code ${f.remoteCloseCode}`;
      const what = `behavior ${f.behavior}, close ${f.behaviorClose}${code}`;
      lines.push(`  ${f.id.padEnd(idWidth)}  ${what}: ${f.description ?? '(no per-case report)'}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Extracts the outcomes ({behavior, behaviorClose}, never durations) of cases, keyed in numeric order. */
export function toExpected(cases: AgentCases): ExpectedResults {
  const expected: ExpectedResults = {};
  for (const id of sortCaseIds(Object.keys(cases))) {
    expected[id] = { behavior: cases[id].behavior, behaviorClose: cases[id].behaviorClose };
  }
  return expected;
}

/** Serialises expected results as JSON with one case per line, so changes read well in a diff. */
export function formatExpected(expected: ExpectedResults): string {
  const ids = sortCaseIds(Object.keys(expected));
  if (ids.length === 0) return '{}\n';
  const lines = ids.map((id) => {
    const { behavior, behaviorClose } = expected[id];
    return `  ${JSON.stringify(id)}: { "behavior": ${JSON.stringify(behavior)}, "behaviorClose": ${JSON.stringify(behaviorClose)} }`;
  });
  return `{\n${lines.join(',\n')}\n}\n`;
}

/**
 * Parses and validates an expected-results file (`{ caseId: { behavior, behaviorClose } }`); extra fields
 * such as durations are ignored. Throws {@link SummaryInputError} when malformed.
 */
export function parseExpected(text: string, source = 'expected results'): ExpectedResults {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new SummaryInputError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isRecord(data)) throw new SummaryInputError(`${source} must be an object of case ids`);
  const expected: ExpectedResults = {};
  for (const [id, value] of Object.entries(data)) {
    if (!isRecord(value) || typeof value.behavior !== 'string' || typeof value.behaviorClose !== 'string') {
      throw new SummaryInputError(`${source}: case ${id} lacks string "behavior"/"behaviorClose"`);
    }
    expected[id] = { behavior: value.behavior, behaviorClose: value.behaviorClose };
  }
  return expected;
}

/**
 * Compares a report's cases with expected results on {behavior, behaviorClose} only (durations and close codes
 * are ignored). Returns every difference in numeric case order: `changed` outcomes, `missing` cases (expected
 * but absent from the report) and `new` cases (in the report but not expected). `include`, when given,
 * restricts the comparison to the case ids it accepts (e.g. the `--cases` of a partial run).
 */
export function compareWithExpected(
  cases: AgentCases,
  expected: ExpectedResults,
  include: (id: string) => boolean = () => true,
): Difference[] {
  const ids = new Set([...Object.keys(cases), ...Object.keys(expected)]);
  const differences: Difference[] = [];
  for (const id of sortCaseIds(ids)) {
    if (!include(id)) continue;
    const want = Object.hasOwn(expected, id) ? expected[id] : undefined;
    const got = Object.hasOwn(cases, id) ? { behavior: cases[id].behavior, behaviorClose: cases[id].behaviorClose } : undefined;
    if (want && !got) differences.push({ id, kind: 'missing', expected: want });
    else if (got && !want) differences.push({ id, kind: 'new', actual: got });
    else if (want && got && (want.behavior !== got.behavior || want.behaviorClose !== got.behaviorClose)) {
      differences.push({ id, kind: 'changed', expected: want, actual: got });
    }
  }
  return differences;
}

function outcomeText(o: Outcome | undefined): string {
  return o ? `${o.behavior}/${o.behaviorClose}` : '-';
}

/** Renders differences from the expected results, one per line, as `behavior/behaviorClose` pairs. */
export function formatDifferences(differences: Difference[], source = 'expected results'): string {
  if (differences.length === 0) return `Results match ${source}.\n`;
  const lines = [`${differences.length} difference(s) from ${source}:`];
  for (const d of differences) {
    if (d.kind === 'changed') lines.push(`  changed  ${d.id}: expected ${outcomeText(d.expected)}, got ${outcomeText(d.actual)}`);
    else if (d.kind === 'missing') lines.push(`  missing  ${d.id}: expected ${outcomeText(d.expected)}, not in the report`);
    else lines.push(`  new      ${d.id}: got ${outcomeText(d.actual)}, not in the expected results`);
  }
  return `${lines.join('\n')}\n`;
}

const CASE_PATTERN = /^(\d+|\*)(\.(\d+|\*))*$/;

/**
 * Splits a comma-separated case list such as `"1.*, 5.*,12.1.*"` into patterns, rejecting (with
 * {@link SummaryInputError}) anything that is not dotted numbers and `*` wildcards, and empty lists.
 */
export function parseCasePatterns(list: string): string[] {
  const patterns = list
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (patterns.length === 0) throw new SummaryInputError('the case list is empty');
  for (const p of patterns) {
    if (!CASE_PATTERN.test(p)) throw new SummaryInputError(`"${p}" is not a case pattern (use e.g. 1.*, 5.2 or 12.1.*)`);
  }
  return patterns;
}

/**
 * Whether a case id is selected by any of the patterns, with the testsuite's own semantics: a pattern without
 * `*` must equal the id; with `*`, the pattern (each `*` matching anything) must match a prefix of the id.
 */
export function caseMatchesPatterns(caseId: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    if (!p.includes('*')) return p === caseId;
    const source = p
      .split('*')
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*');
    return new RegExp(`^${source}`).test(caseId);
  });
}

/**
 * Loads a report folder: checks it exists, reads and validates its `index.json` and picks the agent
 * ({@link pickAgent}). Throws {@link SummaryInputError} with a readable message on any problem.
 */
export function loadReport(dir: string, agent?: string): { agent: string; cases: AgentCases; indexPath: string } {
  let stat;
  try {
    stat = statSync(dir);
  } catch {
    throw new SummaryInputError(`report folder ${dir} does not exist`);
  }
  if (!stat.isDirectory()) throw new SummaryInputError(`${dir} is not a folder`);
  const indexPath = path.join(dir, 'index.json');
  let text: string;
  try {
    text = readFileSync(indexPath, 'utf8');
  } catch {
    throw new SummaryInputError(`${indexPath} not found: is ${dir} an Autobahn report folder, and did the run finish?`);
  }
  return { ...pickAgent(parseIndex(text, indexPath), agent), indexPath };
}

/** Options of the summary CLI. */
export interface SummaryArgs {
  dir?: string;
  agent?: string;
  cases?: string[];
  expected?: string;
  writeExpected?: string;
  json: boolean;
  help: boolean;
}

/** Usage text of the summary CLI. */
export const SUMMARY_USAGE = `Usage: tsx autobahn/summary.ts <report-dir> [options]

Summarises an Autobahn|Testsuite report folder (its index.json) per section and lists failing cases.

Options:
  --agent NAME            agent to summarise (needed only when the report holds several)
  --cases LIST            only cases matching these comma-separated patterns, e.g. "1.*,5.*,12.1.*"
  --expected FILE         compare {behavior, behaviorClose} of every case with FILE; the exit code then
                          reflects only the differences (changed, missing, new cases)
  --write-expected FILE   write FILE from this report (outcomes only, never durations)
  --json                  print the summary as JSON
  -h, --help              show this help

Exit codes: 0 clean, 1 failing cases or differences from --expected, 2 unusable input.
`;

/**
 * Reads command-line arguments one by one: `--name value`, `--name=value`, flags and positionals. Shared by the
 * summary and the runner.
 */
export class ArgReader {
  private readonly rest: string[];
  constructor(
    argv: readonly string[],
    private readonly error: (message: string) => Error,
  ) {
    this.rest = [...argv];
  }

  /** The next argument split into its name and inline value, or undefined at the end. */
  next(): { arg: string; name: string; inline: string | undefined } | undefined {
    const arg = this.rest.shift();
    if (arg === undefined) return undefined;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    return { arg, name: eq === -1 ? arg : arg.slice(0, eq), inline: eq === -1 ? undefined : arg.slice(eq + 1) };
  }

  /** The value of option `name`: inline, or the next argument (which must not be another option). */
  value(name: string, inline: string | undefined): string {
    const v = inline ?? this.rest.shift();
    if (v === undefined || v === '' || (inline === undefined && v.startsWith('--'))) throw this.error(`${name} needs a value`);
    return v;
  }
}

/** Parses the summary CLI's arguments; throws {@link SummaryInputError} on unknown or incomplete options. */
export function parseSummaryArgs(argv: readonly string[]): SummaryArgs {
  const args: SummaryArgs = { json: false, help: false };
  const reader = new ArgReader(argv, (message) => new SummaryInputError(message));
  for (let flag = reader.next(); flag !== undefined; flag = reader.next()) {
    const { arg, name, inline } = flag;
    const value = (n: string, i: string | undefined): string => reader.value(n, i);
    switch (name) {
      case '--agent':
        args.agent = value(name, inline);
        break;
      case '--cases':
        args.cases = parseCasePatterns(value(name, inline));
        break;
      case '--expected':
        args.expected = value(name, inline);
        break;
      case '--write-expected':
        args.writeExpected = value(name, inline);
        break;
      case '--json':
        args.json = true;
        break;
      case '-h':
      case '--help':
        args.help = true;
        break;
      default:
        if (arg.startsWith('-')) throw new SummaryInputError(`unknown option ${arg}`);
        if (args.dir !== undefined) throw new SummaryInputError(`only one report folder can be given (got ${args.dir} and ${arg})`);
        args.dir = arg;
    }
  }
  if (!args.help && args.dir === undefined) throw new SummaryInputError('the report folder is missing');
  if (args.expected !== undefined && args.writeExpected !== undefined) {
    throw new SummaryInputError('use either --expected or --write-expected, not both');
  }
  return args;
}

/** Where the summary CLI writes. */
export interface SummaryIO {
  out(text: string): void;
  err(text: string): void;
}

const processIO: SummaryIO = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/**
 * Runs the summary CLI with the given arguments (without the node/script part) and returns its exit code
 * instead of exiting: 0 clean, 1 failing cases or differences from `--expected`, 2 unusable input.
 * With `--expected`, known failures recorded in the expected file do not fail the run; only differences do.
 * With `--write-expected`, the file is written and the exit code is 0.
 */
export function runSummaryCli(argv: readonly string[], io: SummaryIO = processIO): number {
  let args: SummaryArgs;
  try {
    args = parseSummaryArgs(argv);
  } catch (error) {
    io.err(`summary: ${(error as Error).message}\n\n${SUMMARY_USAGE}`);
    return EXIT_INPUT;
  }
  if (args.help) {
    io.out(SUMMARY_USAGE);
    return EXIT_OK;
  }
  const dir = args.dir!;
  try {
    const report = loadReport(dir, args.agent);
    let cases = report.cases;
    const patterns = args.cases;
    if (patterns) {
      cases = Object.fromEntries(Object.entries(cases).filter(([id]) => caseMatchesPatterns(id, patterns)));
    }
    if (Object.keys(cases).length === 0) {
      throw new SummaryInputError(`no cases for agent "${report.agent}" in ${report.indexPath}${patterns ? ` match ${patterns.join(',')}` : ''}`);
    }
    const summary = summarize(report.agent, cases, (_, result) => readCaseDescription(dir, result.reportfile));
    let exitCode = summaryExitCode(summary);
    let differences: Difference[] | undefined;
    if (args.expected !== undefined) {
      let text: string;
      try {
        text = readFileSync(args.expected, 'utf8');
      } catch {
        throw new SummaryInputError(`expected-results file ${args.expected} cannot be read`);
      }
      const expected = parseExpected(text, args.expected);
      differences = compareWithExpected(cases, expected, patterns ? (id) => caseMatchesPatterns(id, patterns) : undefined);
      exitCode = differences.length > 0 ? EXIT_FAILED : EXIT_OK;
    }
    if (args.writeExpected !== undefined) {
      writeFileSync(args.writeExpected, formatExpected(toExpected(cases)));
      exitCode = EXIT_OK;
    }
    if (args.json) {
      io.out(`${JSON.stringify({ dir, ...summary, ...(differences ? { differences } : {}), exitCode }, null, 2)}\n`);
    } else {
      io.out(formatSummary(summary, dir));
      if (differences) io.out(`\n${formatDifferences(differences, args.expected)}`);
      if (args.writeExpected !== undefined) {
        io.out(`\nWrote expected results for ${summary.totals.total} cases to ${args.writeExpected}\n`);
      }
    }
    return exitCode;
  } catch (error) {
    if (error instanceof SummaryInputError) {
      io.err(`summary: ${error.message}\n`);
      return EXIT_INPUT;
    }
    throw error;
  }
}

/** Whether the module whose `import.meta.url` is given is the script node was started with. */
export function isMainModule(metaUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(metaUrl));
  } catch {
    return false;
  }
}

if (isMainModule(import.meta.url)) {
  process.exitCode = runSummaryCli(process.argv.slice(2));
}
