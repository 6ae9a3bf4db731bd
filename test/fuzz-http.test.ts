/**
 * The handshake fuzz target (fuzz/http.ts) as a test: (a) every `http-*` input of fuzz/corpus replays without
 * violations (and with the outcome its sidecar expects, if any), (b) a bounded fuzz run with a fixed seed finds
 * none, (c) the head parser, tokenizers and upgrade check take linear time on pathological 64 KB and 640 KB
 * inputs (by counted work, not by the clock), (d) the checker itself is shown to catch broken parsers. Any violation fails.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkUpgradeRequest } from '../lib/core/handshake.js';
import { type HeadLimits, HeadParser, type HttpHead } from '../lib/core/http1.js';
import { parseExtensions, parseProtocols } from '../lib/core/tokens.js';
import { negotiateServer, resolveDeflateOptions } from '../lib/deflate/negotiate.js';
import { createRng } from '../fuzz/core.js';
import { LINEAR_GROWTH_BOUND, workGrowth } from './helpers/work.js';
import { checkHead, checkTokens, type HeadKind, type HeadParserFactory, type HeadReport, httpCase, hostileTokenValue, runHttpCampaign } from '../fuzz/http.js';

const CORPUS = fileURLToPath(new URL('../fuzz/corpus/', import.meta.url));

interface HttpSidecar {
  target: 'http';
  kind: HeadKind | 'tokens';
  limits?: HeadLimits;
  checkSeed?: number;
  seed?: number;
  description?: string;
  expect?: { outcome: HeadReport['outcome']; handshake?: HeadReport['handshake'] };
}

t.test('(a) every http corpus input replays without violations', async (t) => {
  const files = readdirSync(CORPUS).filter((f) => f.startsWith('http-') && f.endsWith('.bin')).sort();
  t.ok(files.length >= 10, `the corpus has handshake inputs (${files.length})`);
  for (const file of files) {
    const sidecar = JSON.parse(readFileSync(join(CORPUS, file.replace(/\.bin$/, '.json')), 'utf8')) as HttpSidecar;
    const bytes = readFileSync(join(CORPUS, file));
    const rng = createRng(sidecar.checkSeed ?? sidecar.seed ?? 1);
    t.equal(sidecar.target, 'http', `${file}: sidecar of the http target`);
    if (sidecar.kind === 'tokens') {
      t.same(checkTokens(bytes.toString('latin1'), rng), [], `${file}: no violations`);
      continue;
    }
    const report = checkHead(bytes, rng, { kind: sidecar.kind, limits: sidecar.limits ?? {} });
    t.same(report.violations, [], `${file}: no violations`);
    if (sidecar.expect) {
      t.same({ outcome: report.outcome, handshake: report.handshake }, { handshake: undefined, ...sidecar.expect }, `${file}: ${sidecar.expect.outcome}${sidecar.expect.handshake ? `, ${sidecar.expect.handshake}` : ''}`);
    }
  }
});

t.test('(b) a bounded fuzz run finds no violations', async (t) => {
  // A fixed number of seeded iterations, not a time box: the same run on an idle and on a loaded machine (a few
  // seconds idle). The coverage minimums below are properties of the generator with this seed, not of speed.
  const ITERATIONS = 1500;
  const found: string[] = [];
  const stats = runHttpCampaign({
    iterations: ITERATIONS,
    seed: 0x5eed0003,
    onFinding: (f) => {
      if (found.length < 10) found.push(...f.violations.slice(0, 3).map((v) => `seed ${f.seed} (${f.kind}, ${f.bytes.length} bytes, limits ${JSON.stringify(f.limits)}): ${v}`));
    },
  });
  t.comment(
    `${stats.iterations} iterations in ${stats.elapsedMs} ms: ${stats.requests} requests, ${stats.responses} responses, ${stats.tokenValues} token values, ` +
      `${(stats.bytes / 1e6).toFixed(1)} MB; outcomes ${JSON.stringify(stats.outcomes)}, ${stats.upgrades} upgrades accepted`,
  );
  t.equal(stats.iterations, ITERATIONS, 'every iteration ran');
  t.ok(stats.requests >= 150 && stats.responses >= 100 && stats.tokenValues >= 100, 'requests, responses and token values were all checked');
  t.ok((stats.outcomes.head ?? 0) >= 50 && (stats.outcomes['400'] ?? 0) >= 50 && (stats.outcomes['431'] ?? 0) >= 20 && (stats.outcomes.incomplete ?? 0) >= 20, 'every outcome was reached');
  t.ok(stats.upgrades >= 30, `upgrades were accepted, so the handshake checks ran deep (${stats.upgrades})`);
  t.same(found, [], 'no violations');
  t.equal(stats.findings, 0, 'no failing iteration');
});

t.test('the generators are deterministic', async (t) => {
  const a = httpCase(createRng(99));
  const b = httpCase(createRng(99));
  t.same([a.kind, a.limits, a.origin], [b.kind, b.limits, b.origin], 'same kind, limits and origin for the same seed');
  t.ok(a.bytes.equals(b.bytes), 'same bytes for the same seed');
  t.equal(hostileTokenValue(createRng(5)), hostileTokenValue(createRng(5)), 'same hostile value for the same seed');
});

// ───────────────────────────── linear time ─────────────────────────────

const BIG: HeadLimits = { maxHeadSize: 4 << 20, maxHeaders: 1 << 20 };

/** Parses a head with the big limits, whole or in 16-byte chunks; returns the head or null (refused). */
function parseBig(bytes: Buffer, chunked: boolean): HttpHead | null {
  const parser = new HeadParser('request', BIG);
  try {
    if (!chunked) return parser.push(bytes);
    let head: HttpHead | null = null;
    for (let at = 0; at < bytes.length && head === null; at += 16) head = parser.push(bytes.subarray(at, at + 16));
    return head;
  } catch {
    return null;
  }
}

