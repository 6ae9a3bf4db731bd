import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  caseMatchesPatterns,
  cleanDescription,
  compareCaseIds,
  compareWithExpected,
  formatExpected,
  formatSummary,
  isCaseFailing,
  isCloseOk,
  loadReport,
  parseCasePatterns,
  parseExpected,
  parseIndex,
  pickAgent,
  readCaseDescription,
  runSummaryCli,
  sectionName,
  sectionOf,
  sortCaseIds,
  summarize,
  summaryExitCode,
  SummaryInputError,
  toExpected,
  type AgentCases,
} from '../autobahn/summary.js';

const FIXTURE = path.resolve(import.meta.dirname, 'fixtures/autobahn');
const SUMMARY_SCRIPT = path.resolve(import.meta.dirname, '../autobahn/summary.ts');
/** A real Autobahn report (ws 8.23 as the server), kept in the repository: the index and the one case report read. */
const WS_REPORT = path.resolve(import.meta.dirname, 'fixtures/autobahn-ws-8.23-server');

function capture(): { out: string; err: string; io: { out(text: string): void; err(text: string): void } } {
  const result = {
    out: '',
    err: '',
    io: {
      out: (text: string) => void (result.out += text),
      err: (text: string) => void (result.err += text),
    },
  };
  return result;
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'autobahn-summary-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function fixtureSummary() {
  const report = loadReport(FIXTURE);
  return summarize(report.agent, report.cases, (_, result) => readCaseDescription(FIXTURE, result.reportfile));
}

t.test('case ids sort numerically, part by part', async (t) => {
  t.same(sortCaseIds(['1.1.10', '10.1.1', '1.1.9', '2.10', '9.2', '2.9', '1.1', '12.1.10', '12.1.9']), [
    '1.1',
    '1.1.9',
    '1.1.10',
    '2.9',
    '2.10',
    '9.2',
    '10.1.1',
    '12.1.9',
    '12.1.10',
  ]);
  t.ok(compareCaseIds('1.1.9', '1.1.10') < 0);
  t.ok(compareCaseIds('10.1.1', '9.8.6') > 0);
  t.equal(compareCaseIds('7.1.6', '7.1.6'), 0);
  const input = ['2.10', '2.9'];
  sortCaseIds(input);
  t.same(input, ['2.10', '2.9'], 'input left untouched');
});

t.test('sections are the first number of the case id', async (t) => {
  t.equal(sectionOf('12.1.10'), 12);
  t.equal(sectionOf('2.9'), 2);
  t.equal(sectionName(6), '6 UTF-8 Handling');
  t.equal(sectionName(13), '13 WebSocket Compression (different parameters)');
  t.equal(sectionName(11), '11 (unknown section)');
});

t.test('close behaviour and failing cases', async (t) => {
  t.ok(isCloseOk('OK'));
  t.ok(isCloseOk('INFORMATIONAL'), 'INFORMATIONAL close counts as fine');
  for (const bad of ['FAILED', 'UNCLEAN', 'WRONG CODE', 'FAILED BY CLIENT']) t.notOk(isCloseOk(bad), bad);
  t.notOk(isCaseFailing({ behavior: 'NON-STRICT', behaviorClose: 'OK' }));
  t.notOk(isCaseFailing({ behavior: 'INFORMATIONAL', behaviorClose: 'INFORMATIONAL' }));
  t.ok(isCaseFailing({ behavior: 'UNIMPLEMENTED', behaviorClose: 'OK' }));
  t.ok(isCaseFailing({ behavior: 'FAILED', behaviorClose: 'OK' }));
  t.ok(isCaseFailing({ behavior: 'OK', behaviorClose: 'WRONG CODE' }));
  t.ok(isCaseFailing({ behavior: 'SOMETHING NEW', behaviorClose: 'OK' }), 'unknown grades fail');
});

