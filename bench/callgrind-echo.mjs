#!/usr/bin/env node
/**
 * Instructions per echoed message, as the README's Performance section measures them: an echo server (our built
 * `dist/`, or `ws` with `--ws`) runs under `valgrind --tool=callgrind`; 100 raw clients send 20 B binary messages,
 * each waiting for its echo; the counters are zeroed after 2,000 echoes and dumped after 12,000, and the dump's
 * total instructions divided by 10,000 is the figure. Not part of `npm run bench` (callgrind takes a minute or two).
 *
 *   npm run build && node bench/callgrind-echo.mjs [--ws] [--size 20] [--connections 100] [--warm 2000] [--count 10000]
 *
 * Prints one line: `instructions per echo: N`. Needs valgrind (callgrind_control) on the PATH.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};

if (args[0] === '--serve') {
  // The server child (runs under callgrind).
  const engine = args[1];
  let port;
  if (engine === 'ws') {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ port: 0, perMessageDeflate: false });
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    await new Promise((r) => wss.on('listening', r));
    port = wss.address().port;
  } else {
    const root = new URL('../dist/index.js', import.meta.url);
    const { createServer } = await import(root.href);
    const server = createServer({ heartbeat: false, perMessageDeflate: false }, (conn) => conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary })));
    port = (await server.listen(0, '127.0.0.1')).port;
  }
  process.stdout.write(`PORT ${port}\n`);
} else {
  const size = opt('--size', 20);
  const connections = opt('--connections', 100);
  const warm = opt('--warm', 2000);
  const count = opt('--count', 10000);
  const dir = mkdtempSync(join(tmpdir(), 'cg-echo-'));
  const dry = args.includes('--dry'); // no valgrind: checks the driver alone
  const serve = process.env.ECHO_SERVER ? process.env.ECHO_SERVER.split(' ') : [process.execPath, fileURLToPath(import.meta.url), '--serve', args.includes('--ws') ? 'ws' : 'ours'];
  const vg = ['--tool=callgrind', '--smc-check=all-non-file', '--dump-instr=no', `--callgrind-out-file=${dir}/cg.%p`];
  const child = dry ? spawn(serve[0], serve.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn('valgrind', [...vg, ...serve], { stdio: ['ignore', 'pipe', 'inherit'] });
  const control = (flag) => {
    if (!dry) execFileSync('callgrind_control', [flag, String(child.pid)], { stdio: 'ignore' });
  };
  const port = await new Promise((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d) => {
      text += d;
      const m = /PORT (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  const payload = Buffer.alloc(size, 0x61);
  // The client's frame (masked, with the 16- or 64-bit length past 125 bytes) and the length of the server's echo.
  const lengthField = (masked) => {
    const m = masked ? 0x80 : 0;
    if (size < 126) return Buffer.from([0x82, m | size]);
    if (size < 65536) return Buffer.from([0x82, m | 126, size >> 8, size & 0xff]);
    const h = Buffer.from([0x82, m | 127, 0, 0, 0, 0, 0, 0, 0, 0]);
    h.writeUInt32BE(size, 6);
    return h;
  };
  const frame = Buffer.concat([lengthField(true), Buffer.from([1, 2, 3, 4]), payload.map((b, i) => b ^ [1, 2, 3, 4][i & 3])]);
  const echoLength = lengthField(false).length + size;
  let echoes = 0;
  let inFlight = 0;
  let stopped = true;
  let onIdle = null;
  const clients = [];
  for (let i = 0; i < connections; i++) {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.setNoDelay(true);
    socket.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    await new Promise((r) => {
      let head = '';
      const onData = (d) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          socket.off('data', onData);
          r();
        }
      };
      socket.on('data', onData);
    });
    const c = { socket, got: 0 };
    const send = () => {
      inFlight++;
      socket.write(frame);
    };
    c.send = send;
    socket.on('data', (d) => {
      c.got += d.length;
      while (c.got >= echoLength) {
        c.got -= echoLength;
        echoes++;
        inFlight--;
        if (!stopped) send();
        else if (inFlight === 0 && onIdle) onIdle();
      }
    });
    clients.push(c);
  }
  const runUntil = (target) =>
    new Promise((resolve) => {
      stopped = false;
      const check = setInterval(() => {
        if (echoes >= target) {
          stopped = true;
          clearInterval(check);
          if (inFlight === 0) resolve();
          else onIdle = () => ((onIdle = null), resolve());
        }
      }, 1);
      for (const c of clients) if (inFlight < connections) c.send();
    });
  // Warm up, then count exactly `count` echoes between the zeroing and the dump.
  await runUntil(warm);
  control('-z');
  const start = echoes;
  await runUntil(start + count);
  const measured = echoes - start;
  control('-d');
  for (const c of clients) c.socket.destroy();
  child.kill('SIGINT');
  await new Promise((r) => child.on('exit', r));
  // `cg.PID.1` is the dump taken after the zeroing: the measured window (`cg.PID`, written at exit, is not used).
  let best = 0;
  for (const f of readdirSync(dir)) {
    if (!/^cg\.\d+\.1$/.test(f)) continue;
    const m = /^(?:summary|totals):\s+(\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
    if (m) best = Number(m[1]);
  }
  // `--keep`: leave the dumps for callgrind_annotate (the directory is printed).
  if (args.includes('--keep')) console.log(`dumps in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  console.log(`echoes measured: ${measured}; instructions per echo: ${Math.round(best / measured)}`);
}
