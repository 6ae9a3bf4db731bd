/**
 * The sans-I/O protocol core: frames, masking, UTF-8, close codes and the protocol state machine. Nothing here
 * touches a socket, a timer or a promise; it can be tested and fuzzed alone.
 *
 * @module
 */
export { CloseCode, isValidCloseCode, ProtocolError, protocolError, type ProtocolErrorCode } from './errors.js';
export {
  closePayload,
  COPY_LIMIT,
  encodeFrame,
  encodeTextFrame,
  headerSize,
  MAX_CLOSE_REASON,
  MAX_CONTROL_PAYLOAD,
  Opcode,
  writeHeader,
} from './frame.js';
export { type MaskSource, randomMask, SIMD_MIN, simdAvailable, WORD_LOOP_MIN, xorMask, xorMaskCopy } from './mask.js';
export {
  Protocol,
  PROTOCOL_DEFAULTS,
  type ProtocolEvent,
  ProtocolEventType,
  type ProtocolHandler,
  type ProtocolOptions,
  ReadyState,
} from './protocol.js';
export { isValidUtf8, Utf8Validator } from './utf8.js';
export { type Data, toBytes } from './bytes.js';
