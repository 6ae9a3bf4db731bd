/**
 * Deterministic work counting, for tests that a parser takes linear time without timing it (wall-clock ratios fail
 * on a loaded machine; counts do not depend on load at all).
 *
 * {@link countWork} runs a synchronous function with the built-in methods that scan, copy or search strings, arrays
 * and buffers replaced by wrappers that add up what each call costs, then puts the originals back. The cost model:
 * - one per character access (`charCodeAt`, `codePointAt`, `charAt`, `at`);
 * - a search (`indexOf`, `includes`, Buffer `indexOf`) costs the span it scanned: from its start offset to the end
 *   of the match, or to the end when there is none; `lastIndexOf`, `split`, `replace`, `match`, `search` and the
 *   `RegExp` methods cost the whole input they were given;
 * - a copy or transform costs the length it produced or consumed (`slice`, `substring`, `toLowerCase`, `trim`,
 *   Buffer `toString`, `copy`, `concat`, `from`, `alloc`, TypedArray `set`/`slice`, Array `slice`/`join`/`concat`);
 *   `Buffer.allocUnsafe` (bytes left untouched) costs one;
 * - an Array method that visits the elements (`indexOf`, `includes`, `find`, `filter`, `map`, `shift`, `splice`, …)
 *   costs the array's length.
 * Only the outermost call counts (a wrapped method calling another one is not counted twice). What the wrappers
 * cannot see: indexed reads (`s[i]`, `buf[i]`), operators (`+=`), Map/Set operations (O(1) anyway) and backtracking
 * inside one regular-expression call (counted as one pass). A quadratic algorithm built from those alone would not
 * show up in the count (the tests still run the large inputs for real, so a blow-up of minutes hits the test timeout,
 * but that is a backstop, not the check).
 *
 * @module
 */

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;
type Cost = (self: unknown, args: unknown[], result: unknown) => number;

let work = 0;
let depth = 0;

const len = (x: unknown): number => {
  if (typeof x === 'string') return x.length;
  const n = (x as { length?: unknown } | null | undefined)?.length;
  return typeof n === 'number' ? n : 1;
};
/** A start offset as the built-ins read it: negative counts from the end, clamped to [0, length]. */
const offset = (value: unknown, length: number): number => {
  const n = typeof value === 'number' ? Math.trunc(value) || 0 : 0;
  return Math.min(Math.max(n < 0 ? length + n : n, 0), length);
};
/** Span scanned by an `indexOf(needle, from)` that returned `found`. */
const scanned: Cost = (self, [needle, from], found) => {
  const total = len(self);
  const start = offset(from, total);
  const needleLength = typeof needle === 'string' ? (typeof self === 'string' ? needle.length : Buffer.byteLength(needle)) : typeof needle === 'number' ? 1 : len(needle);
  return Math.max(1, (found === -1 || found === false ? total : typeof found === 'number' ? found + needleLength : total) - start);
};
const one: Cost = () => 1;
const selfLength: Cost = (self) => Math.max(1, len(self));
const resultLength: Cost = (_self, _args, result) => Math.max(1, len(result));
const firstArgLength: Cost = (_self, [first]) => Math.max(1, len(first));
const firstArgSize: Cost = (_self, [size]) => Math.max(1, typeof size === 'number' ? size : len(size));

