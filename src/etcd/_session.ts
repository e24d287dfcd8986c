/**
 * The session of one `Etcd`: one lease that every lock key of the process is attached to, kept alive
 * every TTL/3, and revoked by `close()` so that every key goes at once.
 *
 * Guarantees
 * - Loss is reported conservatively (see _kept-lease.ts), and a lost lease is revoked in the background
 *   (it may still be alive if only this process lost track), so its keys do not outlive the moment this
 *   process declared them lost by more than one call.
 * - After a loss the next `current()` grants a fresh lease: a long-lived process keeps working.
 * - Keys that could not be deleted (etcd unreachable) are retried in the background until deleted or
 *   until their lease ends, so a waiter that gave up never blocks others for longer than that.
 */
import { type EtcdClient, LeaseNotFoundError, type TxnRequest } from './_client.js';
import { KeptLease, LeaseLost, type SessionLease } from './_kept-lease.js';
import { EtcdUnavailableError } from './errors.js';

export { LeaseLost, type SessionLease } from './_kept-lease.js';

/** The session lease of one Etcd, granted on demand and replaced after a loss. */
export class Session {
  readonly #client: EtcdClient;
  readonly #ttl: number;
  #lease: KeptLease | undefined;
  #granting: Promise<KeptLease> | undefined;
  #closed = false;
  /** Keys whose deletion failed, retried in the background, by key: their lease and how to delete them. */
  readonly #orphans = new Map<string, { lease: SessionLease; request: TxnRequest | undefined }>();
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
    for (const [key, orphan] of this.#orphans) if (orphan.lease === lease) this.#orphans.delete(key);
  }

  /**
   * Deletes `key` (of `lease`) in the background until it is gone or the lease ends: with a plain
   * delete, or with `request`, an idempotent transaction that deletes it (and writes its tombstone).
   */
  discard(key: string, lease: SessionLease, request?: TxnRequest): void {
    if (lease.lost.aborted || this.#closed) return;
    this.#orphans.set(key, { lease, request });
    this.#sweep(100);
  }

  #sweep(delay: number): void {
    if (this.#sweeper) return;
    this.#sweeper = setTimeout(async () => {
      for (const [key, { request }] of [...this.#orphans]) {
        try {
          if (request) await this.#client.txn(request, { idempotent: true });
          else await this.#client.delete({ key });
          this.#orphans.delete(key);
        } catch (err) {
          // The lease is gone, and the key with it; anything else: still unreachable, next round.
          if (err instanceof LeaseNotFoundError) this.#orphans.delete(key);
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
