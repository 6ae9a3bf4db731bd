/**
 * Topic names and patterns, and {@link TopicTrie}: which subscriptions match a published topic, found by walking a
 * trie over the topic's segments (never by scanning every pattern).
 *
 * Topics are dot-separated segments (`orders.eu.created`). In a subscription pattern, a segment `*` matches exactly
 * one segment and `#` matches zero or more (AMQP style: `orders.eu.#` matches `orders.eu` and `orders.eu.created.x`).
 * Any other character is plain: `conversation:conv-123` and `chat:lobby` are single-segment topics.
 *
 * @module
 */

/** Defaults of {@link TopicLimits}. */
export const TOPIC_DEFAULTS = {
  /** 256 UTF-16 code units per topic name or pattern. */
  maxLength: 256,
  /** 32 segments per topic name or pattern. */
  maxSegments: 32,
} as const;

/** Limits on topic names and patterns. */
export interface TopicLimits {
  /** Longest name or pattern, in UTF-16 code units. Default: 256. */
  maxLength?: number;
  /** Most dot-separated segments. Default: 32. */
  maxSegments?: number;
}

/**
 * Checks a topic name (`pattern: false`, what is published to) or a subscription pattern (`pattern: true`, where
 * `*` and `#` segments are allowed). Returns null when valid, else a message saying what is wrong.
 * Rules: a non-empty string within the limits; no empty segment (`a..b`, a leading or trailing dot); no control
 * characters or whitespace; `*` and `#` only as whole segments and only in patterns.
 */
export function checkTopic(name: unknown, pattern: boolean, limits: TopicLimits = {}): string | null {
  if (typeof name !== 'string') return `topic must be a string, got ${name === null ? 'null' : typeof name}`;
  if (name.length === 0) return 'topic must not be empty';
  const maxLength = limits.maxLength ?? TOPIC_DEFAULTS.maxLength;
  if (name.length > maxLength) return `topic is ${name.length} characters long, the limit is ${maxLength}`;
  let segments = 1;
  let segmentStart = 0;
  for (let i = 0; i <= name.length; i++) {
    const c = i === name.length ? 0x2e : name.charCodeAt(i);
    if (c === 0x2e) {
      const length = i - segmentStart;
      if (length === 0) return 'topic has an empty segment (two dots, or a leading or trailing dot)';
      if (length === 1) {
        const s = name.charCodeAt(segmentStart);
        if ((s === 0x2a || s === 0x23) && !pattern) return `wildcard "${name[segmentStart]}" is only allowed in subscriptions, not in a published topic`;
      }
      if (i < name.length) segments++;
      segmentStart = i + 1;
      continue;
    }
    if (c <= 0x20 || c === 0x7f) return 'topic must not contain whitespace or control characters';
    if ((c === 0x2a || c === 0x23) && (i > segmentStart || (i + 1 < name.length && name.charCodeAt(i + 1) !== 0x2e))) {
      return `"${String.fromCharCode(c)}" must be a whole segment (as in "a.${String.fromCharCode(c)}.b")`;
    }
  }
  const maxSegments = limits.maxSegments ?? TOPIC_DEFAULTS.maxSegments;
  if (segments > maxSegments) return `topic has ${segments} segments, the limit is ${maxSegments}`;
  return null;
}

/** Whether a (valid) name is a pattern: it has a `*` or `#` segment. */
export function isPattern(name: string): boolean {
  for (const s of name.split('.')) if (s === '*' || s === '#') return true;
  return false;
}

/**
 * The canonical form of a pattern: runs of `#` collapse into one (`a.#.#` ≡ `a.#`), which also bounds matching
 * cost. Subscribing with either spelling is the same subscription.
 */
export function normalizePattern(pattern: string): string {
  if (!pattern.includes('#.#')) return pattern;
  const out: string[] = [];
  for (const s of pattern.split('.')) if (!(s === '#' && out[out.length - 1] === '#')) out.push(s);
  return out.join('.');
}

/** Whether `topic` (a name) matches `pattern`. A direct check, for a single pair (no trie needed). */
export function matches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true;
  return matchFrom(pattern.split('.'), 0, topic.split('.'), 0);
}

function matchFrom(p: string[], i: number, t: string[], j: number): boolean {
  while (i < p.length) {
    const s = p[i];
    if (s === '#') {
      if (i === p.length - 1) return true;
      for (let k = j; k <= t.length; k++) if (matchFrom(p, i + 1, t, k)) return true;
      return false;
    }
    if (j >= t.length) return false;
    if (s !== '*' && s !== t[j]) return false;
    i++;
    j++;
  }
  return j === t.length;
}

class TrieNode<T> {
  children: Map<string, TrieNode<T>> | null = null;
  star: TrieNode<T> | null = null;
  hash: TrieNode<T> | null = null;
  values: Set<T> | null = null;
}

/**
 * Patterns (and plain names) mapped to values, matched against published topics by walking their segments.
 * Cost of {@link TopicTrie.match}: proportional to the topic's segments and the trie branches that can match
 * (`*` and `#` nodes), not to the number of patterns. Empty branches are pruned on delete, so a trie whose values
 * were all removed holds nothing.
 */
export class TopicTrie<T> {
  private readonly root = new TrieNode<T>();
  private count = 0;
  private nodes = 0;

  /** Number of (pattern, value) entries. */
  get size(): number {
    return this.count;
  }

