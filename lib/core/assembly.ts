/**
 * Message assembly: the pieces of a message that arrives in several (fragments, or a frame spread over reads), held
 * as views of the reads they came in or copied into blocks, then joined. A {@link Protocol} creates an
 * {@link Assembly} with a message's first held piece and drops it once the message is delivered, so a connection
 * between such messages holds none. A message whose single frame lies in one read never gets here.
 *
 * @module
 */
import { Buffer } from 'node:buffer';

/** Pieces under 1 KiB, or under a quarter of the read that holds them, are copied into blocks of this size. */
const BLOCK_SIZE = 16 * 1024;
/** Smallest piece kept as a view: below it a Buffer object's own overhead (~200 bytes) would dominate. */
export const MIN_VIEW = 1024;

const EMPTY = Buffer.alloc(0);

/**
 * The state of a message arriving in pieces (fragments, or a frame spread over reads): created with its first piece
 * held, dropped once the message is delivered, so a connection between such messages holds none.
 */
export class Assembly {
  parts: Buffer[] = [];
  partsLength = 0;
  /** Bytes of the reads that parts kept as views belong to (each read once), and the bytes of those views. */
  viewBytes = 0;
  viewedLength = 0;
  lastView: ArrayBufferLike | null = null;
  block: Buffer | null = null;
  blockLength = 0;

  /** Bytes held: the parts, what views keep alive beyond their own bytes, and the block being filled. */
  get heldBytes(): number {
    return this.partsLength + this.viewBytes - this.viewedLength + this.blockLength;
  }

  /**
   * Keeps a piece (not empty) of the message: as a view when it is most of its read, else copied. `borrowed`: the
   * read is only lent (always copy). `messageCost` is what the message costs so far, toward `maxMessageSize`.
   */
  hold(piece: Buffer, borrowed: boolean, messageCost: number, maxMessageSize: number): void {
    const n = piece.length;
    // A view keeps its whole read alive: allowed while the message's cost plus what views hold beyond their own
    // bytes stays within the limit (a peer padding its fragments with pongs pays for the padding).
    const extra = piece.buffer === this.lastView ? 0 : piece.buffer.byteLength;
    if (!borrowed && n >= MIN_VIEW && n * 4 >= piece.buffer.byteLength && messageCost + this.viewBytes + extra - this.viewedLength - n <= maxMessageSize) {
      this.viewBytes += extra;
      this.viewedLength += n;
      this.lastView = piece.buffer;
      this.flushBlock();
      this.parts.push(piece);
      this.partsLength += n;
      return;
    }
    let at = 0;
    while (at < n) {
      if (this.block === null) this.block = Buffer.allocUnsafe(BLOCK_SIZE);
      const room = this.block.length - this.blockLength;
      const take = n - at < room ? n - at : room;
      this.block.set(piece.subarray(at, at + take), this.blockLength);
      this.blockLength += take;
      at += take;
      if (this.blockLength === this.block.length) this.flushBlock();
    }
  }

  /** Copies the parts held so far into one buffer of their size, releasing the reads views kept alive. */
  compact(): void {
    this.flushBlock();
    const whole = Buffer.allocUnsafeSlow(this.partsLength);
    let at = 0;
    for (const part of this.parts) {
      whole.set(part, at);
      at += part.length;
    }
    this.parts = [whole];
    this.viewBytes = this.viewedLength = 0;
    this.lastView = null;
  }

  /** The assembled message: a view when it is one part, else one exact-size copy. The assembly is done with. */
  take(): Buffer {
    this.flushBlock();
    const parts = this.parts;
    if (parts.length === 0) return EMPTY;
    if (parts.length === 1 && parts[0].length * 2 >= parts[0].buffer.byteLength) return parts[0];
    const out = Buffer.allocUnsafe(this.partsLength);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** Moves the block being filled into the parts. */
  private flushBlock(): void {
    const n = this.blockLength;
    if (n === 0) return;
    const block = this.block!;
    this.parts.push(block.subarray(0, n));
    this.partsLength += n;
    this.block = n === block.length ? null : block.subarray(n);
    this.blockLength = 0;
  }
}
