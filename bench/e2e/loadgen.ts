/**
 * Load generator child of the end-to-end benchmarks: raw `node:net` sockets, no WebSocket library.
 *
 * Kept lean so that it costs as little CPU as possible next to the server it measures:
 * - every frame it sends is built once by the orchestrator (masked, with a fixed key) and written as is;
 * - reads land in one shared buffer (`onread`), so receiving allocates nothing;
 * - received frames are not decoded: only their headers are parsed, to find where each frame ends
 *   (payloads are skipped, never copied, unmasked, inflated or validated).
 *
 * Modes (one at a time, driven over IPC by the orchestrator):
 * - echo: each connection of a group sends its frame, waits for the echo, sends again; `snapshot` reads counters;
 * - latency: paced sends at a fixed rate, round-trip time of each;
 * - fan-out: counts the frames the server broadcasts, and notes when the last subscriber got one;
 * - handshake: `concurrency` loops of connect → upgrade → close handshake → TCP close, with the time from each
 *   `net.connect` call to the end of its `101` response.
 *
 * @module
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { closeFrame, HANDSHAKE_ACCEPT, HOST, nowMicros, upgradeRequest } from './common.js';
import { serve } from './ipc.js';

/** Every socket reads into this buffer; a read is consumed before the next one lands. */
const SHARED = Buffer.allocUnsafe(256 * 1024);
const CLOSE_FRAME = closeFrame();

const HANDSHAKING = 0;
const OPEN = 1;
const CLOSING = 2;

type Mode = 'idle' | 'echo' | 'latency' | 'fanout' | 'churn';

class Conn {
  socket!: net.Socket;
  state = HANDSHAKING;
  /** Bytes of the HTTP response received so far, when it spans reads. */
  head: Buffer | null = null;
  /** Header byte 0 of the frame being read. */
  b0 = 0;
  /** Payload length of the current frame. */
  length = 0;
  /** Payload bytes of the current frame still to skip. */
  left = 0;
  /** Header bytes of a header split across reads. */
  hbuf = Buffer.allocUnsafe(14);
  hlen = 0;
  /** Echo/latency: waiting for an echo. */
  busy = false;
  /** Latency: when the message in flight was written (performance.now(), ms). */
  sentAt = 0;
  /** Latency: sends that came due while the previous message was in flight. */
  backlog = 0;
  onOpen: ((c: Conn) => void) | null = null;
  onFail: ((error: Error) => void) | null = null;
  /** When `net.connect` was called (performance.now(), ms). */
  startedAt = 0;
  /** The upgrade response's Sec-WebSocket-Extensions, when it had one. */
  extensions: string | null = null;
  constructor(readonly group: number) {}
}

let mode: Mode = 'idle';
/** Open connections per group (a group is one server). */
const groups = new Map<number, Conn[]>();
/** Connections being driven in echo/latency mode. */
let active: Conn[] = [];
let frame: Buffer = Buffer.alloc(0);
/** Expected payload length of a received data frame (-1: any); frames of another length are counted as bad. */
let expectLength = -1;
let running = false;
let busyCount = 0;
let idleWaiter: (() => void) | null = null;

/** Counters since the process started. */
let received = 0;
let compressed = 0;
let bad = 0;

// latency
let samples = new Float64Array(0);
let sampleCount = 0;
let late = 0;
let paceTimer: NodeJS.Timeout | null = null;

// fan-out
let fanPending = 0;
let fanLast = 0;
let fanWaiter: ((hr: number) => void) | null = null;

// handshake churn
let churnCount = 0;
let churnErrors = 0;
let churnActive = 0;
let churnWaiter: (() => void) | null = null;
/** Connect → end of the 101, ms, for the handshakes since `handshake-start` (the first ones that fit). */
let connectSamples = new Float64Array(0);
let connectCount = 0;

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

// ───────────────────────────── frame reading ─────────────────────────────

/** Parses the HTTP response head; returns the offset in `buf` where frames start, or -1 when more is needed. */
function readHead(c: Conn, buf: Buffer, n: number): number {
  let data = buf.subarray(0, n);
  const prefix = c.head?.length ?? 0;
  if (c.head !== null) data = Buffer.concat([c.head, data]);
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) {
    c.head = Buffer.from(data); // a copy: the shared buffer is reused by the next read
    if (c.head.length > 16384) fail(c, new Error('upgrade response head too large'));
    return -1;
  }
  c.head = null;
  const head = data.toString('latin1', 0, end);
  if (!head.startsWith('HTTP/1.1 101') || !head.includes(HANDSHAKE_ACCEPT)) {
    fail(c, new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
    return -1;
  }
  const ext = /\r\nsec-websocket-extensions:\s*([^\r\n]*)/i.exec(head);
  c.extensions = ext === null ? null : ext[1].trim();
  c.state = OPEN;
  const onOpen = c.onOpen;
  c.onOpen = null;
  c.onFail = null;
  onOpen?.(c);
  return end + 4 - prefix;
}