  /** Number of trie nodes besides the root (0 when empty: nothing leaks). */
  get nodeCount(): number {
    return this.nodes;
  }

  /** Adds `value` under `pattern`; returns false when it was there already. */
  add(pattern: string, value: T): boolean {
    let node = this.root;
    for (const s of pattern.split('.')) {
      let next: TrieNode<T> | null;
      if (s === '*') next = node.star ??= this.node();
      else if (s === '#') next = node.hash ??= this.node();
      else {
        node.children ??= new Map();
        next = node.children.get(s) ?? null;
        if (next === null) {
          next = this.node();
          node.children.set(s, next);
        }
      }
      node = next;
    }
    node.values ??= new Set();
    if (node.values.has(value)) return false;
    node.values.add(value);
    this.count++;
    return true;
  }

  private node(): TrieNode<T> {
    this.nodes++;
    return new TrieNode<T>();
  }

  /** Removes `value` from `pattern`; returns false when it was not there. Prunes emptied nodes. */
  delete(pattern: string, value: T): boolean {
    const segments = pattern.split('.');
    const path: Array<TrieNode<T>> = [this.root];
    let node: TrieNode<T> | null = this.root;
    for (const s of segments) {
      node = s === '*' ? node.star : s === '#' ? node.hash : (node.children?.get(s) ?? null);
      if (node === null) return false;
      path.push(node);
    }
    if (node.values === null || !node.values.delete(value)) return false;
    this.count--;
    if (node.values.size === 0) node.values = null;
    for (let i = segments.length; i > 0; i--) {
      const n = path[i];
      if (n.values !== null || n.star !== null || n.hash !== null || (n.children !== null && n.children.size > 0)) break;
      const parent = path[i - 1];
      const s = segments[i - 1];
      if (s === '*') parent.star = null;
      else if (s === '#') parent.hash = null;
      else {
        parent.children!.delete(s);
        if (parent.children!.size === 0) parent.children = null;
      }
      this.nodes--;
    }
    return true;
  }

  /** The values stored under exactly `pattern` (not matching: the same spelling), or undefined. */
  get(pattern: string): ReadonlySet<T> | undefined {
    let node: TrieNode<T> | null = this.root;
    for (const s of pattern.split('.')) {
      node = s === '*' ? node.star : s === '#' ? node.hash : (node.children?.get(s) ?? null);
      if (node === null) return undefined;
    }
    return node.values ?? undefined;
  }

  /**
   * Calls `visit(value)` for every value whose pattern matches `topic` (a name, no
   * wildcards). A value stored under several matching patterns is visited once per pattern: callers that need
   * once-per-recipient delivery de-duplicate (the hub marks each recipient with the publication).
   */
  match(topic: string, visit: (value: T) => void): void {
    const sets: Array<ReadonlySet<T>> = [];
    this.collect(topic, sets);
    for (const set of sets) for (const v of set) visit(v);
  }

  /**
   * Appends to `out` the value set of every pattern node that matches `topic` (a name, no wildcards), without a
   * callback per value: the hub's fan-out iterates the sets itself. A value stored under several matching patterns
   * is in several sets. The sets are live: do not keep them past the current call stack.
   */
  collect(topic: string, out: Array<ReadonlySet<T>>): void {
    const root = this.root;
    if (root.hash === null && root.star === null && topic.indexOf('.') === -1) {
      // A single-segment topic and no root-level wildcard: one lookup.
      const node = root.children?.get(topic);
      if (node === undefined) return;
      if (node.values !== null) out.push(node.values);
      // `topic.#` matches `topic` itself (`#` is zero or more segments).
      if (node.hash !== null && node.hash.values !== null) out.push(node.hash.values);
      return;
    }
    this.gather(root, topic.split('.'), 0, out);
  }

  private gather(node: TrieNode<T>, segments: string[], i: number, out: Array<ReadonlySet<T>>): void {
    const hash = node.hash;
    if (hash !== null) {
      if (hash.values !== null) out.push(hash.values);
      if (hash.children !== null || hash.star !== null || hash.hash !== null) {
        for (let k = i; k < segments.length; k++) {
          const child = hash.children?.get(segments[k]);
          if (child !== undefined) this.gather(child, segments, k + 1, out);
          if (hash.star !== null) this.gather(hash.star, segments, k + 1, out);
        }
      }
    }
    if (i === segments.length) {
      if (node.values !== null) out.push(node.values);
      return;
    }
    const child = node.children?.get(segments[i]);
    if (child !== undefined) this.gather(child, segments, i + 1, out);
    if (node.star !== null) this.gather(node.star, segments, i + 1, out);
  }

  /** Every (pattern, value) entry, for diagnostics. */
  *entries(): IterableIterator<[string, T]> {
    const stack: Array<[TrieNode<T>, string]> = [[this.root, '']];
    while (stack.length > 0) {
      const [node, prefix] = stack.pop()!;
      if (node.values !== null) for (const v of node.values) yield [prefix, v];
      const join = (s: string): string => (prefix === '' ? s : `${prefix}.${s}`);
      if (node.children !== null) for (const [s, n] of node.children) stack.push([n, join(s)]);
      if (node.star !== null) stack.push([node.star, join('*')]);
      if (node.hash !== null) stack.push([node.hash, join('#')]);
    }
  }
}
