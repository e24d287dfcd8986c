/**
 * The Lock interface: what every townlock lock offers, whatever excludes whom underneath (flock on one
 * host, etcd across hosts). Code written against it runs on either backend.
 */

/** Shared (read) or exclusive (write). */
export type LockType = 'exclusive' | 'shared';

/** A lock handle: FileLock (townlock/filelock) and the etcd lock (townlock/etcd) implement it. */
export interface Lock {
  /** `'exclusive'` or `'shared'`. */
  readonly type: LockType;
  /** Whether this handle currently holds its lock. */
  readonly isLocked: boolean;
  /**
   * Waits for the lock up to the handle's `timeout`. Rejects with `ERR_LOCK_TIMEOUT`, `ERR_LOCK_ABORTED`,
   * `ERR_ALREADY_LOCKED` (this handle holds it) or `ERR_LOCK_UPGRADE`.
   */
  lock(): Promise<void>;
  /** One attempt: resolves `false` when the lock is busy. */
  tryLock(): Promise<boolean>;
  /** Releases the lock; rejects with `ERR_NOT_LOCKED` if this handle does not hold it. */
  unlock(): Promise<void>;
  /** Runs `fn` while holding the lock and returns its result; always unlocks, even if `fn` throws. */
  withLock<T>(fn: () => T | Promise<T>): Promise<T>;
  /** Alias of `unlock()` that does nothing when not locked, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}