function onRead(c: Conn, n: number, buf: Buffer): void {
  let i = 0;
  if (c.state === HANDSHAKING) {
    i = readHead(c, buf, n);
    if (i < 0) return;
  }
  while (i < n) {
    if (c.left > 0) {
      const take = c.left < n - i ? c.left : n - i;
      c.left -= take;
      i += take;
      if (c.left === 0) frameDone(c);
      continue;
    }
    if (c.hlen === 0 && n - i >= 2) {
      const b1 = buf[i + 1];
      let length = b1 & 0x7f;
      const hs = (length === 126 ? 4 : length === 127 ? 10 : 2) + (b1 & 0x80 ? 4 : 0);
      if (n - i >= hs) {
        if (length === 126) length = buf.readUInt16BE(i + 2);
        else if (length === 127) length = buf.readUInt32BE(i + 2) * 2 ** 32 + buf.readUInt32BE(i + 6);
        c.b0 = buf[i];
        c.length = length;
        c.left = length;
        i += hs;
        if (length === 0) frameDone(c);
        continue;
      }
    }
    // A header split across reads: collect it byte by byte.
    c.hbuf[c.hlen++] = buf[i++];
    if (c.hlen >= 2) {
      const b1 = c.hbuf[1];
      let length = b1 & 0x7f;
      const hs = (length === 126 ? 4 : length === 127 ? 10 : 2) + (b1 & 0x80 ? 4 : 0);
      if (c.hlen === hs) {
        if (length === 126) length = c.hbuf.readUInt16BE(2);
        else if (length === 127) length = c.hbuf.readUInt32BE(2) * 2 ** 32 + c.hbuf.readUInt32BE(6);
        c.b0 = c.hbuf[0];
        c.hlen = 0;
        c.length = length;
        c.left = length;
        if (length === 0) frameDone(c);
      }
    }
  }
}

/** A whole frame has been read. */
function frameDone(c: Conn): void {
  const b0 = c.b0;
  const opcode = b0 & 0x0f;
  if (opcode >= 8) {
    if (opcode === 0x8 && c.state === OPEN) {
      // The server closes: answer as a client does, then wait for its TCP close.
      c.state = CLOSING;
      c.socket.write(CLOSE_FRAME);
    }
    return;
  }
  if ((b0 & 0x80) === 0) return; // a fragment: the message is not complete yet
  if (b0 & 0x40) compressed++;
  if (expectLength >= 0 && c.length !== expectLength) bad++;
  received++;
  switch (mode) {
    case 'echo':
      if (running) {
        c.socket.write(frame);
      } else if (c.busy) {
        c.busy = false;
        if (--busyCount === 0) idleWaiter?.();
      }
      return;
    case 'latency': {
      const now = performance.now();
      if (sampleCount < samples.length) samples[sampleCount++] = now - c.sentAt;
      if (c.backlog > 0 && running) {
        c.backlog--;
        c.sentAt = now;
        c.socket.write(frame);
      } else {
        c.busy = false;
        if (--busyCount === 0) idleWaiter?.();
      }
      return;
    }
    case 'fanout':
      if (--fanPending === 0) {
        fanLast = nowMicros();
        fanWaiter?.(fanLast);
      }
      return;
    default:
      return;
  }
}

function fail(c: Conn, error: Error): void {
  const onFail = c.onFail;
  c.onFail = null;
  c.onOpen = null;
  c.socket.destroy();
  onFail?.(error);
}

// ───────────────────────────── connections ─────────────────────────────

