/**
 * Close codes and protocol errors, mapped in one place.
 *
 * Every rejection of peer input in the engine is created by {@link protocolError}, which pairs a stable
 * machine-readable error code with the close code that RFC 6455 §7.4.1 assigns to it. Nothing a peer sends
 * ever throws: the core turns a violation into a `ProtocolError` value, queues a close frame carrying
 * `closeCode`, and reports the error to the handler.
 *
 * @module
 */

/** Close status codes (RFC 6455 §7.4.1 and the IANA registry). */
export const CloseCode = {
  /** 1000: normal closure. */
  NORMAL: 1000,
  /** 1001: endpoint going away (server shutdown, page navigation). */
  GOING_AWAY: 1001,
  /** 1002: protocol error. */
  PROTOCOL_ERROR: 1002,
  /** 1003: a data type the endpoint cannot accept. */
  UNSUPPORTED_DATA: 1003,
  /** 1005: reserved; reported locally when a close frame carried no status code. Never sent. */
  NO_STATUS: 1005,
  /** 1006: reserved; reported locally when the connection closed without a close frame. Never sent. */
  ABNORMAL: 1006,
  /** 1007: message data inconsistent with its type (invalid UTF-8 in text). */
  INVALID_PAYLOAD: 1007,
  /** 1008: policy violation. */
  POLICY_VIOLATION: 1008,
  /** 1009: message too big to process. */
  MESSAGE_TOO_BIG: 1009,
  /** 1010: the client expected an extension the server did not negotiate. */
  MANDATORY_EXTENSION: 1010,
  /** 1011: unexpected condition on the server. */
  INTERNAL_ERROR: 1011,
  /** 1012: service restart. */
  SERVICE_RESTART: 1012,
  /** 1013: try again later. */
  TRY_AGAIN_LATER: 1013,
  /** 1014: bad gateway. */
  BAD_GATEWAY: 1014,
} as const;

/**
 * Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4): 1000–1003, 1007–1014 as
 * registered with IANA, and 3000–4999 (libraries, frameworks, applications). 1004, 1005, 1006, 1015 and
 * every other value are invalid; a peer sending one fails the connection with 1002.
 */
export function isValidCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

/** Stable identifiers of every peer-input violation the engine detects. */
export type ProtocolErrorCode =
  | 'RSV_NOT_NEGOTIATED'
  | 'RESERVED_OPCODE'
  | 'CONTROL_FRAGMENTED'
  | 'CONTROL_TOO_LONG'
  | 'RSV1_ON_CONTROL'
  | 'RSV1_ON_CONTINUATION'
  | 'UNEXPECTED_CONTINUATION'
  | 'EXPECTED_CONTINUATION'
  | 'MASK_EXPECTED'
  | 'MASK_UNEXPECTED'
  | 'LENGTH_64BIT_MSB'
  | 'LENGTH_NOT_MINIMAL'
  | 'FRAME_TOO_BIG'
  | 'MESSAGE_TOO_BIG'
  | 'INVALID_UTF8'
  | 'INVALID_CLOSE_PAYLOAD'
  | 'INVALID_CLOSE_CODE'
  | 'INVALID_CLOSE_REASON'
  | 'EXTENSION_ERROR';

const CLOSE_CODE_OF: Record<ProtocolErrorCode, number> = {
  RSV_NOT_NEGOTIATED: CloseCode.PROTOCOL_ERROR,
  RESERVED_OPCODE: CloseCode.PROTOCOL_ERROR,
  CONTROL_FRAGMENTED: CloseCode.PROTOCOL_ERROR,
  CONTROL_TOO_LONG: CloseCode.PROTOCOL_ERROR,
  RSV1_ON_CONTROL: CloseCode.PROTOCOL_ERROR,
  RSV1_ON_CONTINUATION: CloseCode.PROTOCOL_ERROR,
  UNEXPECTED_CONTINUATION: CloseCode.PROTOCOL_ERROR,
  EXPECTED_CONTINUATION: CloseCode.PROTOCOL_ERROR,
  MASK_EXPECTED: CloseCode.PROTOCOL_ERROR,
  MASK_UNEXPECTED: CloseCode.PROTOCOL_ERROR,
  LENGTH_64BIT_MSB: CloseCode.PROTOCOL_ERROR,
  LENGTH_NOT_MINIMAL: CloseCode.PROTOCOL_ERROR,
  FRAME_TOO_BIG: CloseCode.MESSAGE_TOO_BIG,
  MESSAGE_TOO_BIG: CloseCode.MESSAGE_TOO_BIG,
  INVALID_UTF8: CloseCode.INVALID_PAYLOAD,
  INVALID_CLOSE_PAYLOAD: CloseCode.PROTOCOL_ERROR,
  INVALID_CLOSE_CODE: CloseCode.PROTOCOL_ERROR,
  INVALID_CLOSE_REASON: CloseCode.INVALID_PAYLOAD,
  // An extension could not decode a message's data (malformed DEFLATE data): data inconsistent with its type.
  EXTENSION_ERROR: CloseCode.INVALID_PAYLOAD,
};

/** A violation of RFC 6455 (or of a configured limit) by the peer. Never thrown at the application. */
export class ProtocolError extends Error {
  /** Stable identifier, e.g. `'CONTROL_TOO_LONG'`. */
  readonly code: ProtocolErrorCode;
  /** The close code sent to the peer for this violation. */
  readonly closeCode: number;
  constructor(code: ProtocolErrorCode, message: string, closeCode: number = CLOSE_CODE_OF[code]) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.closeCode = closeCode;
  }
}

/**
 * Creates the error for a violation, with the close code mapped from its identifier in the table above: the one
 * place where violations meet close codes (the engine's layers, permessage-deflate included, never pass
 * `closeCode`; it exists for third-party extensions with codes of their own).
 */
export function protocolError(code: ProtocolErrorCode, message: string, closeCode?: number): ProtocolError {
  return new ProtocolError(code, message, closeCode);
}
