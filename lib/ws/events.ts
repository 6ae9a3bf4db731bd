/**
 * The browser-style side of the ws-compatible `WebSocket`: `addEventListener`, `removeEventListener` and the
 * `onopen`/`onmessage`/`onerror`/`onclose` attributes, built on the EventEmitter events, as ws offers them. Each
 * listener is registered on the emitter wrapped in a function that builds the event object; the wrapper remembers
 * the listener it stands for and whether an `on…` attribute set it.
 *
 * @module
 */
import type { EventEmitter } from 'node:events';

const kType = Symbol('wsengine.ws.type');
const kTarget = Symbol('wsengine.ws.target');

/** An event as the browser-style listeners receive it. */
export class Event {
  [kType]: string;
  [kTarget]: unknown = null;
  constructor(type: string) {
    this[kType] = type;
  }
  /** The event's name: `open`, `message`, `error` or `close`. */
  get type(): string {
    return this[kType];
  }
  /** The `WebSocket` the event fired on. */
  get target(): unknown {
    return this[kTarget];
  }
}

/** The `close` event: code, reason (a string) and whether the closing handshake completed. */
export class CloseEvent extends Event {
  readonly #code: number;
  readonly #reason: string;
  readonly #wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.#code = init.code ?? 0;
    this.#reason = init.reason ?? '';
    this.#wasClean = init.wasClean ?? false;
  }
  get code(): number {
    return this.#code;
  }
  get reason(): string {
    return this.#reason;
  }
  get wasClean(): boolean {
    return this.#wasClean;
  }
}

/** The `error` event: the Error and its message. */
export class ErrorEvent extends Event {
  readonly #error: unknown;
  readonly #message: string;
  constructor(type: string, init: { error?: unknown; message?: string } = {}) {
    super(type);
    this.#error = init.error ?? null;
    this.#message = init.message ?? '';
  }
  get error(): unknown {
    return this.#error;
  }
  get message(): string {
    return this.#message;
  }
}

/** The `message` event: text as a string, binary data per `binaryType`. */
export class MessageEvent extends Event {
  readonly #data: unknown;
  constructor(type: string, init: { data?: unknown } = {}) {
    super(type);
    this.#data = init.data ?? null;
  }
  get data(): unknown {
    return this.#data;
  }
}

Object.defineProperties(Event.prototype, { type: { enumerable: true }, target: { enumerable: true } });
Object.defineProperties(CloseEvent.prototype, { code: { enumerable: true }, reason: { enumerable: true }, wasClean: { enumerable: true } });
Object.defineProperties(ErrorEvent.prototype, { error: { enumerable: true }, message: { enumerable: true } });
Object.defineProperty(MessageEvent.prototype, 'data', { enumerable: true });

/** A listener: a function, or an object with `handleEvent`. */
export type EventListenerLike = ((event: any) => void) | { handleEvent(event: any): void };

const kListener = Symbol('wsengine.ws.listener');
const kAttribute = Symbol('wsengine.ws.attribute');

type Wrapper = ((...args: any[]) => void) & { [kListener]: EventListenerLike; [kAttribute]: boolean };

/** What the event wrappers need of the socket. */
export interface EventSource extends EventEmitter {
  /** Whether both close frames were exchanged (for `CloseEvent.wasClean`). */
  readonly cleanClose: boolean;
}

function call(listener: EventListenerLike, target: unknown, event: Event): void {
  if (typeof listener === 'object' && listener !== null && typeof listener.handleEvent === 'function') listener.handleEvent.call(listener, event);
  else (listener as (event: Event) => void).call(target, event);
}

function wrapperFor(type: string, listener: EventListenerLike): ((this: EventSource, ...args: any[]) => void) | null {
  switch (type) {
    case 'message':
      return function onMessage(this: EventSource, data: unknown, isBinary: boolean) {
        const event = new MessageEvent('message', { data: isBinary ? data : String(data) });
        event[kTarget] = this;
        call(listener, this, event);
      };
    case 'close':
      return function onClose(this: EventSource, code: number, reason: Buffer) {
        const event = new CloseEvent('close', { code, reason: reason.toString(), wasClean: this.cleanClose });
        event[kTarget] = this;
        call(listener, this, event);
      };
    case 'error':
      return function onError(this: EventSource, error: Error) {
        const event = new ErrorEvent('error', { error, message: error?.message });
        event[kTarget] = this;
        call(listener, this, event);
      };
    case 'open':
      return function onOpen(this: EventSource) {
        const event = new Event('open');
        event[kTarget] = this;
        call(listener, this, event);
      };
    default:
      return null;
  }
}

/**
 * `addEventListener` for `open`, `message`, `error` and `close` (other types are ignored, as in ws). A listener
 * already added for the type is not added twice; `{ once: true }` removes it after its first call.
 */
export function addEventListener(target: EventSource, type: string, listener: EventListenerLike, options: { once?: boolean } = {}, attribute = false): void {
  if (!attribute) {
    for (const l of target.listeners(type) as Wrapper[]) {
      if (l[kListener] === listener && !l[kAttribute]) return;
    }
  }
  const fn = wrapperFor(type, listener) as Wrapper | null;
  if (fn === null) return;
  fn[kListener] = listener;
  fn[kAttribute] = attribute;
  if (options?.once) target.once(type, fn);
  else target.on(type, fn);
}

/** Removes a listener added with {@link addEventListener} (never one added with `on`, nor an `on…` attribute). */
export function removeEventListener(target: EventSource, type: string, listener: EventListenerLike): void {
  for (const l of target.listeners(type) as Wrapper[]) {
    if (l[kListener] === listener && !l[kAttribute]) {
      target.removeListener(type, l);
      return;
    }
  }
}

/** The listener an `on…` attribute holds, or null. */
export function attributeListener(target: EventSource, type: string): EventListenerLike | null {
  for (const l of target.listeners(type) as Wrapper[]) {
    if (l[kAttribute]) return l[kListener];
  }
  return null;
}

/** Sets an `on…` attribute: replaces the previous one; anything but a function just removes it. */
export function setAttributeListener(target: EventSource, type: string, listener: unknown): void {
  for (const l of target.listeners(type) as Wrapper[]) {
    if (l[kAttribute]) {
      target.removeListener(type, l);
      break;
    }
  }
  if (typeof listener === 'function') addEventListener(target, type, listener as EventListenerLike, {}, true);
}
