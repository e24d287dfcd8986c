/**
 * EtcdLock: a named lock shared by every process (on any host) of an etcd cluster, with FileLock's
 * options and semantics, a fencing token, and a signal that says when the lock was lost.
 *
 * This file is the policy: the deadline, the abort signal, and the handle's state. Under it, the
 * in-process level (_local-locks.ts: a FIFO queue per lock in this process, re-entrancy) and the two etcd
 * operations (_lock-keys.ts: take a key, release it).
 *
 * Guarantees
 * - Exclusion while the session lease lives: no two handles hold an exclusive lock, or one exclusive
 *   and one shared, at the same time, except holds nested in one another. Waiters are served in the
 *   order they queued (FIFO): in this process first, then in etcd.
 * - Re-entrancy scoped to a live hold, as FileLock's: a lock of the same name taken (through the same
 *   Etcd) inside `withLock`'s callback nests in that hold; nested exclusive siblings take turns; an
 *   exclusive lock inside a shared hold fails with ERR_LOCK_UPGRADE. Nested handles share the root's
 *   key, fencing token and `lost`; the key is deleted when the root and every nested hold have ended.
 * - `fencingToken` strictly increases from one exclusive holder to the next (and from any holder to a
 *   later conflicting one), even when a holder lost its lease.
 * - `lost` aborts (reason: LockLostError, `ERR_LOCK_LOST`) when the session lease is, or may be, gone
 *   while this handle holds the lock; the next `unlock()` (or the end of `withLock`) then rejects with
 *   that error instead of succeeding, so code learns its critical section was not protected. The same
 *   happens when the release's delete finds the key already gone (the lease ended on the server before
 *   the process noticed, or someone deleted the key): the section was not protected either.
 * - A timed-out, aborted or failed wait deletes its key before it rejects (or the session retries the
 *   deletion in the background when etcd is unreachable).
 *
 * Not guaranteed
 * - Exclusion after a lease loss: a holder frozen (SIGSTOP, GC, swapping) for longer than the TTL
 *   loses the lock without running any code, and another process may take it while the first still
 *   believes it holds. Make writes conditional on the fencing token (docs/etcd.md).
 * - Re-entry through another Etcd object of the same process: each Etcd is a participant of its own,
 *   so such a nested lock waits for the outer one until its timeout.
 * - Waiting through an etcd outage: a call that finds no endpoint within `callTimeout` makes `lock()`
 *   reject with `ERR_ETCD_UNAVAILABLE` (the session deletes its key in the background); the caller decides
 *   whether to retry.
 */
import { setLongTimeout } from '../_long-timer.js';
import { InvalidOptionError } from '../errors.js';
import { LockAbortedError, LockTimeoutError } from '../filelock/errors.js';
import type { Lock, LockType } from '../lock.js';
import { KeyGone, type KeyHold, type LockKeyOps } from './_lock-keys.js';
import { LeaseLost } from './_session.js';
import { EtcdAlreadyLockedError, EtcdNotLockedError, LockLostError } from './errors.js';
import { type EtcdLockOptions, type ResolvedEtcdLockOptions, resolveEtcdLockOptions } from './options.js';

/** Why the policy stopped a wait (the values passed to `stop.abort`). */
const TIMED_OUT = Symbol('timed out');
const ABORTED = Symbol('aborted');

/** A signal that never aborts: `lost` before the first hold. */
const NEVER = new AbortController().signal;

/** What a holding handle owns. */
interface Held {
  hold: KeyHold;
  /** Aborts (with LockLostError) when the hold is lost; its signal is the handle's `lost`. */
  lost: AbortController;
  unsubscribe: () => void;
}

/** A named etcd lock; get one from `etcd.lock(name, options)`. Implements the {@link Lock} interface. */
export class EtcdLock implements Lock {
  /** The lock's name, as given. */
  readonly name: string;
  /** The etcd key prefix of the lock's waiters and holders (errors carry it as `lockPath`). */
  readonly lockPrefix: string;
  readonly #keys: LockKeyOps;
  readonly #options: ResolvedEtcdLockOptions;
  #held: Held | undefined;
  #acquiring = false;
  /** The loss of the last hold, until unlock() reports it or a new hold begins. */
  #lostError: LockLostError | undefined;
  #lost: AbortSignal = NEVER;

  /** @internal Use `etcd.lock(name, options)`. Validates the options; contacts etcd only on lock. */
  constructor(keys: LockKeyOps, name: string, options: EtcdLockOptions = {}) {
    this.#keys = keys;
    this.name = name;
    this.lockPrefix = keys.lockPrefix(name);
    this.#options = resolveEtcdLockOptions(options);
  }

  /** `'exclusive'` or `'shared'`. */
  get type(): LockType {
    return this.#options.type;
  }

  /** Whether this handle holds its lock (false again once it is lost). */
  get isLocked(): boolean {
    return this.#held !== undefined;
  }

  /**
   * While held: the lock key's create revision, as a decimal string. It strictly increases from holder
   * to holder; pass it to storage that refuses writes carrying a token older than one it has seen, or
   * compare it in an etcd transaction (`create_revision(key) == token`). Undefined when not held.
   */
  get fencingToken(): string | undefined {
    return this.#held && String(this.#held.hold.revision);
  }

  /** While held: the etcd key that represents the hold (it exists exactly as long as the hold). */
  get key(): string | undefined {
    return this.#held?.hold.key;
  }

