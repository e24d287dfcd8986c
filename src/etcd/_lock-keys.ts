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
 * Late copies. The client resends an idempotent call to the next member when the first has not
 * answered after callTimeout/8, and leaves the first copy in flight. A member frozen (SIGSTOP, a paused
 * VM) with the enqueue unread reads it when it resumes, with a fresh gRPC deadline, and applies it: after
 * we may have taken the lock and deleted the key. A plain enqueue would create the key again, on our
 * live lease, and it would block the lock for everyone until the session ends. So the enqueue of key
 * `<lease hex>-<n>` requires the tombstone `<prefix>released/<lease hex>-<n>` to be absent, and a key
 * whose enqueue was sent more than once is deleted in the same transaction that writes its tombstone
 * (on the session lease): a late copy then changes nothing. No time bounds how late a copy can be, so a
 * tombstone stays until the session lease ends (close(), expiry); there is one per lock attempt whose
 * enqueue was resent, which happens only while a member is slow or gone. Alternatives rejected: not
 * hedging the enqueue makes every lock wait out callTimeout on a black-holed member; deleting our own
 * resurrected keys when a watch reports them needs a watch on every lock name we ever used.
 *
 * Guarantees
 * - The hold's create revision (the fencing token) is larger than every earlier conflicting holder's.
 * - Every call is idempotent, so the client may resend it after a failure of unknown outcome.
 * - A key this process deleted is never created again by a late copy of its enqueue (above).
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
  type TxnRequest,
  type TxnResult,
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
  /**
   * Set when the enqueue that created the key was sent more than once: the tombstone key its release
   * must write, so that a copy still in flight cannot create the key again (see the module comment).
   */
  readonly tombstone?: string;
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
  /** A waiter reads again after this many ms without news from its watch (see #waitDeleted). */
  readonly #recheck: number;

  constructor(client: EtcdClient, session: Session, prefix: string, recheckMs: number) {
    this.#client = client;
    this.#session = session;
    this.#prefix = prefix;
    this.#recheck = recheckMs;
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
    if (hold.tombstone) return this.#releaseWithTombstone(hold, hold.tombstone);
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

  /**
   * Releases a hold whose enqueue was sent more than once: deletes the key and writes its tombstone in
   * one transaction, if the key is still the hold's. The tombstone also tells a resend of this very
   * release (its first copy applied) from a key that was gone before it.
   */
  async #releaseWithTombstone(hold: KeyHold, tombstone: string): Promise<void> {
    let res: TxnResult;
    try {
      res = await this.#client.txn(this.#burial(hold.key, tombstone, hold.lease, hold.revision), {
        idempotent: true,
      });
    } catch (err) {
      if (err instanceof LeaseNotFoundError) {
        this.#session.markLost(hold.lease, `etcd no longer knows lease ${hold.lease.hex}`);
        throw new KeyGone(`the key was gone at release: lease ${hold.lease.hex} had ended`);
      }
      this.#session.discard(hold.key, hold.lease, this.#burial(hold.key, tombstone, hold.lease));
      throw err;
    }
    if (res.succeeded) return;
    if ((res.results[0] as RangeResult).kvs.length > 0) return; // an earlier copy of this release
    const ttl = await this.#client.leaseTimeToLive(hold.lease.id).catch(() => undefined);
    if (ttl !== undefined && ttl <= 0) {
      this.#session.markLost(hold.lease, `etcd no longer knows lease ${hold.lease.hex}`);
      throw new KeyGone(`the key was gone at release: lease ${hold.lease.hex} had ended`);
    }
    throw new KeyGone('the key was gone at release (deleted by someone else while its lease lived)');
  }

  /**
   * The transaction that deletes `key` and writes its tombstone (on `lease`): only if the key still has
   * create revision `revision` when one is given, else unconditionally. Its failure branch reads the
   * tombstone.
   */
  #burial(key: string, tombstone: string, lease: SessionLease, revision?: bigint): TxnRequest {
    return {
      compare: revision === undefined ? [] : [{ key, target: 'create', op: '=', value: revision }],
      success: [
        { type: 'delete', key },
        { type: 'put', key: tombstone, value: '', lease: lease.id },
      ],
      failure: [{ type: 'range', key: tombstone, countOnly: true }],
    };
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
    const n = ++this.#seq;
    const key = `${base}${type === 'exclusive' ? 'x' : 's'}/${lease.hex}-${n}`;
    const tombstone = `${this.#prefix}released/${lease.hex}-${n}`;
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
    // Idempotent: a resend finds our key (prev_kv) and keeps its create revision. The range runs
    // before the put, so without prev_kv it returns the newest conflicting key created before ours.
    // A copy that etcd applies only after we deleted the key (a member frozen with it in flight reads it
    // when it resumes) must not create it again: it would block the lock until our session ends. So the
    // enqueue requires our tombstone to be absent, and a key whose enqueue was sent more than once is
    // deleted together with writing its tombstone (see the module comment).
    let copies = 0;
    const enqueue = this.#client.txn(
      {
        compare: [{ key: tombstone, target: 'create', op: '=', value: 0n }],
        success: [newest, put],
        failure: [],
      },
      { idempotent: true, onSend: () => copies++ },
    );
    let pending: Promise<unknown> = enqueue;
    /** What deleting our key must also do: write the tombstone if a copy of the enqueue may be late. */
    const buried = () => (copies > 1 ? tombstone : undefined);
    const readBefore = () => {
      const read = this.#before(key, revision, conflict);
      pending = read;
      return race(read, stop, lease);
    };
    let revision = 0n;
    try {
      const res = await race(enqueue, stop, lease);
      if (!res.succeeded) throw new LeaseGone(); // our tombstone exists: only a late copy gets here
      const prev = (res.results[1] as PutResult).prevKv;
      revision = prev?.createRevision ?? res.revision;
      const hold: KeyHold = { key, revision, lease, ...(copies > 1 ? { tombstone } : {}) };
      // Without prev_kv the range ran before our key existed: the newest conflicting key precedes us.
      // With it (a resend found our key), the range may have seen ours or later keys: read again.
      let before = (res.results[0] as RangeResult).kvs[0]?.key;
      let readAt = res.revision;
      if (prev) ({ before, readAt } = await readBefore());
      let stale = 0;
      while (before !== undefined) {
        if (once) {
          await this.#cleanup(key, lease, pending, buried());
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
      if (err instanceof LeaseGone) {
        // Our key goes with the lease (the session revokes it), so no delete. The call in flight, if
        // any, ends within its deadline: if etcd answered nobody, say so now rather than grant a new
        // lease, which would take another callTimeout (a majority outage ends leases this way).
        const outcome = await pending.then(
          () => undefined,
          (e: unknown) => e,
        );
        if (outcome instanceof EtcdUnavailableError) throw outcome;
        throw err;
      }
      if (err instanceof EtcdUnavailableError) {
        // etcd is unreachable: a delete now would only double the caller's wait; the session retries.
        pending
          .finally(() => {
            const grave = buried();
            this.#session.discard(key, lease, grave ? this.#burial(key, grave, lease) : undefined);
          })
          .catch(() => {});
      } else {
        await this.#cleanup(key, lease, pending, buried);
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
   * Resolves 'ended' too after `#recheck` ms (TTL/3) with no news: a watch on a member that froze
   * after creating it reports nothing and no error, so the waiter reads again (the read moves to the
   * next member if this one does not answer) and watches anew from the client's current endpoint.
   */
  #waitDeleted(
    key: string,
    fromRevision: bigint,
    stop: AbortSignal,
    lease: SessionLease,
    leaveStale: boolean,
  ): Promise<'deleted' | 'ended' | 'stale'> {
    let watch: { close(): void } | undefined;
    let recheck: NodeJS.Timeout | undefined;
    const woke = new Promise<'deleted' | 'ended' | 'stale'>((resolve) => {
      recheck = setTimeout(() => resolve('ended'), this.#recheck);
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
    return race(woke, stop, lease).finally(() => {
      clearTimeout(recheck);
      watch?.close();
    });
  }

  /**
   * Deletes a key we may have created, after the call that may have created it has settled, writing
   * its tombstone if `tombstone` says one is needed (asked only then: the enqueue's copies are counted
   * once it settled).
   */
  async #cleanup(
    key: string,
    lease: SessionLease,
    pending: Promise<unknown>,
    tombstone: string | undefined | (() => string | undefined),
  ): Promise<void> {
    await pending.catch(() => {});
    const grave = typeof tombstone === 'function' ? tombstone() : tombstone;
    const burial = grave ? this.#burial(key, grave, lease) : undefined;
    try {
      if (burial) await this.#client.txn(burial, { idempotent: true });
      else await this.#client.delete({ key });
    } catch (err) {
      if (err instanceof LeaseNotFoundError) return; // the key went with the lease
      this.#session.discard(key, lease, burial);
    }
  }
}