/** A head: the RFC 6455 request with extra lines, as latin1 bytes. */
function bigHead(extra: string, terminator = '\r\n\r\n'): Buffer {
  return Buffer.from(`GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}${terminator}`, 'latin1');
}

/** A string of about `n` characters: `unit` repeated. */
const fill = (unit: string, n: number): string => unit.repeat(Math.max(1, Math.floor(n / unit.length)));

/** Pathological inputs of about `n` bytes, and what is timed on each. */
const PATHOLOGICAL: Array<[string, (n: number) => () => void]> = [
  ['head: many short header lines', (n) => {
    const b = bigHead(fill('a:b\r\n', n - 200).slice(0, -2));
    return () => parseBig(b, false);
  }],
  ['head: many short header lines, 16-byte chunks', (n) => {
    const b = bigHead(fill('a:b\r\n', n - 200).slice(0, -2));
    return () => parseBig(b, true);
  }],
  ['head: one value of spaces and tabs', (n) => {
    const b = bigHead(`X:${fill(' \t', n - 200)}x`);
    return () => parseBig(b, false);
  }],
  ['head: CR LF CR runs, never a terminator, 16-byte chunks', (n) => {
    const b = Buffer.from(fill('\r\n\r', n), 'latin1');
    return () => parseBig(b, true);
  }],
  ['head: a line without a colon at the end', (n) => {
    const b = bigHead(`${fill('a: b\r\n', n - 220)}nocolon`);
    return () => parseBig(b, false);
  }],
  ['upgrade check: Connection of commas and Sec-WebSocket-Protocol of distinct names', (n) => {
    const head = parseBig(bigHead(`Connection: ${fill(' ,', n / 2)}\r\nSec-WebSocket-Protocol: ${Array.from({ length: Math.floor(n / 16) }, (_, i) => `p${i}`).join(', ')}`), false)!;
    return () => checkUpgradeRequest(head);
  }],
  ['parseExtensions: unclosed quoted value', (n) => {
    const v = `a; b="${fill('a', n)}`;
    return () => parseExtensions(v);
  }],
  ['parseExtensions: quoted value of escapes', (n) => {
    const v = `a; b="${fill('\\a', n)}"`;
    return () => parseExtensions(v);
  }],
  ['parseExtensions: whitespace runs around = and ;', (n) => {
    const v = `a ${fill(' ', n / 3)}; b${fill('\t', n / 3)}=${fill(' ', n / 3)}c`;
    return () => parseExtensions(v);
  }],
  ['parseExtensions: empty list elements', (n) => {
    const v = fill(' ,', n);
    return () => parseExtensions(v);
  }],
  ['parseExtensions + negotiateServer: 32 offers with long parameter values', (n) => {
    const v = Array.from({ length: 32 }, () => `permessage-deflate; client_max_window_bits=${fill('1', n / 40)}`).join(', ');
    const options = resolveDeflateOptions(true);
    return () => negotiateServer(parseExtensions(v) ?? [], options);
  }],
  ['parseProtocols: distinct names', (n) => {
    const v = Array.from({ length: Math.floor(n / 8) }, (_, i) => `p${i}`).join(', ');
    return () => parseProtocols(v);
  }],
  ['parseProtocols: separators and whitespace only', (n) => {
    const v = fill(' ,\t', n);
    return () => parseProtocols(v);
  }],
];

/**
 * Linear time, checked without a clock: the work each call does (characters read, spans searched, bytes copied,
 * array elements visited — see test/helpers/work.ts) is counted on a 64 KB and a 640 KB input. Ten times the input
 * costs about ten times the work when linear (n log n: about 12×) and about a hundred times when quadratic; the
 * counts are the same on an idle and on a loaded machine. The bound, 15×, fails anything growing faster than
 * about n^1.2 at these sizes.
 *
 * The counter sees the built-in string/buffer/array methods the parsers are made of (the four quadratic parsers of
 * the next test are caught by it); it cannot see indexed reads (`buf[i]`) or regular-expression backtracking. As a
 * backstop for those, the inputs really run: a quadratic pass over 640 KB is 10^10–10^11 steps, tens of seconds to
 * minutes, against the 120 s file timeout — while the linear parsers take milliseconds.
 */
