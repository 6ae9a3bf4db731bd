/** Shared pieces of the HTTP/2 (RFC 8441) tests: the committed self-signed certificate and node:http2 client helpers. */
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/tls');

/** A self-signed P-256 certificate for localhost and 127.0.0.1 (test/fixtures/tls, valid ten years from 2026). */
export const TLS = {
  key: readFileSync(path.join(FIXTURES, 'localhost-key.pem')),
  cert: readFileSync(path.join(FIXTURES, 'localhost-cert.pem')),
};

/** Client TLS options that trust the fixture certificate. */
export const CLIENT_TLS = { ca: TLS.cert };

/** Opens a node:http2 client session and waits for the server's SETTINGS. */
export async function h2session(url: string, options: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url, { ca: TLS.cert, ...options });
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  });
  return session;
}

/** The extended CONNECT headers of a WebSocket (RFC 8441 §4), with `extra` added. */
export function connectHeaders(path = '/', extra: http2.OutgoingHttpHeaders = {}, scheme = 'http'): http2.OutgoingHttpHeaders {
  return { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': scheme, ':path': path, ':authority': 'localhost', 'sec-websocket-version': '13', ...extra };
}

/** What a stream came to: the response headers, or the RST_STREAM code it was reset with. */
export function outcome(stream: http2.ClientHttp2Stream, ms = 5000): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Promise<string> } | { rst: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no response and no reset')), ms);
    stream.on('error', () => {});
    stream.once('response', (headers) => {
      clearTimeout(timer);
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      const body = new Promise<string>((done) => stream.once('end', () => done(Buffer.concat(chunks).toString())));
      resolve({ status: Number(headers[':status']), headers, body });
    });
    stream.once('close', () => {
      clearTimeout(timer);
      resolve({ rst: stream.rstCode ?? -1 });
    });
  });
}
