/**
 * ws's `createWebSocketStream`: a `Duplex` over a ws-style {@link WebSocket}. Writes become messages (held until
 * the socket opens), messages become readable chunks (reading pauses the WebSocket when the stream's buffer is
 * full), ending the writable side closes the WebSocket, and its errors and close end or destroy the stream.
 *
 * @module
 */
import { Duplex, type DuplexOptions } from 'node:stream';
import type { WebSocket } from './websocket.js';

const CONNECTING = 0;
const CLOSED = 3;

/** Returns a Duplex stream on `ws`; `options` go to the Duplex constructor (object modes excepted). */
export function createWebSocketStream(ws: WebSocket, options?: DuplexOptions): Duplex {
  /** Destroying the stream terminates the WebSocket, unless the WebSocket's own error is why. */
  let terminate = true;
  const duplex = new Duplex({ ...options, autoDestroy: false, emitClose: false, objectMode: false, writableObjectMode: false });

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!duplex.push(!isBinary && duplex.readableObjectMode ? data.toString() : data)) ws.pause();
  });
  ws.once('error', (error: Error) => {
    if (duplex.destroyed) return;
    terminate = false;
    duplex.destroy(error);
  });
  ws.once('close', () => {
    if (!duplex.destroyed) duplex.push(null);
  });

  const emitClose = (): void => {
    duplex.emit('close');
  };

  duplex._destroy = (error, callback) => {
    if (ws.readyState === CLOSED) {
      callback(error);
      process.nextTick(emitClose);
      return;
    }
    let failed = false;
    ws.once('error', (e: Error) => {
      failed = true;
      callback(e);
    });
    ws.once('close', () => {
      if (!failed) callback(error);
      process.nextTick(emitClose);
    });
    if (terminate) ws.terminate();
  };

  duplex._final = function final(callback) {
    if (ws.readyState === CONNECTING) {
      ws.once('open', () => final(callback));
      return;
    }
    const socket = ws._socket;
    // The handshake failed: the WebSocket's error destroys the stream.
    if (socket === null) return;
    if (socket.writableFinished) {
      callback();
      if (duplex.readableEnded) duplex.destroy();
      return;
    }
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      socket.off('finish', finish);
      ws.off('close', finish);
      callback();
    };
    socket.once('finish', finish);
    ws.once('close', finish);
    ws.close();
  };

  duplex._read = () => {
    if (ws.isPaused) ws.resume();
  };

  duplex._write = function write(chunk, encoding, callback) {
    if (ws.readyState === CONNECTING) {
      ws.once('open', () => write(chunk, encoding, callback));
      return;
    }
    ws.send(chunk, callback);
  };

  duplex.on('end', onEnd);
  duplex.on('error', onError);
  return duplex;
}

/** Both sides done: the stream is destroyed (which waits for the WebSocket's close). */
function onEnd(this: Duplex): void {
  if (!this.destroyed && this.writableFinished) this.destroy();
}

/** The first error destroys the stream; re-emitted when nobody else listens, so that it is not swallowed. */
function onError(this: Duplex, error: Error): void {
  this.removeListener('error', onError);
  this.destroy();
  if (this.listenerCount('error') === 0) this.emit('error', error);
}
