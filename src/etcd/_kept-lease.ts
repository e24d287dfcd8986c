/**
 * One granted session lease and its keep-alive: a keep-alive every TTL/3 on a stream that is replaced
 * (on the next endpoint) when it breaks or leaves a keep-alive unanswered until the next beat, and a
 * `lost` signal.
 *
 * Guarantees
 * - `lost` aborts as soon as etcd answers that the lease is gone, or as soon as TTL seconds have passed
 *   since the send of the last keep-alive etcd answered: from then on etcd may have expired it. The
 *   clock is monotonic, so a process frozen by SIGSTOP (or a long GC pause) sees the loss on its first
 *   timer after it resumes.
 * - A member that stops answering without an error (frozen, black-holed) costs the lease nothing while
 *   a quorum is reachable: the keep-alive sent to it is unanswered at the next beat, the stream is
 *   abandoned (the client moves to the next endpoint) and a keep-alive goes there at once, at most two
 *   periods after the last answered one, within the TTL of three.
 *
 * Not guaranteed
 * - That etcd has not expired the lease before `lost` aborts: a process that is paused, or whose
 *   keep-alives are delayed, cannot know earlier. Fencing tokens close that gap (docs/etcd.md).
 */
import { setMaxListeners } from 'node:events';
import type { EtcdClient, KeepAliveStream } from './_client.js';

/** Why a lease's `lost` signal aborted. */
export class LeaseLost extends Error {
  /** True when the session was closed on purpose. */
  readonly closed: boolean;

  constructor(message: string, closed: boolean) {
    super(message);
    this.closed = closed;
  }
}
LeaseLost.prototype.name = 'LeaseLost';

/** A session lease as lock code sees it. */
export interface SessionLease {
  readonly id: bigint;
  /** The id in hex, as etcdctl prints it (used in key names). */
  readonly hex: string;
  /** Aborts, with a {@link LeaseLost} reason, when the lease is gone or may be gone. */
  readonly lost: AbortSignal;
}

/** One granted lease and its keep-alive machinery. */
export class KeptLease implements SessionLease {
  readonly id: bigint;
  readonly hex: string;
  readonly #controller = new AbortController();
  readonly #client: EtcdClient;
  readonly #ttlMs: number;
  /** Monotonic time until which etcd surely keeps the lease. */
  #validUntil: number;
  /** Send times of keep-alives not answered yet, oldest first. */
  #sent: number[] = [];
  #stream: KeepAliveStream | undefined;
  #tick: NodeJS.Timeout | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #reopen: NodeJS.Timeout | undefined;

  constructor(client: EtcdClient, id: bigint, ttlSeconds: number, grantSentAt: number) {
    this.#client = client;
    // Every hold and every wait of the session listens here; Node warns past 10 listeners by default.
    setMaxListeners(0, this.#controller.signal);
    this.id = id;
    this.hex = id.toString(16);
    this.#ttlMs = ttlSeconds * 1000;
    this.#validUntil = grantSentAt + this.#ttlMs;
    this.#armExpiry();
    this.#open();
    this.#tick = setInterval(() => this.#beat(), this.#ttlMs / 3);
  }

  get lost(): AbortSignal {
    return this.#controller.signal;
  }

  /** Stops keeping the lease alive and aborts `lost` with `reason`; idempotent. */
  end(reason: LeaseLost): void {
    if (this.lost.aborted) return;
    clearInterval(this.#tick);
    clearTimeout(this.#expiry);
    clearTimeout(this.#reopen);
    this.#stream?.close();
    this.#stream = undefined;
    this.#controller.abort(reason);
  }

  /** One keep-alive period: check the clock, replace a stream that stopped answering, send. */
  #beat(): void {
    if (this.#checkExpired()) return;
    const oldest = this.#sent[0];
    // Half a period, not a whole one: a timer may fire a little early, and waiting one more beat would
    // leave no time for the next endpoint (last answer up to 1 period before the freeze, detection 2
    // periods after it: the whole TTL).
    if (oldest !== undefined && performance.now() - oldest >= this.#ttlMs / 6) {
      // A keep-alive unanswered for a period: the endpoint is stuck (frozen, black-holed). Abandon
      // it, which also moves the client (and the other streams on it) to the next endpoint: closing
      // alone would reopen on the same one until the TTL ran out.
      this.#stream?.abandon();
      this.#stream = undefined;
      this.#sent = [];
      this.#open();
      return;
    }
    this.#send();
  }

  /** Ends the lease as lost if its validity has run out; true if it has. */
  #checkExpired(): boolean {
    if (performance.now() < this.#validUntil) return false;
    this.end(new LeaseLost(`no keep-alive of lease ${this.hex} was answered within its TTL`, false));
    return true;
  }

  #armExpiry(): void {
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(() => this.#checkExpired(), Math.max(0, this.#validUntil - performance.now()));
  }

  #send(): void {
    if (!this.#stream) return;
    this.#sent.push(performance.now());
    this.#stream.send();
  }

  /** Opens a keep-alive stream (on the client's current endpoint) and sends one keep-alive at once. */
  #open(): void {
    this.#stream = this.#client.keepAlive(this.id, {
      onAnswer: (ttl) => {
        const sentAt = this.#sent.shift();
        if (ttl <= 0) {
          this.end(new LeaseLost(`etcd says lease ${this.hex} has expired`, false));
          return;
        }
        if (sentAt !== undefined) this.#validUntil = Math.max(this.#validUntil, sentAt + ttl * 1000);
        this.#armExpiry();
      },
      onError: () => {
        this.#stream = undefined;
        this.#sent = [];
        if (this.lost.aborted) return;
        clearTimeout(this.#reopen);
        this.#reopen = setTimeout(() => {
          if (!this.lost.aborted && !this.#stream) this.#open();
        }, 100);
      },
    });
    this.#send();
  }
}
