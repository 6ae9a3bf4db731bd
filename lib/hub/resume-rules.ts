/**
 * The resume rules, in one place for every backplane: what a client that saw up to some position has missed, as
 * the messages a topic's stream still holds plus the exact ranges it no longer holds, and whether that is all
 * (`recovered`). Pure functions over a {@link ResumeView} — a topic's stream as its store holds it — so that the
 * in-memory {@link HistoryStore} and the broker adapters (lib/hub/broker.ts over Redis or NATS) answer alike;
 * each store only decides which topics to show and how to read them.
 *
 * Also the vocabulary of streams the hub, the backplanes and the client share: {@link StreamPosition},
 * {@link PublishedMessage}, {@link Gap}, {@link ResumeResult}, {@link PatternSince} (re-exported by history.ts).
 *
 * @module
 */

/** A position in a topic's stream: the last sequence number seen in an epoch. */
export interface StreamPosition {
  epoch: string;
  seq: number;
}

/**
 * A published topic message as it travels between hubs and is kept in history. `data` is already serialized
 * (JSON text) so that every hub splices the same bytes into its frames.
 */
export interface PublishedMessage {
  tenant: string;
  topic: string;
  /** The message's type, as the publisher gave it. */
  type: string;
  /** The message's data, serialized as JSON text. */
  data: string;
  /** Sequence number in the topic's epoch, from 1, contiguous. */
  seq: number;
  epoch: string;
  /** Publication time, ms since the epoch. */
  ts: number;
  /** Position in the tenant's stream of publications (monotonic per tenant across topics), for wildcard resume. */
  offset: number;
  /**
   * The user who published it, when a client did (set by the hub from the verified token, never by the client);
   * absent for messages the server published (`hub.publish`, the HTTP API). Subscribers get it as `from: { user }`.
   */
  from?: string;
}

/**
 * `to` of a {@link Gap} whose end cannot be known: the epoch itself was lost (a broker restarted without
 * persistence), so everything after `from` in that epoch is missing and the topic continues in a new epoch.
 * `Number.MAX_SAFE_INTEGER` (9007199254740991) on the wire; the hub client turns it into `Infinity`.
 */
export const GAP_UNKNOWN_END = Number.MAX_SAFE_INTEGER;

/** A missing range of sequence numbers, inclusive, in one topic's epoch. */
export interface Gap {
  tenant: string;
  topic: string;
  epoch: string;
  from: number;
  /** Last missing sequence number, inclusive; {@link GAP_UNKNOWN_END} when the epoch ended with an unknown last seq. */
  to: number;
}

/** The answer to a resume request for one subscription: messages to replay in order, and ranges that are lost. */
export interface ResumeResult {
  messages: PublishedMessage[];
  gaps: Gap[];
  /** Whether everything missed is in `messages` (no gap). */
  recovered: boolean;
}

/** What a client sends to resume a wildcard subscription (see the README's "History and resume"). */
export interface PatternSince {
  /** The last position seen, per topic. */
  positions?: Record<string, StreamPosition>;
  /** The tenant stream offset the subscription's ack (or last resume) reported; topics not in `positions` replay from it. */
  offset?: number;
  /**
   * The offset epoch reported with `offset` (the ack's `offsetEpoch`). Offsets count publications of one stream;
   * when the hub's stream is not the one the offset came from (a restarted hub without a persistent backplane, a
   * broker that lost its data), the offset means nothing: every matching topic is then treated as unseen — all that
   * is held is replayed, with gaps where messages are known to be gone. Without it, an offset is trusted unless it
   * is ahead of the current one (which also proves it is from another stream).
   */
  offsetEpoch?: string;
}

/** A tenant's current offset and the epoch of its offsets (which changes when the store lost the counter). */
export interface TenantOffset {
  offset: number;
  epoch: string;
}

/**
 * A topic's stream as a store holds it, as the rules read it. What is lost is always one range from the epoch's
 * start: stores drop a topic's oldest messages first, so everything up to `droppedSeq` is gone and the held
 * messages follow it.
 */
export interface ResumeView {
  /** The topic's current epoch. */
  readonly epoch: string;
  /** Last sequence number assigned in the epoch (0: none yet). */
  readonly seq: number;
  /** Seq of the newest message no longer held (0 when none was dropped). */
  readonly droppedSeq: number;
  /** Tenant offset of that message (0 when none was dropped). */
  readonly droppedOffset: number;
  /** Tenant offset just before the epoch's first message. */
  readonly startOffset: number;
  /** The held messages, oldest first; every call iterates from the oldest again. */
  held(): Iterable<PublishedMessage>;
}

/**
 * The tenant offset a pattern resume replays topics without a position from: `since.offset`, or 0 (everything held)
 * when the offset belongs to another stream (`since.offsetEpoch` differs from `current.epoch`, or the offset is
 * ahead of `current.offset`); `Infinity` when the client gave neither (only `positions` count).
 */