t.test('fixture: counts per section and in total', async (t) => {
  const summary = fixtureSummary();
  t.equal(summary.agent, 'wsengine');
  t.same(
    summary.sections.map((s) => s.section),
    [1, 2, 5, 6, 7, 9, 10, 12, 13],
    'sections present, in numeric order',
  );
  const section = (n: number) => summary.sections.find((s) => s.section === n)!;
  t.match(section(1), { name: '1 Framing', OK: 2, 'NON-STRICT': 0, FAILED: 0, closeNotOk: 0, total: 2 });
  t.match(section(6), { OK: 0, 'NON-STRICT': 1, closeNotOk: 0, total: 1 });
  t.match(section(7), { name: '7 Close Handling', OK: 1, INFORMATIONAL: 1, closeNotOk: 1, total: 2 });
  t.match(section(9), { FAILED: 1, closeNotOk: 1, total: 1 });
  t.match(section(12), { OK: 1, UNIMPLEMENTED: 1, closeNotOk: 0, total: 2 });
  t.match(section(13), { UNIMPLEMENTED: 1, total: 1 });
  t.same(summary.totals, { OK: 9, 'NON-STRICT': 1, INFORMATIONAL: 1, UNIMPLEMENTED: 2, FAILED: 1, closeNotOk: 2, total: 14 });
});

t.test('fixture: failing cases in numeric order with descriptions', async (t) => {
  const summary = fixtureSummary();
  t.same(
    summary.failing.map((f) => f.id),
    ['7.5.1', '9.3.1', '12.1.10', '13.1.1'],
  );
  t.same(summary.failing[0], {
    id: '7.5.1',
    behavior: 'OK',
    behaviorClose: 'UNCLEAN',
    remoteCloseCode: null,
    description: 'Send a close frame whose reason is not valid UTF-8 & expect the peer to fail the connection.',
  });
  t.equal(summary.failing[1].description, 'Send a 4 MiB text message split into fragments of 64 octets.');
  t.equal(summary.failing[1].remoteCloseCode, 1008);
  t.equal(summary.failing[2].description, undefined, 'no per-case file, no description');
  t.equal(summaryExitCode(summary), 1);

  const text = formatSummary(summary, FIXTURE);
  t.match(text, /^ 7 Close Handling\s+1\s+0\s+1\s+0\s+0\s+1$/m);
  t.match(text, /^Total\s+9\s+1\s+1\s+2\s+1\s+2$/m);
  t.match(text, /Failing cases \(4\):/);
  t.match(text, /9\.3\.1\s+behavior FAILED, close FAILED, remote close code 1008: Send a 4 MiB text message/);
  t.match(text, /12\.1\.10\s+behavior UNIMPLEMENTED, close OK, remote close code 1000: \(no per-case report\)/);
  const order = ['7.5.1 ', '9.3.1 ', '12.1.10 ', '13.1.1 '].map((id) => text.indexOf(`  ${id}`));
  t.ok(order.every((at, i) => at > 0 && (i === 0 || at > order[i - 1])), 'listed in numeric order');
});

t.test('descriptions: first line, HTML stripped', async (t) => {
  t.equal(
    readCaseDescription(FIXTURE, 'wsengine_case_6_4_1.json'),
    'Send a text message in three fragments whose second fragment makes the UTF-8 invalid.',
  );
  t.equal(readCaseDescription(FIXTURE, 'wsengine_case_1_1_1.json'), undefined, 'absent file');
  t.equal(readCaseDescription(FIXTURE, undefined), undefined);
  t.equal(cleanDescription('<br/>\n  <i>Send</i>   a ping&nbsp;&lt;125&gt; \nsecond line'), 'Send a ping <125>');
  t.equal(cleanDescription('first<br>second'), 'first');
  t.equal(cleanDescription('<p></p>\n'), undefined);
});