t.test('(c) linear time on pathological 64 KB and 640 KB inputs (counted work)', async (t) => {
  for (const [name, make] of PATHOLOGICAL) {
    const { small, large, ratio } = workGrowth(make, 64 * 1024, 640 * 1024);
    t.ok(ratio < LINEAR_GROWTH_BOUND, `${name}: 640 KB costs ${ratio.toFixed(1)}× the work of 64 KB (${small} → ${large}), < ${LINEAR_GROWTH_BOUND}`);
  }
});

t.test('(c) the work count catches quadratic parsers', async (t) => {
  // Deliberately quadratic versions of what (c) checks; small sizes, since they really are quadratic.
  const broken: Array<[string, (n: number) => () => void]> = [
    ['head parser that joins every chunk and searches the terminator from the start', (n) => {
      const b = bigHead(fill('a:b\r\n', n - 200).slice(0, -2));
      return () => {
        let all = Buffer.alloc(0);
        for (let at = 0; at < b.length; at += 16) {
          all = Buffer.concat([all, b.subarray(at, at + 16)]);
          if (all.indexOf('\r\n\r\n') !== -1) break;
        }
      };
    }],
    ['protocol list that finds duplicates with Array.includes', (n) => {
      const v = Array.from({ length: Math.floor(n / 8) }, (_, i) => `p${i}`).join(', ');
      return () => {
        const out: string[] = [];
        for (const name of v.split(',')) if (!out.includes(name.trim())) out.push(name.trim());
      };
    }],
    ['quoted-string unescaped by cutting out each backslash', (n) => {
      const v = fill('\\a', n);
      return () => {
        let text = v;
        for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 92) text = text.slice(0, i) + text.slice(i + 1);
      };
    }],
    ['header lines each found by walking from the start of the head', (n) => {
      const text = bigHead(fill('a:b\r\n', n - 200).slice(0, -2)).toString('latin1');
      return () => {
        for (let line = 1, at = 0; at !== -1; line++) {
          at = 0;
          for (let k = 0; k < line && at !== -1; k++) {
            const end = text.indexOf('\r\n', at);
            at = end === -1 ? -1 : end + 2;
          }
        }
      };
    }],
  ];
  for (const [name, make] of broken) {
    const { ratio } = workGrowth(make, 1024, 10 * 1024);
    t.ok(ratio > LINEAR_GROWTH_BOUND, `${name}: 10× the input costs ${ratio.toFixed(1)}× the work, caught (> ${LINEAR_GROWTH_BOUND})`);
  }
});

// ───────────────────────────── the checker catches broken parsers ─────────────────────────────

t.test('(d) the checker catches broken parsers', async (t) => {
  const good = Buffer.from(
    'GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n',
    'latin1',
  );
  t.same(checkHead(good, createRng(1)).violations, [], 'the real parser passes');

  const wrap = (push: (inner: HeadParser, chunk: Buffer) => HttpHead | null): HeadParserFactory => (kind, limits) => {
    const inner = new HeadParser(kind, limits);
    return {
      push: (chunk) => push(inner, chunk),
      get rest() {
        return inner.rest;
      },
    };
  };
  const caught = (name: string, factory: HeadParserFactory, invariant: string, limits: HeadLimits = {}): void => {
    const { violations } = checkHead(good, createRng(1), { parser: factory, limits });
    t.ok(
      violations.some((v) => v.startsWith(invariant)),
      `${name}: caught as ${invariant}`,
      { found: violations.slice(0, 3) },
    );
  };

  caught(
    'throws a TypeError on a 1-byte chunk',
    wrap((inner, chunk) => {
      if (chunk.length === 1) throw new TypeError('boom');
      return inner.push(chunk);
    }),
    '[http no-throw]',
  );
  caught(
    'throws a HeadError with status 500',
    wrap((inner, chunk) => {
      const head = inner.push(chunk);
      if (head) throw Object.assign(new Error('x'), { name: 'HeadError', status: 500 });
      return head;
    }),
    '[http no-throw]',
  );
  caught(
    'drops the first byte of every chunk after the first',
    (kind, limits) => {
      const inner = new HeadParser(kind, limits);
      let first = true;
      return {
        push(chunk) {
          const c = first ? chunk : chunk.subarray(1);
          first = false;
          return inner.push(c);
        },
        get rest() {
          return inner.rest;
        },
      };
    },
    '[http chunking]',
  );
  caught(
    'ignores maxHeadSize',
    (kind, limits) => new HeadParser(kind, { ...limits, maxHeadSize: 1 << 20 }),
    '[http limits]',
    { maxHeadSize: 100 },
  );
  caught(
    'pollutes Object.prototype',
    wrap((inner, chunk) => {
      const head = inner.push(chunk);
      if (head) Object.defineProperty(Object.prototype, 'fuzzPolluted', { value: true, configurable: true });
      return head;
    }),
    '[http prototype]',
  );
  delete (Object.prototype as { fuzzPolluted?: boolean }).fuzzPolluted;
  caught(
    'keeps whitespace around values and upper-case names',
    wrap((inner, chunk) => {
      const head = inner.push(chunk);
      if (head) head.headers.set('X-Upper', [' padded ']);
      return head;
    }),
    '[http head]',
  );
});