export function resumeFromOffset(since: PatternSince, current: TenantOffset): number {
  const offset = since.offset;
  if (since.offsetEpoch !== undefined && since.offsetEpoch !== current.epoch) return 0;
  if (offset === undefined) return Infinity;
  return offset > current.offset ? 0 : offset;
}

/**
 * What a client that saw up to seq `after` of the view's epoch missed: the held messages after it, and the exact
 * range no longer held (`after + 1` to `droppedSeq`). `epochLost`: the client's position was in an epoch that no
 * longer exists, so the answer is not `recovered` even without a gap.
 */
export function replayAfter(tenant: string, topic: string, view: ResumeView, after: number, epochLost: boolean): ResumeResult {
  const gaps: Gap[] = [];
  const messages: PublishedMessage[] = [];
  if (after < view.droppedSeq) gaps.push({ tenant, topic, epoch: view.epoch, from: after + 1, to: view.droppedSeq });
  for (const m of view.held()) if (m.seq > after) messages.push(m);
  return { messages, gaps, recovered: gaps.length === 0 && !epochLost };
}

/**
 * What a client that saw up to `since` on an exact topic missed (`view` null: the store holds no stream for the
 * topic — nothing was published since it started, or it forgot the topic; a position in it is lost unless seq 0).
 * A different epoch means the stream the client knew is gone: everything of the current epoch is replayed, and the
 * client is told its old epoch cannot be resumed (a gap over the current epoch's dropped part, if any, and
 * `recovered: false`). A seq beyond the epoch's last is taken as the last.
 */
export function resumeTopic(tenant: string, topic: string, view: ResumeView | null, since: StreamPosition): ResumeResult {
  if (view === null) return { messages: [], gaps: [], recovered: since.seq === 0 };
  const sameEpoch = since.epoch === view.epoch;
  const after = sameEpoch ? Math.min(Math.max(0, Math.floor(since.seq)), view.seq) : 0;
  return replayAfter(tenant, topic, view, after, !sameEpoch && since.seq > 0);
}

/**
 * The last seq of the view's epoch that tenant offset `fromOffset` covers: the newest held message at or before
 * it; when none is, the last dropped one if it was at or before it (0 otherwise). For dropped messages after the
 * offset the first seq is not known exactly: the range that cannot be ruled out is reported.
 */
function coveredSeq(view: ResumeView, fromOffset: number): number {
  let after = 0;
  for (const m of view.held()) {
    if (m.offset > fromOffset) break;
    after = m.seq;
  }
  if (after === 0 && view.droppedOffset <= fromOffset) after = view.droppedSeq;
  return after;
}

/**
 * What a wildcard subscription missed, from the views of the topics concerned (each a topic the pattern matches;
 * the store chooses which: the in-memory store shows every topic it holds, a broker those named in
 * `since.positions` and those published after the resume offset). A topic with a position in `since.positions`
 * resumes from it ({@link resumeTopic}); one without resumes from the tenant offset ({@link resumeFromOffset}): all
 * of an epoch that began after it, else what came after it — nothing when the client gave no offset. Messages are
 * returned in publication order (tenant offset) across topics, gaps in the order of `views`.
 *
 * A view of null is a topic with no stream at all: it replays nothing, and the answer is not `recovered` if the
 * client had a position in it with seq > 0. {@link HistoryStore} shows no such topic (a position in a topic it
 * does not hold is ignored by a wildcard resume, though an exact resume reports it lost); the broker backplanes do.
 */
export function resumePattern(tenant: string, views: Iterable<readonly [topic: string, view: ResumeView | null]>, since: PatternSince, current: TenantOffset): ResumeResult {
  const result: ResumeResult = { messages: [], gaps: [], recovered: true };
  const fromOffset = resumeFromOffset(since, current);
  const positions = since.positions ?? {};
  for (const [topic, view] of views) {
    if (view === null) {
      if ((positions[topic]?.seq ?? 0) > 0) result.recovered = false;
      continue;
    }
    const known = Object.hasOwn(positions, topic) ? positions[topic] : undefined;
    let part: ResumeResult;
    if (known !== undefined) part = resumeTopic(tenant, topic, view, known);
    else if (fromOffset === Infinity || view.seq === 0) continue;
    // The epoch began after the client's offset: all of it is new to the client.
    else if (view.startOffset >= fromOffset) part = replayAfter(tenant, topic, view, 0, false);
    else part = replayAfter(tenant, topic, view, coveredSeq(view, fromOffset), false);
    for (const m of part.messages) result.messages.push(m);
    for (const g of part.gaps) result.gaps.push(g);
    if (!part.recovered) result.recovered = false;
  }
  result.messages.sort((a, b) => a.offset - b.offset);
  return result;
}
