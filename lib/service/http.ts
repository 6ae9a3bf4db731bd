/**
 * Small HTTP helpers of the hub service: JSON bodies with a size limit, JSON answers, errors with a status, and the
 * constant-time API key check.
 *
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/** A request the service answers: HTTP/1.1 (`node:http`), or HTTP/2 through `node:http2`'s compatibility API. */
export type ServiceRequest = IncomingMessage | Http2ServerRequest;
/** The response to a {@link ServiceRequest}. */
export type ServiceResponse = ServerResponse | Http2ServerResponse;

/** An error answered with its status and `{"error": {"code", "message"}}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    /** Machine-readable: `bad_request`, `unauthorized`, `not_found`, … */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Answers `status` with a JSON body. */
export function sendJson(res: ServiceResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** Answers an {@link HttpError}. */
export function sendError(res: ServiceResponse, error: HttpError, headers: Record<string, string> = {}): void {
  sendJson(res, error.status, { error: { code: error.code, message: error.message } }, headers);
}

/**
 * Reads a JSON object body of at most `limit` bytes. Refuses (as {@link HttpError}): a body over the limit (413,
 * without reading the rest), a content type other than JSON (415), invalid UTF-8 or JSON (400), and anything but an
 * object at the top level (400).
 */
export async function readJsonObject(req: ServiceRequest, limit: number): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
    throw new HttpError(415, 'unsupported_media_type', `expected Content-Type: application/json, got ${JSON.stringify(type.slice(0, 100))}`);
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw new HttpError(413, 'payload_too_large', `the body is ${declared} bytes; the limit is ${limit}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'payload_too_large', `the body is over the limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) throw new HttpError(400, 'bad_request', 'the body is empty; send a JSON object');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks, size));
  } catch {
    throw new HttpError(400, 'bad_request', 'the body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'bad_request', `the body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, 'bad_request', 'the body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Whether an `Authorization` header carries `Bearer <key>`. Both sides are hashed to fixed-length digests and
 * compared with `timingSafeEqual`, so the time taken says nothing about the key (not even its length).
 */
export function checkBearer(header: string | undefined, key: string): boolean {
  const match = header === undefined ? null : /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  const offered = match ? match[1] : '';
  const equal = timingSafeEqual(digest(offered), digest(key));
  return match !== null && equal;
}

/** A string field of a JSON body: required (400 when missing), or optional (undefined when absent). */
export function stringField(body: Record<string, unknown>, name: string, required: true, maxLength?: number): string;
export function stringField(body: Record<string, unknown>, name: string, required: false, maxLength?: number): string | undefined;
export function stringField(body: Record<string, unknown>, name: string, required: boolean, maxLength = 1024): string | undefined {
  const value = body[name];
  if (value === undefined || value === null) {
    if (required) throw new HttpError(400, 'bad_request', `"${name}" is required (a non-empty string)`);
    return undefined;
  }
  if (typeof value !== 'string' || value.length === 0) throw new HttpError(400, 'bad_request', `"${name}" must be a non-empty string`);
  if (value.length > maxLength) throw new HttpError(400, 'bad_request', `"${name}" is longer than ${maxLength} characters`);
  return value;
}

/** An optional integer field within [min, max] (400 otherwise). */
export function intField(body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new HttpError(400, 'bad_request', `"${name}" must be an integer from ${min} to ${max}`);
  }
  return value;
}