function open(port: number, group: number, extensions: string | null, onOpen: (c: Conn) => void, onFail: (e: Error) => void, onClose?: () => void): Conn {
  const c = new Conn(group);
  c.onOpen = onOpen;
  c.onFail = onFail;
  const request = upgradeRequest(port, extensions);
  c.startedAt = performance.now();
  const socket = net.connect({
    host: HOST,
    port,
    noDelay: true,
    onread: {
      buffer: SHARED,
      callback: (n: number, buf: Uint8Array): boolean => {
        onRead(c, n, buf as Buffer);
        return true;
      },
    },
  });
  c.socket = socket;
  socket.on('connect', () => socket.write(request));
  socket.on('error', (error) => {
    if (c.onFail) fail(c, error);
  });
  socket.on('close', () => {
    if (c.onFail) fail(c, new Error('closed during the handshake'));
    const list = groups.get(group);
    if (list !== undefined && c.state !== HANDSHAKING) {
      const at = list.indexOf(c);
      if (at >= 0) {
        list[at] = list[list.length - 1];
        list.pop();
      }
    }
    c.state = CLOSING;
    onClose?.();
  });
  return c;
}

/** Opens `count` connections to a server, at most `inFlight` handshakes at a time. */
function connectMany(port: number, group: number, count: number, extensions: string | null, inFlight = 128): Promise<{ opened: number; extensions: string | null; ms: number }> {
  const list = groups.get(group) ?? [];
  groups.set(group, list);
  const t0 = performance.now();
  let started = 0;
  let opened = 0;
  let negotiated: string | null = null;
  return new Promise((resolve, reject) => {
    let failed = false;
    const next = (): void => {
      if (failed) return;
      if (opened === count) {
        resolve({ opened, extensions: negotiated, ms: performance.now() - t0 });
        return;
      }
      if (started >= count) return;
      started++;
      open(
        port,
        group,
        extensions,
        (c) => {
          list.push(c);
          if (opened++ === 0) negotiated = c.extensions;
          next();
        },
        (error) => {
          failed = true;
          reject(error);
        },
      );
    };
    if (count === 0) resolve({ opened: 0, extensions: null, ms: 0 });
    for (let i = 0; i < Math.min(inFlight, count); i++) next();
  });
}

/** Closes every connection of a group with a closing handshake (client first), then waits for the TCP closes. */
function closeGroup(group: number, timeoutMs = 20_000): Promise<{ closed: number }> {
  const list = [...(groups.get(group) ?? [])];
  groups.delete(group);
  if (list.length === 0) return Promise.resolve({ closed: 0 });
  return new Promise((resolve) => {
    let left = list.length;
    const done = (): void => {
      if (--left === 0) {
        clearTimeout(timer);
        resolve({ closed: list.length });
      }
    };
    const timer = setTimeout(() => {
      for (const c of list) c.socket.destroy();
    }, timeoutMs);
    for (const c of list) {
      c.socket.once('close', done);
      if (c.state === OPEN) {
        c.state = CLOSING;
        c.socket.write(CLOSE_FRAME);
      }
    }
  });
}

function conns(group: number): Conn[] {
  const list = groups.get(group);
  if (list === undefined || list.length === 0) throw new Error(`no open connections in group ${group}`);
  return list;
}

function waitIdle(timeoutMs: number): Promise<void> {
  if (busyCount === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      idleWaiter = null;
      reject(new Error(`${busyCount} connection(s) still waiting for an echo after ${timeoutMs} ms`));
    }, timeoutMs);
    idleWaiter = () => {
      idleWaiter = null;
      clearTimeout(timer);
      resolve();
    };
  });
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ───────────────────────────── handshake churn ─────────────────────────────

function churnLoop(port: number, extensions: string | null): void {
  if (!running) {
    if (--churnActive === 0) churnWaiter?.();
    return;
  }
  let opened = false;
  open(
    port,
    -1,
    extensions,
    (c) => {
      opened = true;
      if (connectCount < connectSamples.length) connectSamples[connectCount++] = performance.now() - c.startedAt;
      c.state = CLOSING;
      c.socket.write(CLOSE_FRAME);
    },
    () => {
      churnErrors++;
    },
    () => {
      if (opened) churnCount++;
      churnLoop(port, extensions);
    },
  );
}

// ───────────────────────────── requests ─────────────────────────────

