// Browser side of test/interop-chromium.test.ts, served by our server's httpHandler as /page.js.
// Connects back to the page's own host, runs a scripted exchange and reports to the server: a JSON text message
// ({"kind":"report",...}) on the WebSocket, then, after the close, a GET /result?data=<JSON>.
(function () {
  'use strict';

  function report(object) {
    return fetch('/result?data=' + encodeURIComponent(JSON.stringify(object)), { cache: 'no-store' });
  }

  function equalBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  function within(promise, ms, what) {
    let timer;
    return Promise.race([
      promise,
      new Promise(function (_, reject) {
        timer = setTimeout(function () {
          reject(new Error('timed out after ' + ms + ' ms waiting for ' + what));
        }, ms);
      }),
    ]).finally(function () {
      clearTimeout(timer);
    });
  }

  async function run() {
    const ws = new WebSocket('ws://' + location.host + '/ws', ['chat.v1', 'other']);
    ws.binaryType = 'arraybuffer';
    const queue = [];
    const waiters = [];
    ws.onmessage = function (e) {
      const w = waiters.shift();
      if (w) w(e.data);
      else queue.push(e.data);
    };
    function next(what) {
      return within(
        queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise(function (resolve) { waiters.push(resolve); }),
        15000,
        what,
      );
    }
    const closed = new Promise(function (resolve) {
      ws.onclose = function (e) {
        resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
      };
    });
    await within(
      new Promise(function (resolve, reject) {
        ws.onopen = resolve;
        ws.onerror = function () {
          reject(new Error('WebSocket error before open'));
        };
      }),
      15000,
      'open',
    );
    ws.onerror = null;
    const results = { protocol: ws.protocol, extensions: ws.extensions, userAgent: navigator.userAgent };

    // Text echo, multibyte and emoji included.
    const text = 'héllo from chromium 🎉 日本語 👩‍👩‍👧';
    ws.send(text);
    const textBack = await next('text echo');
    results.text = { type: typeof textBack, ok: textBack === text, got: String(textBack) };

    // Binary echo as an ArrayBuffer.
    const small = new Uint8Array(256);
    for (let i = 0; i < small.length; i++) small[i] = 255 - i;
    ws.send(small.buffer);
    const smallBack = await next('binary echo');
    results.binary = {
      type: smallBack instanceof ArrayBuffer ? 'arraybuffer' : typeof smallBack,
      length: smallBack.byteLength,
      ok: smallBack instanceof ArrayBuffer && equalBytes(new Uint8Array(smallBack), small),
    };

    // 1 MiB binary echo.
    const big = new Uint8Array(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 17) & 0xff;
    ws.send(big);
    const bigBack = await next('1 MiB echo');
    results.big = {
      type: bigBack instanceof ArrayBuffer ? 'arraybuffer' : typeof bigBack,
      length: bigBack.byteLength,
      ok: bigBack instanceof ArrayBuffer && equalBytes(new Uint8Array(bigBack), big),
    };

    // A 1 MiB-ish text message from the server (announced by the server, sent unprompted after the report).
    ws.send(JSON.stringify({ kind: 'report', results: results }));
    const bigText = await next('large text from the server');
    results.bigText = { type: typeof bigText, length: String(bigText).length, head: String(bigText).slice(0, 16) };

    // The server says when it has seen our pong; then close with 4000 and a UTF-8 reason.
    const go = await next('the go-ahead to close');
    results.go = String(go);
    ws.close(4000, 'browser bye ✓ 日本');
    results.close = await within(closed, 15000, 'close');
    await report({ kind: 'final', results: results });
  }

  run().catch(function (error) {
    report({ kind: 'error', error: String((error && error.stack) || error) });
  });
})();