t.test('exit codes from the exported functions', async (t) => {
  const cases = (entries: Record<string, [string, string]>): AgentCases =>
    Object.fromEntries(Object.entries(entries).map(([id, [behavior, behaviorClose]]) => [id, { behavior, behaviorClose }]));
  t.equal(summaryExitCode(summarize('a', cases({ '1.1.1': ['OK', 'OK'] }))), 0);
  t.equal(
    summaryExitCode(summarize('a', cases({ '6.4.1': ['NON-STRICT', 'OK'], '7.13.1': ['INFORMATIONAL', 'INFORMATIONAL'] }))),
    0,
    'NON-STRICT and INFORMATIONAL pass',
  );
  t.equal(summaryExitCode(summarize('a', cases({ '12.1.1': ['UNIMPLEMENTED', 'OK'] }))), 1);
  t.equal(summaryExitCode(summarize('a', cases({ '1.1.1': ['FAILED', 'OK'] }))), 1);
  t.equal(summaryExitCode(summarize('a', cases({ '7.9.1': ['OK', 'WRONG CODE'] }))), 1);
});

t.test('parseIndex and pickAgent reject bad input', async (t) => {
  t.throws(() => parseIndex('{not json'), SummaryInputError);
  t.throws(() => parseIndex('[]'), /must be an object of agents/);
  t.throws(() => parseIndex('{"a": {"1.1.1": {"behavior": "OK"}}}'), /behaviorClose/);
  t.throws(() => pickAgent({}), /no agents/);
  const two = parseIndex('{"a": {}, "b": {}}');
  t.throws(() => pickAgent(two), /several agents \(a, b\)/);
  t.throws(() => pickAgent(two, 'c'), /agent "c" is not in the report/);
  t.equal(pickAgent(two, 'b').agent, 'b');
});

t.test('case patterns follow the suite semantics', async (t) => {
  t.same(parseCasePatterns(' 1.*, 5.*,,12.1.* '), ['1.*', '5.*', '12.1.*']);
  t.throws(() => parseCasePatterns(' , '), /empty/);
  t.throws(() => parseCasePatterns('1.x'), /not a case pattern/);
  t.ok(caseMatchesPatterns('1.1.1', ['1.*']));
  t.notOk(caseMatchesPatterns('10.1.1', ['1.*']), '1.* is not 10.*');
  t.notOk(caseMatchesPatterns('12.1.1', ['1.*']));
  t.ok(caseMatchesPatterns('12.1.10', ['12.1.*']));
  t.ok(caseMatchesPatterns('13.7.18', ['*']));
  t.ok(caseMatchesPatterns('9.3.1', ['9.3.1']));
  t.notOk(caseMatchesPatterns('9.3.10', ['9.3.1']), 'exact ids match exactly');
  t.ok(caseMatchesPatterns('6.4.2', ['1.*', '6.*.2']));
});

t.test('expected results: outcomes only, every difference listed', async (t) => {
  const { cases } = loadReport(FIXTURE);
  const expected = toExpected(cases);
  t.same(Object.keys(expected), sortCaseIds(Object.keys(cases)), 'numeric order');
  t.same(expected['9.3.1'], { behavior: 'FAILED', behaviorClose: 'FAILED' }, 'no duration, no close code');
  t.same(parseExpected(formatExpected(expected)), expected, 'round trip');
  t.same(compareWithExpected(cases, expected), [], 'identical');

  const slower = Object.fromEntries(
    Object.entries(cases).map(([id, r]) => [id, { ...r, duration: (r.duration ?? 0) * 10 + 99, remoteCloseCode: 1001 }]),
  );
  t.same(compareWithExpected(slower, expected), [], 'durations (and close codes) are ignored');

  const changed = { ...expected, '1.1.1': { behavior: 'FAILED', behaviorClose: 'OK' } };
  delete (changed as Record<string, unknown>)['2.9'];
  const withExtra = { ...changed, '4.1.1': { behavior: 'OK', behaviorClose: 'OK' } };
  t.same(compareWithExpected(cases, withExtra), [
    { id: '1.1.1', kind: 'changed', expected: { behavior: 'FAILED', behaviorClose: 'OK' }, actual: { behavior: 'OK', behaviorClose: 'OK' } },
    { id: '2.9', kind: 'new', actual: { behavior: 'OK', behaviorClose: 'OK' } },
    { id: '4.1.1', kind: 'missing', expected: { behavior: 'OK', behaviorClose: 'OK' } },
  ]);
  t.same(
    compareWithExpected(cases, withExtra, (id) => caseMatchesPatterns(id, ['1.*'])).map((d) => d.id),
    ['1.1.1'],
    'restricted to the selected cases',
  );
  t.throws(() => parseExpected('{"1.1.1": {"behavior": "OK"}}'), /behaviorClose/);
  t.throws(() => parseExpected('nope'), /not valid JSON/);
});

