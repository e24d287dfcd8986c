/**
 * The two etcd operations under EtcdLock: take a lock key (wait for one's turn) and release it. The
 * policy around them (deadline, abort, handle state) is in lock.ts.
 *
 * Key layout: `<prefix>locks/<encodeURIComponent(name)>/<x|s>/<lease hex>-<n>`, attached to the session
 * lease, value `{"pid":…,"hostname":…}` for people reading the key space. Waiters are ordered by the
 * key's create revision (etcd's global write order). An exclusive waiter waits for every earlier key to
 * go, a shared waiter only for earlier exclusive (`x/`) keys; each waits on the one just before it, with
 * a watch from the revision after its own read (such a watch is synced at once; one from an older
 * revision is only caught up by etcd's 100 ms loop, which is why the server-side lock service hands over
 * in about 66 ms where this takes about 5). When other writes slipped in between the read and the
 * watch's creation (etcd reports its revision on creation), the watch is unsynced: the waiter reads
 * again instead of waiting for the tick, up to three times in a row.
 *
 * Guarantees
 * - The hold's create revision (the fencing token) is larger than every earlier conflicting holder's.
 * - Every call is idempotent, so the client may resend it after a failure of unknown outcome.
 * - A waiter that gives up deletes its key before returning (stop: after the call in flight settles,
 *   so up to two call deadlines late when etcd is slow), or, when etcd is unreachable, hands the
 *   deletion to the session, which retries it until the key or its lease is gone.
 *
 * Not guaranteed
 * - Fairness between a waiter and a later `once` attempt: `once` never waits, so it cannot barge.
 */
import { hostname } from 'node:os';
import type { LockType } from '../lock.js';
import {
  type EtcdClient,
  LeaseNotFoundError,
  type PutResult,
  prefixEnd,
  type RangeResult,
} from './_client.js';
import { LeaseLost, type Session, type SessionLease } from './_session.js';
import { EtcdUnavailableError } from './errors.js';

/** Reads again at most this many times in a row because a new watch was unsynced; then waits on it. */
const MAX_STALE = 3;

/** A held lock key. */
export interface KeyHold {
  readonly key: string;
  /** The key's create revision: the fencing token. */
  readonly revision: bigint;
  readonly lease: SessionLease;
}

/** The waiter's lease ended while it waited (or its key vanished): start over with a fresh lease. */
class LeaseGone extends Error {}

/**
 * A release found the hold's key already gone: the lease ended (revoked, expired) or someone deleted
 * the key, so another process may have held the lock meanwhile. The policy turns it into LockLostError.
 */
export class KeyGone extends Error {}
KeyGone.prototype.name = 'KeyGone';

/** Resolves or rejects like `promise`, but rejects first with `stop.reason` or LeaseGone if those come first. */
function race<T>(promise: Promise<T>, stop: AbortSignal, lease: SessionLease): Promise<T> {
  promise.catch(() => {}); // if raced out, its failure is nobody's business
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      stop.removeEventListener('abort', onStop);
      lease.lost.removeEventListener('abort', onLost);
    };
    const onStop = () => {
      cleanup();
      reject(stop.reason);
    };
    const onLost = () => {
      cleanup();
      reject(new LeaseGone());
    };
    if (stop.aborted) return onStop();
    if (lease.lost.aborted) return onLost();
    stop.addEventListener('abort', onStop, { once: true });
    lease.lost.addEventListener('abort', onLost, { once: true });
    promise.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (err) => {
        cleanup();
        reject(err);
      },
    );
  });
}

/**
 * The operations EtcdLock's policy sits on: LockKeys (etcd alone) and LocalLocks (_local-locks.ts: the
 * in-process queue and re-entrancy in front of LockKeys), so neither the policy nor etcd knows the other.
 */
export interface LockKeyOps {
  /** The key prefix of lock `name` (what errors report as `lockPath`). */
  lockPrefix(name: string): string;
  /**
   * Takes the lock: the hold, or undefined when `once` and busy. Rejects with `stop.reason` when `stop`
   * aborts first (having removed its key), or with EtcdUnavailableError.
   */
  acquire(name: string, type: LockType, stop: AbortSignal, once: boolean): Promise<KeyHold | undefined>;
  /**
   * Releases a hold; rejects with KeyGone if its key was already gone (the hold was lost before), or
   * with EtcdUnavailableError if it could not be deleted.
   */
  release(hold: KeyHold): Promise<void>;
  /** Runs `fn` as the holder of `hold`: locks of the same name taken inside it re-enter the hold. */
  run<T>(hold: KeyHold, fn: () => T): T;
  /** The hold's lease ended: let the hold go without deleting its key (the key went with the lease). */
  forget(hold: KeyHold): void;
}

