// Instructions per opening + closing handshake, server side, under callgrind.
//
//   node bench/handshake-instr.mjs run [ours|ws|floor] [N1] [N2]      (ours loads dist/, or HS_DIST: run `npm run build`)
//
// For each N, starts `valgrind --tool=callgrind node bench/handshake-instr.mjs server ENGINE`, opens N connections to it
// from this (unvalgrinded) process, one at a time (HS_IN_FLIGHT=k for k at a time: the count then depends on how
// many events each loop iteration batches, i.e. on the load), each: upgrade request → 101 (accept value checked) → masked close
// frame → the server's close frame and TCP close; then SIGTERMs the server, which exits, and reads callgrind's total.
// Prints (Ir(N2) − Ir(N1)) / (N2 − N1): startup, JIT warm-up and exit cancel out.
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const HOST = '127.0.0.1';
const [mode, engine = 'ours', ...rest] = process.argv.slice(2);

async function server() {
  let port;
  if (engine === 'ours') {
    // HS_DIST: another build of dist/ (a copy of an earlier one, to compare builds).
    const { createServer } = await import(process.env.HS_DIST ? `${process.env.HS_DIST}/index.js` : '../dist/index.js');
    const s = createServer({ heartbeat: false }, (c) => {
      c.on('message', (d, b) => c.send(d, { binary: b }));
      c.on('error', () => {});
    });
    port = (await s.listen(0, HOST)).port;
  } else if (engine === 'ws') {
    const require = createRequire(import.meta.url);
    const { WebSocketServer } = require('ws');
    const wss = new WebSocketServer({ host: HOST, port: 0, perMessageDeflate: false });
    wss.on('connection', (s) => {
      s.on('message', (d, b) => s.send(d, { binary: b }));
      s.on('error', () => {});
    });
    await new Promise((r) => wss.once('listening', r));
    port = wss.address().port;
  } else {
    // The floor: fixed 101 once the head's end is seen, fixed close frame for a client close; nothing parsed.
    const RESPONSE = Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`, 'latin1');
    const CLOSE = Buffer.from([0x88, 0x02, 0x03, 0xe8]);
    const s = net.createServer({ noDelay: true }, (socket) => {
      let open = false;
      socket.on('data', (chunk) => {
        if (!open) {
          const end = chunk.indexOf('\r\n\r\n');
          if (end === -1) return;
          open = true;
          socket.write(RESPONSE);
          if (end + 4 < chunk.length && chunk[end + 4] === 0x88) socket.end(CLOSE);
        } else if (chunk[0] === 0x88) socket.end(CLOSE);
      });
      socket.on('error', () => {});
    });
    await new Promise((r) => s.listen(0, HOST, r));
    port = s.address().port;
  }
  process.on('SIGTERM', () => process.exit(0));
  process.stdout.write(`PORT ${port}\n`);
}

const REQUEST = (port) =>
  Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 'latin1');
const CLIENT_CLOSE = Buffer.from([0x88, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x03 ^ 0x37, 0xe8 ^ 0xfa]);

function one(port, request) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    socket.setNoDelay(true);
    let head = '';
    let upgraded = false;
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk) => {
      if (upgraded) return;
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      if (!head.startsWith('HTTP/1.1 101') || !head.includes(ACCEPT)) return reject(new Error(head.split('\r\n')[0]));
      upgraded = true;
      socket.write(CLIENT_CLOSE);
    });
    socket.on('error', reject);
    socket.on('close', () => (upgraded ? resolve() : reject(new Error('closed before 101'))));
  });
}

async function churn(port, n, inFlight = Number(process.env.HS_IN_FLIGHT ?? 1)) {
  const request = REQUEST(port);
  let started = 0;
  const loop = async () => {
    while (started < n) {
      started++;
      await one(port, request);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
}

async function measure(n) {
  const dir = mkdtempSync(join(tmpdir(), 'hs-cg-'));
  const child = spawn('valgrind', ['--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${dir}/cg.out`, process.execPath, new URL(import.meta.url).pathname, 'server', engine], { stdio: ['ignore', 'pipe', 'pipe'] });
  let errText = '';
  child.stderr.on('data', (d) => (errText += d));
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`server exited: ${errText.slice(-2000)}`)));
  });
  await churn(port, n);
  await new Promise((r) => setTimeout(r, 200));
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
  const file = readdirSync(dir).find((f) => f.startsWith('cg.out'));
  const text = readFileSync(join(dir, file), 'latin1');
  const m = /^(?:summary|totals): (\d+)/m.exec(text);
  return Number(m[1]);
}

if (mode === 'server') await server();
else if (mode === 'client') await churn(Number(engine), Number(rest[0] ?? 10000));
else if (mode === 'run') {
  const n1 = Number(rest[0] ?? 200);
  const n2 = Number(rest[1] ?? 1000);
  const a = await measure(n1);
  const b = await measure(n2);
  console.log(`${engine}: Ir(${n1}) = ${a}, Ir(${n2}) = ${b}, per handshake (open + close) = ${Math.round((b - a) / (n2 - n1))}`);
} else {
  console.error('usage: node bench/handshake-instr.mjs run [ours|ws|floor] [N1] [N2]');
  process.exit(2);
}