t.test('CLI (in-process): summary, --json, --cases', async (t) => {
  const run = capture();
  t.equal(runSummaryCli([FIXTURE], run.io), 1, 'failing cases exit 1');
  t.match(run.out, /Autobahn results for agent "wsengine": 14 cases/);
  t.match(run.out, /Failing cases \(4\):/);
  t.equal(run.err, '');

  const json = capture();
  t.equal(runSummaryCli([FIXTURE, '--json'], json.io), 1);
  const parsed = JSON.parse(json.out);
  t.same(parsed.totals, { OK: 9, 'NON-STRICT': 1, INFORMATIONAL: 1, UNIMPLEMENTED: 2, FAILED: 1, closeNotOk: 2, total: 14 });
  t.same(
    parsed.failing.map((f: { id: string }) => f.id),
    ['7.5.1', '9.3.1', '12.1.10', '13.1.1'],
  );
  t.equal(parsed.exitCode, 1);

  const clean = capture();
  t.equal(runSummaryCli([FIXTURE, '--cases', '1.*,2.*,6.*'], clean.io), 0, 'only passing cases selected');
  t.match(clean.out, /: 5 cases/);
  t.match(clean.out, /No failing cases\./);

  const compression = capture();
  t.equal(runSummaryCli([FIXTURE, '--cases=12.*', '--agent', 'wsengine'], compression.io), 1);
  t.match(compression.out, /2 cases/);
  t.notMatch(compression.out, /Framing/);

  const help = capture();
  t.equal(runSummaryCli(['--help'], help.io), 0);
  t.match(help.out, /Usage: tsx autobahn\/summary\.ts/);
});

t.test('CLI (in-process): unusable input exits 2 with a clear message', async (t) => {
  const dir = tempDir(t);
  const check = (argv: string[], message: RegExp, name: string) => {
    const run = capture();
    t.equal(runSummaryCli(argv, run.io), 2, name);
    t.match(run.err, message, name);
    t.equal(run.out, '', `${name}: nothing on stdout`);
  };
  check([path.join(dir, 'absent')], /report folder .*absent does not exist/, 'missing folder');
  check([dir], /index\.json not found/, 'missing index.json');
  writeFileSync(path.join(dir, 'index.json'), '{"wsengine": {"1.1.1": ');
  check([dir], /index\.json is not valid JSON/, 'malformed JSON');
  writeFileSync(path.join(dir, 'index.json'), '"just a string"');
  check([dir], /must be an object of agents/, 'wrong shape');
  check([FIXTURE, '--agent', 'ws'], /agent "ws" is not in the report; it holds: wsengine/, 'unknown agent');
  check([FIXTURE, '--cases', '4.*'], /no cases for agent "wsengine".* match 4\.\*/, 'nothing selected');
  check([FIXTURE, '--frobnicate'], /unknown option --frobnicate/, 'unknown option');
  check([], /the report folder is missing/, 'no folder');
  check([FIXTURE, '--expected', path.join(dir, 'nope.json')], /expected-results file .*nope\.json cannot be read/, 'missing expected file');
  check([FIXTURE, '--expected', 'a', '--write-expected', 'b'], /either --expected or --write-expected/, 'both');
});

