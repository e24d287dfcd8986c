/**
 * The session of one `Etcd`: one lease that every lock key of the process is attached to, kept alive
 * every TTL/3, and revoked by `close()` so that every key goes at once.
 *
 * Guarantees
 * - Loss is reported conservatively: a lease counts as lost (its `lost` signal aborts) as soon as etcd
 *   says it is gone, or as soon as TTL seconds have passed since the send of the last keep-alive etcd
 *   answered: from then on etcd may have expired it. The clock is monotonic, so a process frozen by
 *   SIGSTOP (or a long GC pause) sees the loss on its first timer after it resumes.
 * - A lost lease is revoked in the background (it may still be alive if only this process lost track),
 *   so its keys do not outlive the moment this process declared them lost by more than one call.
 * - After a loss the next `current()` grants a fresh lease: a long-lived process keeps working.
 * - Keys that could not be deleted (etcd unreachable) are retried in the background until deleted or
 *   until their lease ends, so a waiter that gave up never blocks others for longer than that.
 *
 * Not guaranteed
 * - That etcd has not expired the lease before `lost` aborts: a process that is paused, or whose
 *   keep-alives are delayed, cannot know earlier. Fencing tokens close that gap (docs/etcd.md).
 */
import { setMaxListeners } from 'node:events';
import type { EtcdClient, KeepAliveStream } from './_client.js';
import { EtcdUnavailableError } from './errors.js';

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
class KeptLease implements SessionLease {
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
    if (oldest !== undefined && performance.now() - oldest >= this.#ttlMs / 3) {
      // A keep-alive unanswered for a whole period: the endpoint is stuck, try the next one.
      this.#stream?.close();
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

/** The session lease of one Etcd, granted on demand and replaced after a loss. */
export class Session {
  readonly #client: EtcdClient;
  readonly #ttl: number;
  #lease: KeptLease | undefined;
  #granting: Promise<KeptLease> | undefined;
  #closed = false;
  /** Keys whose deletion failed, retried in the background, by key. */
  readonly #orphans = new Map<string, SessionLease>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(client: EtcdClient, ttlSeconds: number) {
    this.#client = client;
    this.#ttl = ttlSeconds;
  }

  /** The live lease, granting one if there is none; rejects with EtcdUnavailableError. */
  async current(): Promise<SessionLease> {
    if (this.#closed) throw new EtcdUnavailableError(this.#client.endpoints, 'this Etcd was closed');
    if (this.#lease && !this.#lease.lost.aborted) return this.#lease;
    this.#granting ??= this.#grant().finally(() => {
      this.#granting = undefined;
    });
    return this.#granting;
  }

  async #grant(): Promise<KeptLease> {
    const sentAt = performance.now();
    const { id, ttl } = await this.#client.leaseGrant(this.#ttl);
    const lease = new KeptLease(this.#client, id, ttl, sentAt);
    if (this.#closed) {
      lease.end(new LeaseLost('the session was closed', true));
      await this.#client.leaseRevoke(id).catch(() => {});
      throw new EtcdUnavailableError(this.#client.endpoints, 'this Etcd was closed');
    }
    lease.lost.addEventListener('abort', () => this.#onLost(lease), { once: true });
    this.#lease = lease;
    return lease;
  }

  /** Declares `lease` lost now (etcd refused it for a put); no-op if it already is. */
  markLost(lease: SessionLease, why: string): void {
    if (lease === this.#lease) this.#lease.end(new LeaseLost(why, false));
  }

  /** A lost lease may still be alive on the server: revoke it so its keys go now. */
  #onLost(lease: KeptLease): void {
    if (this.#lease === lease) this.#lease = undefined;
    const reason = lease.lost.reason as LeaseLost;
    if (!reason.closed) this.#client.leaseRevoke(lease.id).catch(() => {});
    for (const [key, owner] of this.#orphans) if (owner === lease) this.#orphans.delete(key);
  }

  /** Deletes `key` (of `lease`) in the background until it is gone or the lease ends. */
  discard(key: string, lease: SessionLease): void {
    if (lease.lost.aborted || this.#closed) return;
    this.#orphans.set(key, lease);
    this.#sweep(100);
  }

  #sweep(delay: number): void {
    if (this.#sweeper) return;
    this.#sweeper = setTimeout(async () => {
      for (const key of [...this.#orphans.keys()]) {
        try {
          await this.#client.delete({ key });
          this.#orphans.delete(key);
        } catch {
          // still unreachable: next round
        }
      }
      this.#sweeper = undefined;
      if (this.#orphans.size > 0 && !this.#closed) this.#sweep(Math.min(delay * 2, 5000));
    }, delay);
  }

  /** Ends the session: stops keep-alives, revokes the lease (deleting every key) and closes the client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#sweeper);
    this.#orphans.clear();
    const lease = this.#lease ?? (await this.#granting?.catch(() => undefined));
    this.#lease = undefined;
    try {
      if (lease) {
        lease.end(new LeaseLost('the session was closed', true));
        await this.#client.leaseRevoke(lease.id);
      }
    } finally {
      this.#client.close();
    }
  }
}