serve({
  connect(args: { port: number; group: number; count: number; extensions: string | null }) {
    return connectMany(args.port, args.group, args.count, args.extensions);
  },
  close(args: { group: number }) {
    return closeGroup(args.group);
  },
  /** Counters and clocks, read at once. */
  snapshot() {
    return { hr: nowMicros(), cpu: cpuMicros(), received, compressed, bad, handshakes: churnCount, handshakeErrors: churnErrors };
  },

  'echo-start'(args: { group: number; frame: Uint8Array; expectLength: number }) {
    if (mode !== 'idle') throw new Error(`busy (${mode})`);
    active = conns(args.group);
    frame = asBuffer(args.frame);
    expectLength = args.expectLength;
    mode = 'echo';
    running = true;
    for (const c of active) {
      c.busy = true;
      busyCount++;
      c.socket.write(frame);
    }
    return {};
  },
  async 'echo-stop'() {
    running = false;
    await waitIdle(30_000);
    mode = 'idle';
    return { received };
  },
  /** Every connection of the group sends the frame once; resolves when every echo is in. */
  async 'echo-once'(args: { group: number; frame: Uint8Array; expectLength: number }) {
    if (mode !== 'idle') throw new Error(`busy (${mode})`);
    active = conns(args.group);
    frame = asBuffer(args.frame);
    expectLength = args.expectLength;
    mode = 'echo';
    running = false;
    const before = received;
    const t0 = performance.now();
    for (const c of active) {
      c.busy = true;
      busyCount++;
      c.socket.write(frame);
    }
    await waitIdle(60_000);
    mode = 'idle';
    return { echoes: received - before, ms: performance.now() - t0 };
  },

  /**
   * Paced sends: `rate` messages per second over the group's connections in turn (message k is due at
   * t0 + k/rate). A connection still waiting for its echo when its next message is due sends it on the echo
   * (counted as late). Round-trip time: from the write to the echo's last byte.
   */
  'latency-start'(args: { group: number; frame: Uint8Array; rate: number; maxSamples: number }) {
    if (mode !== 'idle') throw new Error(`busy (${mode})`);
    active = conns(args.group);
    frame = asBuffer(args.frame);
    expectLength = -1;
    samples = new Float64Array(args.maxSamples);
    sampleCount = 0;
    late = 0;
    mode = 'latency';
    running = true;
    const t0 = performance.now();
    const perMs = args.rate / 1000;
    let k = 0;
    const tick = (): void => {
      if (!running) return;
      const now = performance.now();
      const due = Math.floor((now - t0) * perMs);
      for (; k < due; k++) {
        const c = active[k % active.length];
        if (c.busy) {
          c.backlog++;
          late++;
        } else {
          c.busy = true;
          busyCount++;
          c.sentAt = performance.now();
          c.socket.write(frame);
        }
      }
      paceTimer = setTimeout(tick, 1);
    };
    tick();
    return {};
  },
  async 'latency-stop'() {
    running = false;
    if (paceTimer !== null) clearTimeout(paceTimer);
    for (const c of active) c.backlog = 0;
    await waitIdle(30_000);
    mode = 'idle';
    const out = samples.slice(0, sampleCount);
    samples = new Float64Array(0);
    return { samples: out, late };
  },

  /** Expect one broadcast frame on every connection of the group. */
  'fanout-arm'(args: { group: number }) {
    if (mode !== 'idle' && mode !== 'fanout') throw new Error(`busy (${mode})`);
    mode = 'fanout';
    expectLength = -1;
    fanPending = (groups.get(args.group) ?? []).length;
    fanLast = 0;
    return { subscribers: fanPending };
  },
  /** Resolves with the time (monotonic µs) at which the last subscriber received the broadcast. */
  'fanout-wait'(args: { timeoutMs?: number }) {
    if (fanPending <= 0) {
      mode = 'idle';
      return { hr: fanLast };
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fanWaiter = null;
        reject(new Error(`${fanPending} subscriber(s) without the broadcast after ${args.timeoutMs ?? 30_000} ms`));
      }, args.timeoutMs ?? 30_000);
      fanWaiter = (hr) => {
        fanWaiter = null;
        clearTimeout(timer);
        mode = 'idle';
        resolve({ hr });
      };
    });
  },

  'handshake-start'(args: { port: number; concurrency: number; extensions: string | null; maxSamples?: number }) {
    if (mode !== 'idle') throw new Error(`busy (${mode})`);
    connectSamples = new Float64Array(args.maxSamples ?? 0);
    connectCount = 0;
    mode = 'churn';
    running = true;
    for (let i = 0; i < args.concurrency; i++) {
      churnActive++;
      churnLoop(args.port, args.extensions);
    }
    return {};
  },
  async 'handshake-stop'() {
    running = false;
    if (churnActive > 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${churnActive} handshake loop(s) still running after 30 s`)), 30_000);
        churnWaiter = () => {
          churnWaiter = null;
          clearTimeout(timer);
          resolve();
        };
      });
    }
    mode = 'idle';
    const samples = connectSamples.slice(0, connectCount);
    connectSamples = new Float64Array(0);
    return { handshakes: churnCount, errors: churnErrors, samples };
  },
});
