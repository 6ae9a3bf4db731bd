// Instructions per echoed message over HTTP/2 streams vs HTTP/1.1 connections (both TLS), counted by callgrind,
// which a loaded machine does not distort: `npm run build && node bench/h2/instructions.mjs [h1|h2 ...] [--echoes N]`.
//
// The server (dist/, node:http2 secure server with allowHTTP1, the engine attached with attachHttp2, echoing) runs
// under `valgrind --tool=callgrind --instr-atstart=no`; this process drives 10 WebSockets (one HTTP/2 session, or
// 10 TLS connections), each keeping 32 messages of 20 bytes in flight: 2,000 echoes of warm-up uncounted, 2,000
// counted and dumped, then N (default 20,000) counted and dumped; instructions per echo = the last dump / N.
// User-space instructions only: the syscalls' kernel time (one socket vs ten) is not in the count.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const at = args.indexOf('--echoes');
const echoes = at === -1 ? 20_000 : Number(args.splice(at, 2)[1]);
const transports = args.length > 0 ? args : ['h1', 'h2', 'h1', 'h2', 'h1', 'h2'];
const dist = new URL('../../dist/index.js', import.meta.url).href;
const { connect } = await import(dist);

const dir = mkdtempSync(join(tmpdir(), 'wsengine-h2-instructions-'));
const keyPath = join(dir, 'key.pem');
const certPath = join(dir, 'cert.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
const serverFile = join(dir, 'server.mjs');
writeFileSync(serverFile, `
import { createSecureServer } from 'node:http2';
import { readFileSync } from 'node:fs';
import { createServer } from ${JSON.stringify(dist)};
const server = createSecureServer({ key: readFileSync(${JSON.stringify(keyPath)}), cert: readFileSync(${JSON.stringify(certPath)}), allowHTTP1: true });
const wss = createServer({ noServer: true, heartbeat: false });
wss.on('connection', (conn) => conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary })));
wss.attachHttp2(server);
server.listen(0, '127.0.0.1', () => console.log('PORT', server.address().port));
`);

async function measure(transport) {
  const out = join(dir, `cg-${transport}.out`);
  for (const f of readdirSync(dir)) if (f.startsWith(`cg-${transport}.out`)) rmSync(join(dir, f));
  const child = spawn('valgrind', ['--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, serverFile], { stdio: ['ignore', 'pipe', 'ignore'] });
  let text = '';
  const port = await new Promise((resolve) => child.stdout.on('data', (c) => {
    text += c;
    const m = /PORT (\d+)/.exec(text);
    if (m) resolve(Number(m[1]));
  }));
  const tls = { ca: readFileSync(certPath) };
  const conns = await Promise.all(Array.from({ length: 10 }, () => connect(`wss://localhost:${port}/`, { http2: transport === 'h2', tls, heartbeat: false, handshakeTimeout: 120_000 })));
  if (conns.some((c) => c.transport !== (transport === 'h2' ? 'h2' : 'http/1.1'))) throw new Error(`not all over ${transport}`);
  const payload = Buffer.alloc(20, 120);
  const run = (total) => Promise.all(conns.map((c) => new Promise((resolve) => {
    const quota = total / conns.length;
    let sent = 0;
    let got = 0;
    const onMessage = () => {
      got++;
      if (got === quota) {
        c.off('message', onMessage);
        resolve();
      } else if (sent < quota) {
        sent++;
        c.send(payload, { binary: true });
      }
    };
    c.on('message', onMessage);
    for (; sent < Math.min(32, quota); sent++) c.send(payload, { binary: true });
  })));
  const control = (...a) => execFileSync('callgrind_control', [...a, String(child.pid)], { stdio: 'ignore' });
  await run(2000);
  control('-i', 'on');
  await run(2000);
  control('-d', 'warm');
  await run(echoes);
  control('-d', 'measured');
  child.kill('SIGKILL');
  const dumps = readdirSync(dir).filter((f) => f.startsWith(`cg-${transport}.out.`)).sort();
  const last = readFileSync(join(dir, dumps.at(-1)), 'utf8');
  return Number(/^(?:summary|totals): (\d+)/m.exec(last)[1]) / echoes;
}

const results = { h1: [], h2: [] };
try {
  for (const t of transports) {
    const perEcho = await measure(t);
    results[t].push(perEcho);
    console.log(`${t}: ${(perEcho / 1000).toFixed(2)} k instructions per echo`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const median = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];
if (results.h1.length > 0 && results.h2.length > 0) {
  console.log(`median: h1 ${(median(results.h1) / 1000).toFixed(2)} k, h2 ${(median(results.h2) / 1000).toFixed(2)} k, h2 / h1 ${(median(results.h2) / median(results.h1)).toFixed(2)}`);
}
process.exit(0);