/** Takes and releases lock keys of one Etcd session. */
export class LockKeys implements LockKeyOps {
  readonly #client: EtcdClient;
  readonly #session: Session;
  readonly #prefix: string;
  readonly #value = JSON.stringify({ pid: process.pid, hostname: hostname() });
  /** Makes each key of a lease unique (several handles of one process may wait on one name). */
  #seq = 0;

  constructor(client: EtcdClient, session: Session, prefix: string) {
    this.#client = client;
    this.#session = session;
    this.#prefix = prefix;
  }

  /** The key prefix under which lock `name`'s waiters and holders live. */
  lockPrefix(name: string): string {
    return `${this.#prefix}locks/${encodeURIComponent(name)}/`;
  }

  /**
   * Takes the lock: resolves with the hold, or undefined when `once` and the lock is busy. Rejects with
   * `stop.reason` when `stop` aborts first, or with EtcdUnavailableError; the key is gone either way.
   */
  async acquire(
    name: string,
    type: LockType,
    stop: AbortSignal,
    once: boolean,
  ): Promise<KeyHold | undefined> {
    for (;;) {
      if (stop.aborted) throw stop.reason;
      const lease = await this.#session.current();
      try {
        return await this.#attempt(name, type, lease, stop, once);
      } catch (err) {
        if (!(err instanceof LeaseGone)) throw err;
        const reason = lease.lost.reason;
        if (reason instanceof LeaseLost && reason.closed)
          throw new EtcdUnavailableError(this.#client.endpoints, 'this Etcd was closed');
        // The lease expired while we waited: our key went with it; queue again under a fresh lease.
      }
    }
  }

  /** Runs `fn`: etcd alone knows no re-entrancy (LocalLocks adds it). */
  run<T>(_hold: KeyHold, fn: () => T): T {
    return fn();
  }

  /** Nothing to do: the key went with its lease, which the session revokes. */
  forget(_hold: KeyHold): void {}

  /**
   * Deletes the hold's key; on failure the session goes on trying in the background. Rejects with
   * KeyGone when the key was already gone: the delete's answer says so (nothing deleted), which is the
   * one cheap proof that the hold ended before its release. If the lease is gone too, the session is
   * told, so that every other hold of the lease learns it now rather than at the next keep-alive.
   */
  async release(hold: KeyHold): Promise<void> {
    let copies = 0;
    let deleted: number;
    try {
      ({ deleted } = await this.#client.delete({ key: hold.key }, { onSend: () => copies++ }));
    } catch (err) {
      this.#session.discard(hold.key, hold.lease);
      throw err;
    }
    if (deleted > 0) return;
    // Nothing deleted. With one copy sent, the key was gone before it; with more, an earlier copy may
    // have deleted it. Whether the lease still lives tells which: its end took the key.
    const ttl = hold.lease.lost.aborted
      ? -1
      : await this.#client.leaseTimeToLive(hold.lease.id).catch(() => undefined);
    if (ttl !== undefined && ttl <= 0) {
      this.#session.markLost(hold.lease, `etcd no longer knows lease ${hold.lease.hex}`);
      throw new KeyGone(`the key was gone at release: lease ${hold.lease.hex} had ended`);
    }
    if (ttl !== undefined && copies > 1) return; // the lease lives: an earlier copy deleted the key
    throw new KeyGone(
      ttl === undefined
        ? 'the key was gone at release, and whether its lease lives could not be checked'
        : 'the key was gone at release (deleted by someone else while its lease lived)',
    );
  }

  /** One queueing under one lease: put our key, then wait for the key just before it to go. */
  async #attempt(
    name: string,
    type: LockType,
    lease: SessionLease,
    stop: AbortSignal,
    once: boolean,
  ): Promise<KeyHold | undefined> {
    const base = this.lockPrefix(name);
    const key = `${base}${type === 'exclusive' ? 'x' : 's'}/${lease.hex}-${++this.#seq}`;
    const conflict = type === 'exclusive' ? base : `${base}x/`;
    const conflicts = { key: conflict, rangeEnd: prefixEnd(conflict) };
    const put = { type: 'put', key, value: this.#value, lease: lease.id, prevKv: true } as const;
    const newest = {
      type: 'range',
      ...conflicts,
      sortBy: 'create',
      sortOrder: 'descend',
      limit: 1,
      keysOnly: true,
    } as const;
    // Idempotent: a resend finds our key (prev_kv) and keeps its create revision.
    const enqueue = this.#client.txn(
      {
        compare: [{ ...conflicts, target: 'create', op: '=', value: 0n }],
        success: [put],
        failure: [newest, put],
      },
      { idempotent: true },
    );
    let pending: Promise<unknown> = enqueue;
    const readBefore = () => {
      const read = this.#before(key, revision, conflict);
      pending = read;
      return race(read, stop, lease);
    };
    let revision = 0n;
    try {
      const res = await race(enqueue, stop, lease);
      const prev = (res.results[res.succeeded ? 0 : 1] as PutResult).prevKv;
      revision = prev?.createRevision ?? res.revision;
      const hold = { key, revision, lease };
      if (res.succeeded) return hold;
      // Without prev_kv the range ran before our key existed: the newest conflicting key precedes us.
      let before = prev ? undefined : (res.results[0] as RangeResult).kvs[0]?.key;
      let readAt = res.revision;
      if (before === undefined) ({ before, readAt } = await readBefore());
      let stale = 0;
      while (before !== undefined) {
        if (once) {
          await this.#cleanup(key, lease, pending);
          return undefined;
        }
        const woke = await this.#waitDeleted(before, readAt + 1n, stop, lease, stale < MAX_STALE);
        stale = woke === 'stale' ? stale + 1 : 0;
        ({ before, readAt } = await readBefore());
      }
      return hold;
    } catch (err) {
      if (err instanceof LeaseNotFoundError) {
        this.#session.markLost(lease, 'etcd no longer knows the session lease');
        throw new LeaseGone();
      }
      if (err instanceof EtcdUnavailableError) {
        // etcd is unreachable: a delete now would only double the caller's wait; the session retries.
        pending.finally(() => this.#session.discard(key, lease)).catch(() => {});
      } else {
        await this.#cleanup(key, lease, pending);
      }
      throw err;
    }
  }

  /** The conflicting key created just before ours (if any), read while checking ours still exists. */
  async #before(key: string, revision: bigint, conflict: string) {
    const res = await this.#client.txn({
      compare: [{ key, target: 'create', op: '=', value: revision }],
      success: [
        {
          type: 'range',
          key: conflict,
          rangeEnd: prefixEnd(conflict),
          maxCreateRevision: revision - 1n,
          sortBy: 'create',
          sortOrder: 'descend',
          limit: 1,
          keysOnly: true,
        },
      ],
      failure: [],
    });
    if (!res.succeeded) throw new LeaseGone(); // our key vanished: its lease ended
    return { before: (res.results[0] as RangeResult).kvs[0]?.key, readAt: res.revision };
  }

  /**
   * Waits until `key` is deleted at or after `fromRevision`, then resolves 'deleted'. Resolves 'ended'
   * when the watch ends some other way (after a pause if in error), and, if `leaveStale`, 'stale' as
   * soon as etcd says the store moved past `fromRevision - 1` before the watch was created: such a
   * watch is "unsynced" and only catches up at etcd's 100 ms tick, so reading again is faster.
   */
  #waitDeleted(
    key: string,
    fromRevision: bigint,
    stop: AbortSignal,
    lease: SessionLease,
    leaveStale: boolean,
  ): Promise<'deleted' | 'ended' | 'stale'> {
    let watch: { close(): void } | undefined;
    const woke = new Promise<'deleted' | 'ended' | 'stale'>((resolve) => {
      watch = this.#client.watch(
        { key, fromRevision, noPut: true },
        {
          onCreated: (revision) => {
            if (leaveStale && revision >= fromRevision) resolve('stale');
          },
          onEvents: () => resolve('deleted'),
          onEnd: (end) => {
            if (end.compactRevision !== undefined) resolve('ended');
            else setTimeout(() => resolve('ended'), 50); // a broken stream: do not spin while etcd is down
          },
        },
      );
    });
    return race(woke, stop, lease).finally(() => watch?.close());
  }

  /** Deletes a key we may have created, after the call that may have created it has settled. */
  async #cleanup(key: string, lease: SessionLease, pending: Promise<unknown>): Promise<void> {
    await pending.catch(() => {});
    try {
      await this.#client.delete({ key });
    } catch {
      this.#session.discard(key, lease);
    }
  }
}
