/**
 * Which nodes answer now, for the per-user connection limit of the broker backplanes.
 *
 * A node that crashed (`kill -9`, a lost host) leaves its users' connections registered on the broker until its
 * heartbeats have been missing for `nodeTtl` (15 s by default). Its clients reconnect to the surviving hubs at
 * once; counted with those ghosts, they would push the user over the limit, and the hub would close one of the
 * user's live connections (4429, which clients take as "stop reconnecting"). So before closing anything for the
 * limit, the hub asks ({@link NodeProbes.filter}) each other node in the user's list whether it is there — a ping
 * it must answer within {@link PROBE_TIMEOUT} ms, or the broker's own word that nobody listens on its subject
 * (Redis's `PUBLISH` count, NATS's "no responders") — and counts only the connections of nodes that answered.
 * Nothing is deleted on the broker: the heartbeat sweep still removes a dead node's entries after `nodeTtl`.
 *
 * Internal to the hub, not a package entry point. Not tagged internal here: in a file's first comment the tag
 * attaches to the first statement, which `stripInternal` then drops from the declarations.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { ownerNode } from './broker-names.js';

/** Milliseconds a node has to answer a probe. */
export const PROBE_TIMEOUT = 1_000;
/** Milliseconds a node that did not answer is taken as gone without asking again (a reconnect storm asks once). */
export const GONE_FOR = 2_000;

/** Node probes: verdicts per node (shared by concurrent callers, "gone" remembered briefly) and ping/pong matching. */
export class NodeProbes {
  private readonly gone = new Map<string, number>();
  private readonly running = new Map<string, Promise<boolean>>();
  private readonly pings = new Map<string, (answered: boolean) => void>();

  /**
   * @param self this node's id (its connections always count: the hub checks those itself)
   * @param probe whether a node answers now (rejecting counts as no)
   */
  constructor(
    private readonly self: string,
    private readonly probe: (node: string) => Promise<boolean>,
  ) {}

  /** `ids` in the same order, without the connections of other nodes that do not answer now. */
  async filter(ids: string[]): Promise<string[]> {
    const nodes = new Set<string>();
    for (const id of ids) {
      const node = ownerNode(id);
      if (node !== null && node !== this.self) nodes.add(node);
    }
    if (nodes.size === 0) return ids;
    const answered = new Set<string>();
    await Promise.all([...nodes].map(async (node) => {
      if (await this.answers(node)) answered.add(node);
    }));
    return ids.filter((id) => {
      const node = ownerNode(id);
      return node === null || node === this.self || answered.has(node);
    });
  }

  /** Whether `node` answers (one probe at a time per node; a recent "no" is reused for {@link GONE_FOR} ms). */
  answers(node: string): Promise<boolean> {
    const until = this.gone.get(node);
    if (until !== undefined) {
      if (until > Date.now()) return Promise.resolve(false);
      this.gone.delete(node);
    }
    let running = this.running.get(node);
    if (running === undefined) {
      running = this.probe(node)
        .catch(() => false)
        .then((alive) => {
          this.running.delete(node);
          if (!alive) this.gone.set(node, Date.now() + GONE_FOR);
          return alive;
        });
      this.running.set(node, running);
    }
    return running;
  }

  /** A new ping: its nonce (to send), and whether the pong came within `ms` (see {@link NodeProbes.pong}). */
  ping(ms = PROBE_TIMEOUT): { nonce: string; answered: Promise<boolean> } {
    const nonce = randomBytes(9).toString('base64url');
    const answered = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => settle(false), ms);
      timer.unref?.();
      const settle = (yes: boolean): void => {
        clearTimeout(timer);
        this.pings.delete(nonce);
        resolve(yes);
      };
      this.pings.set(nonce, settle);
    });
    return { nonce, answered };
  }

  /** The pong of a ping (unknown or late nonces are ignored). */
  pong(nonce: string): void {
    this.pings.get(nonce)?.(true);
  }

  /** Gives up a ping (the broker said nobody would receive it). */
  cancel(nonce: string): void {
    this.pings.get(nonce)?.(false);
  }
}
