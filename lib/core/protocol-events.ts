/**
 * What a {@link Protocol} produces for its user: events, numbered for pull mode ({@link ProtocolEventType}) or as
 * objects ({@link ProtocolEvent}), and the push-mode adapter that hands them to a {@link ProtocolHandler}.
 *
 * @module
 */
import type { Buffer } from 'node:buffer';
import type { ProtocolError } from './errors.js';

/**
 * Receives what the protocol produces, in push mode (a handler given to the constructor). Every method is called
 * synchronously from `receive` or a send call. Without a handler the same things are queued for the caller to drain
 * (see {@link ProtocolEventType}).
 */
export interface ProtocolHandler {
  /** A complete message. `data` is owned by the receiver. `compressed`: RSV1 was set (an extension's payload). */
  onMessage(data: Buffer, isBinary: boolean, compressed: boolean): void;
  /** A ping arrived (already answered when `autoPong` is on). */
  onPing(data: Buffer): void;
  /** A pong arrived. */
  onPong(data: Buffer): void;
  /**
   * The peer's close frame arrived: `code` is 1005 when it carried none. The reply (when this side had not
   * closed yet) is already written.
   */
  onClose(code: number, reason: string): void;
  /** The peer broke the protocol or a limit. The close frame with `error.closeCode` is already written. */
  onError(error: ProtocolError): void;
  /** Bytes to send, in order. A pair is a header and its payload: write both, corked. */
  onWrite(data: Buffer | [Buffer, Uint8Array]): void;
  /**
   * The transport should close the TCP connection now, once written data is flushed: after a failure, or on the
   * server once the closing handshake is complete (RFC 6455 §7.1.1: the server closes first).
   */
  onEnd(): void;
}

/**
 * What {@link Protocol.nextEvent} returns in pull mode (0: no event left). A message's bytes, a ping's or a pong's
 * payload are in {@link Protocol.eventData}; an error is in {@link Protocol.eventError}; a close's code and reason
 * are {@link Protocol.closeCode} and {@link Protocol.closeReason}.
 */
export const ProtocolEventType = {
  /** A complete text message (UTF-8 already validated). */
  TEXT: 1,
  /** A complete binary message. */
  BINARY: 2,
  /** A text message whose first frame had RSV1 set (an extension's payload: inflate it, then check its UTF-8). */
  TEXT_COMPRESSED: 3,
  /** A binary message whose first frame had RSV1 set. */
  BINARY_COMPRESSED: 4,
  /** A ping (already answered when `autoPong` is on). */
  PING: 5,
  /** A pong. */
  PONG: 6,
  /** The peer's close frame (the reply, when this side had not closed yet, is already in the output). */
  CLOSE: 7,
  /** The peer broke the protocol or a limit (the close frame with `error.closeCode` is already in the output). */
  ERROR: 8,
  /** The transport should close TCP once the output is written (after a failure, or a server's closing handshake). */
  END: 9,
} as const;

/** An event as {@link Protocol.eventsReceived} returns it (one object per event: the convenient, allocating form). */
export type ProtocolEvent =
  | { type: 'message'; data: Buffer; isBinary: boolean; compressed: boolean }
  | { type: 'ping'; data: Buffer }
  | { type: 'pong'; data: Buffer }
  | { type: 'close'; code: number; reason: string }
  | { type: 'error'; error: ProtocolError }
  | { type: 'end' };

/**
 * Push mode: hands an event on to the handler (its answer, when it has one, is already written). `code` and
 * `reason` are the peer's, for a close event.
 */
export function handOn(h: ProtocolHandler, type: number, data: Buffer | ProtocolError, code: number, reason: string): void {
  if (type <= ProtocolEventType.BINARY_COMPRESSED) h.onMessage(data as Buffer, (type & 1) === 0, type >= ProtocolEventType.TEXT_COMPRESSED);
  else if (type === ProtocolEventType.PING) h.onPing(data as Buffer);
  else if (type === ProtocolEventType.PONG) h.onPong(data as Buffer);
  else if (type === ProtocolEventType.CLOSE) h.onClose(code, reason);
  else if (type === ProtocolEventType.ERROR) h.onError(data as ProtocolError);
  else h.onEnd();
}