const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array.prototype) as object;
const PATCHES: Array<[object, string, Cost]> = [
  ...['charCodeAt', 'codePointAt', 'charAt', 'at'].map((m): [object, string, Cost] => [String.prototype, m, one]),
  [String.prototype, 'indexOf', scanned],
  [String.prototype, 'startsWith', firstArgLength],
  [String.prototype, 'endsWith', firstArgLength],
  ...['includes', 'lastIndexOf', 'split', 'replace', 'replaceAll', 'match', 'matchAll', 'search', 'localeCompare', 'toLowerCase', 'toUpperCase', 'toLocaleLowerCase', 'toLocaleUpperCase', 'trim', 'trimStart', 'trimEnd', 'normalize'].map(
    (m): [object, string, Cost] => [String.prototype, m, selfLength],
  ),
  ...['slice', 'substring', 'substr', 'padStart', 'padEnd', 'repeat', 'concat'].map((m): [object, string, Cost] => [String.prototype, m, resultLength]),
  [RegExp.prototype, 'exec', (self, [input]) => Math.max(1, String(input).length - ((self as RegExp).global || (self as RegExp).sticky ? (self as RegExp).lastIndex : 0))],
  [RegExp.prototype, 'test', (_self, [input]) => Math.max(1, String(input).length)],
  ...['indexOf', 'lastIndexOf', 'includes', 'find', 'findIndex', 'findLast', 'findLastIndex', 'some', 'every', 'filter', 'map', 'forEach', 'reduce', 'reduceRight', 'join', 'reverse', 'sort', 'fill', 'flat', 'flatMap', 'splice', 'shift', 'unshift', 'copyWithin'].map(
    (m): [object, string, Cost] => [Array.prototype, m, selfLength],
  ),
  [Array.prototype, 'slice', resultLength],
  [Array.prototype, 'concat', resultLength],
  [Buffer.prototype, 'indexOf', scanned],
  [Buffer.prototype, 'includes', selfLength],
  [Buffer.prototype, 'lastIndexOf', selfLength],
  [Buffer.prototype, 'equals', selfLength],
  [Buffer.prototype, 'compare', selfLength],
  [Buffer.prototype, 'toString', resultLength],
  [Buffer.prototype, 'copy', (_self, _args, copied) => Math.max(1, Number(copied))],
  [TYPED_ARRAY, 'set', firstArgLength],
  [TYPED_ARRAY, 'slice', resultLength],
  [TYPED_ARRAY, 'fill', selfLength],
  [TYPED_ARRAY, 'indexOf', scanned],
  [Buffer, 'concat', resultLength],
  [Buffer, 'from', resultLength],
  [Buffer, 'alloc', firstArgSize],
  // allocUnsafe does not touch the bytes: one step, whatever the size.
  [Buffer, 'allocUnsafe', one],
  [Buffer, 'allocUnsafeSlow', one],
];

/** Runs `fn` synchronously and returns the work it did by the cost model above (deterministic for a given input). */
export function countWork(fn: () => void): number {
  const saved: Array<[object, string, PropertyDescriptor]> = [];
  try {
    for (const [target, name, cost] of PATCHES) {
      const descriptor = Object.getOwnPropertyDescriptor(target, name);
      if (descriptor === undefined || typeof descriptor.value !== 'function') continue;
      const original = descriptor.value as AnyFunction;
      const wrapper = function (this: unknown, ...args: unknown[]): unknown {
        if (depth > 0) return Reflect.apply(original, this, args);
        depth++;
        try {
          const result = Reflect.apply(original, this, args);
          work += cost(this, args, result);
          return result;
        } finally {
          depth--;
        }
      };
      saved.push([target, name, descriptor]);
      Object.defineProperty(target, name, { ...descriptor, value: wrapper });
    }
    work = 0;
    fn();
    return work;
  } finally {
    for (const [target, name, descriptor] of saved) Object.defineProperty(target, name, descriptor);
  }
}

/**
 * Largest work ratio accepted for an input 10× larger: linear gives about 10 (n log n about 12 at 64 KB → 640 KB),
 * quadratic about 100; 15 fails anything growing faster than about n^1.2.
 */
export const LINEAR_GROWTH_BOUND = 15;

/** Work for an input of `small` and of `large` size, made by `make`, and large ÷ small. */
export function workGrowth(make: (n: number) => () => void, small: number, large: number): { small: number; large: number; ratio: number } {
  const a = countWork(make(small));
  const b = countWork(make(large));
  return { small: a, large: b, ratio: b / a };
}
