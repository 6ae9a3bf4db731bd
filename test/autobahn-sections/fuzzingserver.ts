/**
 * A miniature Autobahn "fuzzingserver" for testing our client: a raw TCP server that does the HTTP upgrade by hand
 * and serves the suite's protocol — `/getCaseCount` (a text message with the count), `/runCase?case=N&agent=A`
 * (case N's script, sending unmasked frames and checking what the client answers), `/updateReports?agent=A`.
 * Every frame the client sends is recorded, so a test can check that all of them were masked.
 */
import http2 from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { acceptFor, closeCodeOf, delay, describe, type Frame, header, parseHead, Peer, OP, transport } from './wire.js';

export interface FuzzCase {
  /** e.g. "5.6: fragmented text with a ping inside → pong, then echo". */
  name: string;
  /** Accept permessage-deflate for this case (plain `permessage-deflate`, no parameters). */
  deflate?: boolean;
  /** The case's script: throws (with a precise message) when the client misbehaves. Every wait is bounded. */
  run(peer: Peer): Promise<void>;
}

export interface CaseResult {
  case: number;
  name: string;
  /** Empty when the case passed. */
  error: string;
  /** Frames the client sent in this case. */
  frames: Frame[];
}

export interface Request {
  target: string;
  extensions: string | undefined;
  key: string | undefined;
  version: string | undefined;
}

/** Sends close 1000, expects the client's masked close 1000 back, then ends TCP (the server closes first). */
export async function closingHandshake(peer: Peer, ms = 3000): Promise<void> {
  peer.send({ opcode: OP.CLOSE, payload: Buffer.from([0x03, 0xe8]) });
  const f = await peer.next(ms);
  if (f.opcode !== OP.CLOSE) throw new Error(`expected the close echo, got ${describe(f)}`);
  if (closeCodeOf(f) !== 1000) throw new Error(`expected close 1000 echoed, got ${closeCodeOf(f)}`);
}

export class FuzzingServer {
  readonly requests: Request[] = [];
  readonly results: CaseResult[] = [];
  readonly problems: string[] = [];
  updated = false;
  private readonly sockets = new Set<Socket>();
  private server: Server | http2.Http2Server | null = null;
  port = 0;

  constructor(readonly cases: FuzzCase[]) {}

  async listen(): Promise<number> {
    const server = (this.server = transport() === 'h2' ? this.h2server() : createNetServer((socket) => this.accept(socket)));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : 0;
    return this.port;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server?.close();
  }

  /** Over HTTP/2 (`AUTOBAHN_TRANSPORT=h2`): an h2c server answering each extended CONNECT (RFC 8441) with a 200. */
  private h2server(): http2.Http2Server {
    const server = http2.createServer({ settings: { enableConnectProtocol: true } });
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);
      const target = String(headers[':path'] ?? '');
      const request: Request = { target, extensions: one(headers['sec-websocket-extensions']), key: undefined, version: one(headers['sec-websocket-version']) };
      this.requests.push(request);
      if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket') {
        this.problems.push(`bad extended CONNECT for ${target}`);
        stream.respond({ ':status': 400 }, { endStream: true });
        return;
      }
      const url = new URL(target, 'http://fuzzingserver');
      const caseNumber = url.pathname === '/runCase' ? Number(url.searchParams.get('case')) : 0;
      const theCase = this.cases[caseNumber - 1];
      stream.respond({ ':status': 200, ...(theCase?.deflate ? { 'sec-websocket-extensions': 'permessage-deflate' } : {}) });
      void this.serve(url, caseNumber, theCase, new Peer(stream, 'server', undefined, null));
    });
    return server;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), 5000);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseHead(buffered);
      if (parsed === null) return;
      clearTimeout(timer);
      socket.off('data', onData);
      const [method, target] = parsed.head.startLine.split(' ');
      const key = header(parsed.head, 'sec-websocket-key');
      const request: Request = {
        target,
        extensions: header(parsed.head, 'sec-websocket-extensions'),
        key,
        version: header(parsed.head, 'sec-websocket-version'),
      };
      this.requests.push(request);
      if (method !== 'GET' || key === undefined || !/websocket/i.test(header(parsed.head, 'upgrade') ?? '')) {
        this.problems.push(`bad upgrade request for ${target}`);
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const url = new URL(target, 'http://fuzzingserver');
      const caseNumber = url.pathname === '/runCase' ? Number(url.searchParams.get('case')) : 0;
      const theCase = this.cases[caseNumber - 1];
      const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${acceptFor(key)}`];
      if (theCase?.deflate) lines.push('Sec-WebSocket-Extensions: permessage-deflate');
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      const peer = new Peer(socket, 'server', parsed.rest);
      void this.serve(url, caseNumber, theCase, peer);
    };
    socket.on('data', onData);
  }

  private async serve(url: URL, caseNumber: number, theCase: FuzzCase | undefined, peer: Peer): Promise<void> {
    try {
      if (url.pathname === '/getCaseCount') {
        peer.send({ opcode: OP.TEXT, payload: String(this.cases.length) });
        await closingHandshake(peer);
      } else if (url.pathname === '/runCase') {
        const result: CaseResult = { case: caseNumber, name: theCase?.name ?? '?', error: '', frames: peer.frames };
        this.results.push(result);
        if (url.searchParams.get('agent') !== 'wsengine') result.error = `agent ${url.searchParams.get('agent')}`;
        if (theCase === undefined) result.error = `no case ${caseNumber}`;
        else {
          try {
            await theCase.run(peer);
          } catch (e) {
            result.error = (e as Error).message;
          }
        }
      } else if (url.pathname === '/updateReports') {
        this.updated = url.searchParams.get('agent') === 'wsengine';
        await closingHandshake(peer);
      } else {
        this.problems.push(`unexpected request ${url.pathname}`);
      }
    } catch (e) {
      this.problems.push(`${url.pathname}: ${(e as Error).message}`);
    } finally {
      // The server closes the TCP connection first (RFC 6455 §7.1.1); destroy it if the client does not follow.
      peer.socket.end();
      if (!(await peer.waitClosed(2000))) peer.destroy();
      await delay(0);
    }
  }
}

/** The next complete message (or control frame) from the client; throws on an unmasked frame or a timeout. */
export async function readMessage(peer: Peer, ms = 3000): Promise<{ opcode: number; payload: Buffer; compressed: boolean }> {
  let open: { opcode: number; compressed: boolean; parts: Buffer[] } | null = null;
  for (;;) {
    const f = await peer.next(ms);
    if (!f.masked) throw new Error(`client sent an unmasked frame: ${describe(f)}`);
    if (f.opcode >= 8) return { opcode: f.opcode, payload: f.payload, compressed: false };
    if (f.opcode === OP.CONT) {
      if (open === null) throw new Error('client sent a continuation with no message open');
      open.parts.push(f.payload);
    } else {
      if (open !== null) throw new Error('client started a message inside a fragmented one');
      open = { opcode: f.opcode, compressed: f.rsv1, parts: [f.payload] };
    }
    if (f.fin) return { opcode: open.opcode, payload: Buffer.concat(open.parts), compressed: open.compressed };
  }
}