  /**
   * Aborts, with a LockLostError as reason, if the lock is lost while held (the session lease expired,
   * or `etcd.close()` ran). A new signal per hold; before the first hold, one that never aborts.
   */
  get lost(): AbortSignal {
    return this.#lost;
  }

  /**
   * Waits for the lock, up to `timeout` ms. Rejects with `LockTimeoutError`, `LockAbortedError`,
   * `EtcdAlreadyLockedError` (this handle holds it or is acquiring it) or `EtcdUnavailableError`.
   */
  async lock(): Promise<void> {
    await this.#acquire(this.#options.timeout, true);
  }

  /** One attempt: resolves `false` when the lock is busy (without queueing). */
  async tryLock(): Promise<boolean> {
    return this.#acquire(-1, false);
  }

  /**
   * Releases the lock (deletes its key). Rejects with `EtcdNotLockedError` if this handle does not hold
   * it, with `LockLostError` if the hold was lost since it was taken, or with `EtcdUnavailableError`
   * if the key could not be deleted (the handle is released all the same and the deletion is retried
   * in the background until the key or its lease is gone).
   */
  async unlock(): Promise<void> {
    await this.#release();
  }

  /**
   * Runs `fn` while holding the lock and returns its result; always unlocks. If `fn` succeeded but the
   * lock was lost meanwhile, rejects with `LockLostError`; if `fn` threw, rethrows what it threw. Locks
   * of the same name taken (through the same Etcd) inside `fn` nest in this hold.
   */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', fn, 'a function');
    await this.#acquire(this.#options.timeout, true);
    const hold = this.#held!.hold;
    let result: T;
    try {
      result = await this.#keys.run(hold, fn);
    } catch (err) {
      await this.#release().catch(() => {});
      throw err;
    }
    await this.#release();
    return result;
  }

  /** Alias of `unlock()` that does nothing when not locked (and reports no loss), for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#held) await this.#release();
    this.#lostError = undefined;
  }

  /** Shared path of lock() and tryLock(); returns false only when busy and `throwOnBusy` is false. */
  async #acquire(timeout: number, throwOnBusy: boolean): Promise<boolean> {
    if (this.#held || this.#acquiring) throw new EtcdAlreadyLockedError(this.lockPrefix);
    const { type, signal } = this.#options;
    if (signal?.aborted) throw new LockAbortedError(this.lockPrefix, signal.reason);
    this.#acquiring = true;
    const start = performance.now();
    const stop = new AbortController();
    const timer = timeout > 0 ? setLongTimeout(() => stop.abort(TIMED_OUT), timeout) : undefined;
    const onAbort = () => stop.abort(ABORTED);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const hold = await this.#keys.acquire(this.name, type, stop.signal, timeout < 0);
      if (hold) {
        this.#hold(hold);
        return true;
      }
    } catch (err) {
      if (err === ABORTED) throw new LockAbortedError(this.lockPrefix, signal?.reason);
      if (err !== TIMED_OUT) throw err;
    } finally {
      timer?.clear();
      signal?.removeEventListener('abort', onAbort);
      this.#acquiring = false;
    }
    if (!throwOnBusy) return false;
    throw new LockTimeoutError(this.lockPrefix, Math.round(performance.now() - start), undefined);
  }

  /** Records a new hold and turns the loss of its lease into the loss of the lock. */
  #hold(hold: KeyHold): void {
    const onLost = () => {
      const reason = hold.lease.lost.reason;
      const why =
        reason instanceof LeaseLost
          ? reason.closed
            ? 'the Etcd session was closed'
            : reason.message
          : 'the session lease ended';
      this.#keys.forget(hold);
      this.#lose(held, why, reason);
    };
    const held: Held = {
      hold,
      lost: new AbortController(),
      unsubscribe: () => hold.lease.lost.removeEventListener('abort', onLost),
    };
    this.#held = held;
    this.#lostError = undefined;
    this.#lost = held.lost.signal;
    if (hold.lease.lost.aborted) onLost();
    else hold.lease.lost.addEventListener('abort', onLost, { once: true });
  }

  /** The hold is lost: stop holding, abort `lost`, keep the error for the next unlock(); once. */
  #lose(held: Held, why: string, cause: unknown): void {
    if (held.lost.signal.aborted) return;
    const error = new LockLostError(this.lockPrefix, `${why} (key ${held.hold.key})`, cause);
    if (this.#held === held) this.#held = undefined;
    this.#lostError = error;
    held.lost.abort(error);
  }

  /**
   * Ends the hold and deletes its key; see unlock(). The hold stays subscribed to its lease until the
   * delete has answered: a loss noticed meanwhile, or a key the delete finds already gone, rejects
   * with LockLostError (and aborts `lost`) instead of reporting a clean release.
   */
  async #release(): Promise<void> {
    const held = this.#held;
    if (!held) {
      const lost = this.#lostError;
      this.#lostError = undefined;
      throw lost ?? new EtcdNotLockedError(this.lockPrefix);
    }
    this.#held = undefined;
    let failure: unknown;
    try {
      await this.#keys.release(held.hold);
    } catch (err) {
      if (err instanceof KeyGone) this.#lose(held, err.message, err);
      else failure = err;
    } finally {
      held.unsubscribe();
    }
    if (held.lost.signal.aborted) {
      this.#lostError = undefined; // reported here, not again by the next unlock()
      throw held.lost.signal.reason;
    }
    if (failure !== undefined) throw failure;
  }
}