t.test('CLI (in-process): --write-expected then --expected gates on differences only', async (t) => {
  const dir = tempDir(t);
  const expectedFile = path.join(dir, 'expected.json');

  const write = capture();
  t.equal(runSummaryCli([FIXTURE, '--write-expected', expectedFile], write.io), 0);
  t.match(write.out, /Wrote expected results for 14 cases/);
  const written = JSON.parse(readFileSync(expectedFile, 'utf8'));
  t.same(written['12.1.10'], { behavior: 'UNIMPLEMENTED', behaviorClose: 'OK' });
  t.notMatch(readFileSync(expectedFile, 'utf8'), /duration/);

  const same = capture();
  t.equal(runSummaryCli([FIXTURE, '--expected', expectedFile], same.io), 0, 'identical outcomes pass, known failures included');
  t.match(same.out, /Results match/);

  // The same outcomes with other durations: still identical.
  const report = path.join(dir, 'report');
  const index = JSON.parse(readFileSync(path.join(FIXTURE, 'index.json'), 'utf8'));
  for (const result of Object.values(index.wsengine) as { duration: number }[]) result.duration += 1234;
  mkdirSync(report);
  writeFileSync(path.join(report, 'index.json'), JSON.stringify(index));
  t.equal(runSummaryCli([report, '--expected', expectedFile], capture().io), 0, 'duration changes ignored');

  // A changed behaviour fails and is listed, as are missing and new cases.
  index.wsengine['1.1.2'].behavior = 'FAILED';
  index.wsengine['5.20'].behaviorClose = 'UNCLEAN';
  delete index.wsengine['2.9'];
  index.wsengine['3.1'] = { behavior: 'OK', behaviorClose: 'OK', duration: 1, remoteCloseCode: 1000, reportfile: 'x.json' };
  writeFileSync(path.join(report, 'index.json'), JSON.stringify(index));
  const diff = capture();
  t.equal(runSummaryCli([report, '--expected', expectedFile], diff.io), 1);
  t.match(diff.out, /4 difference\(s\) from/);
  t.match(diff.out, /changed\s+1\.1\.2: expected OK\/OK, got FAILED\/OK/);
  t.match(diff.out, /missing\s+2\.9: expected OK\/OK, not in the report/);
  t.match(diff.out, /new\s+3\.1: got OK\/OK, not in the expected results/);
  t.match(diff.out, /changed\s+5\.20: expected OK\/OK, got OK\/UNCLEAN/);
  const lines = diff.out.split('\n').filter((l) => /^\s+(changed|missing|new)/.test(l));
  t.same(
    lines.map((l) => l.trim().split(/\s+/)[1].replace(':', '')),
    ['1.1.2', '2.9', '3.1', '5.20'],
    'differences in numeric order',
  );

  const json = capture();
  t.equal(runSummaryCli([report, '--expected', expectedFile, '--json'], json.io), 1);
  t.equal(JSON.parse(json.out).differences.length, 4);
});

t.test('CLI (spawned with node --import tsx)', async (t) => {
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', SUMMARY_SCRIPT, FIXTURE], (_error, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
  t.equal(result.code, 1, 'exit code 1 for the failing fixture');
  t.match(result.stdout, /Total\s+9\s+1\s+1\s+2\s+1\s+2/);
  t.match(result.stdout, /7\.5\.1\s+behavior OK, close UNCLEAN: Send a close frame/);
});

t.test('the real ws 8.23 report', async (t) => {
  const report = loadReport(WS_REPORT);
  t.equal(report.agent, 'ws');
  const summary = summarize(report.agent, report.cases, (_, r) => readCaseDescription(WS_REPORT, r.reportfile));
  t.same(summary.totals, { OK: 506, 'NON-STRICT': 4, INFORMATIONAL: 3, UNIMPLEMENTED: 0, FAILED: 4, closeNotOk: 4, total: 517 });
  t.same(
    summary.failing.map((f) => f.id),
    ['9.3.1', '9.3.2', '9.4.1', '9.4.2'],
  );
  t.match(summary.failing[0].description, /^Send fragmented text message .* 4 \* 2\*\*20 \(4M\)\. Sent out in fragments of 64\.$/);
  t.match(summary.sections.find((s) => s.section === 6), { OK: 141, 'NON-STRICT': 4 });
  t.match(summary.sections.find((s) => s.section === 7), { OK: 34, INFORMATIONAL: 3, closeNotOk: 0 });
  t.equal(summaryExitCode(summary), 1);
});
