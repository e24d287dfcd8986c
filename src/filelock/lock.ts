/**
 * FileLock: advisory, whole-file, cross-process locks with timeouts, cancellation and re-entrancy.
 *
 * Guarantees
 * - Two levels. In one process, callers queue fairly (FIFO) in a {@link LocalQueue} per lock file and wait
 *   on promises; the process then takes the OS lock (flock / LockFileEx) on its own descriptor, so other
 *   processes, worker threads, util-linux flock(1), Python's fcntl.flock and the Go tool are excluded.
 * - No thread ever blocks in the kernel: the backend makes single non-blocking attempts and this file waits
 *   between them, woken early when a townlock holder releases (it touches the lock file, waiters watch it)
 *   and otherwise polling with exponential backoff up to `maxRetryDelay`, so a foreign or crashed holder is
 *   noticed within that cap.
 * - Lock files are never deleted on unlock. Deleting them lets two processes hold "the lock" on two
 *   different inodes; instead every acquirer checks after locking that the path still names the inode it
 *   locked, and retries if not, which makes {@link cleanStaleLocks} safe.
 * - A timed-out or aborted wait leaves no descriptor, timer or watcher behind.
 *
 * Not guaranteed
 * - Fairness between processes: the kernel decides which waiter wins a released lock.
 * - Protection from code that ignores the lock: these are advisory locks.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { type FSWatcher, watch } from 'node:fs';
import { resolve } from 'node:path';
import { LocalQueue } from './_local-queue.js';
import {
  closeQuietly,
  isCurrent,
  type LockFd,
  openLockFile,
  releaseAndWake,
  takeLockFd,
  writeHolderInfo,
} from './_lock-file.js';
import { type LockBackend, type LockType, loadBackend, loadedBackend } from './backend.js';
import {
  AlreadyLockedError,
  LockAbortedError,
  LockTimeoutError,
  LockUpgradeError,
  NotLockedError,
} from './errors.js';
import { findHolderPid } from './holders.js';
import {
  type FileLockOptions,
  lockPathFor,
  type ResolvedLockOptions,
  resolveLockOptions,
} from './options.js';

/** Which locks the current async context holds, for re-entrancy; written only by `withLock`. */
const context = new AsyncLocalStorage<ReadonlyMap<string, FileLock>>();

/** The in-process queue of each lock file that is held or waited for; idle queues are dropped. */
const queues = new Map<string, LocalQueue>();

/** What a held FileLock owns: an OS descriptor, or nothing when it re-entered an outer hold. */
type Hold = { held: LockFd } | { reentrant: true };

/** An advisory lock on the file at `path`, taken on `<lockDir>/<basename>.lock`. */
export class FileLock {
  /** The protected file, absolute. */
  readonly path: string;
  /** The lock file, absolute: `<dirname(path)>/.gastown/locks/<basename(path)>.lock` by default. */
  readonly lockPath: string;
  readonly #options: ResolvedLockOptions;
  #hold: Hold | undefined;

  /** Validates the options; creates nothing until the first lock. */
  constructor(path: string, options: FileLockOptions = {}) {
    this.lockPath = lockPathFor(path, options?.lockDir);
    this.path = resolve(path);
    this.#options = resolveLockOptions(options);
  }

  /** `'exclusive'` or `'shared'`. */
  get type(): LockType {
    return this.#options.type;
  }

  /** Whether this handle currently holds its lock. */
  get isLocked(): boolean {
    return this.#hold !== undefined;
  }

  /** Takes the lock and returns the held handle: `await using l = await FileLock.acquire(path)`. */
  static async acquire(path: string, options?: FileLockOptions): Promise<FileLock> {
    const lock = new FileLock(path, options);
    await lock.lock();
    return lock;
  }

  /**
   * Waits for the lock, up to `timeout` ms. Rejects with `LockTimeoutError`, `LockAbortedError`,
   * `AlreadyLockedError` (this handle holds it) or `LockUpgradeError` (the context holds it shared).
   */
  async lock(): Promise<void> {
    await this.#acquire(this.#options.timeout, true);
  }

  /** One attempt, in-process queue included: resolves `false` when the lock is busy. */
  async tryLock(): Promise<boolean> {
    return this.#acquire(-1, false);
  }

  /** Releases the lock; rejects with `NotLockedError` if this handle does not hold it. */
  async unlock(): Promise<void> {
    const hold = this.#hold;
    if (!hold) throw new NotLockedError(this.lockPath);
    this.#hold = undefined;
    if ('reentrant' in hold) return;
    const queue = queues.get(this.lockPath)!;
    try {
      releaseAndWake(loadedBackend()!, this.lockPath, hold.held);
    } finally {
      queue.release(this.type);
      if (queue.idle) queues.delete(this.lockPath);
    }
  }

  /** Runs `fn` while holding the lock and returns its result; always unlocks, even if `fn` throws. */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    await this.lock();
    try {
      if ('reentrant' in this.#hold!) return await fn();
      const held = new Map(context.getStore());
      held.set(this.lockPath, this);
      return await context.run(held, fn);
    } finally {
      await this.unlock();
    }
  }

  /** Alias of `unlock()` that does nothing when not locked, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#hold) await this.unlock();
  }

  /** Shared path of lock() and tryLock(); returns false only when busy and `throwOnBusy` is false. */
  async #acquire(timeout: number, throwOnBusy: boolean): Promise<boolean> {
    if (this.#hold) throw new AlreadyLockedError(this.lockPath);
    const { type, signal } = this.#options;
    if (signal?.aborted) throw new LockAbortedError(this.lockPath, signal.reason);
    const outer = context.getStore()?.get(this.lockPath);
    if (outer?.isLocked) {
      if (outer.type === 'shared' && type === 'exclusive') throw new LockUpgradeError(this.lockPath);
      this.#hold = { reentrant: true };
      return true;
    }
    const backend = loadedBackend() ?? (await loadBackend());
    const start = performance.now();
    const deadline = timeout > 0 ? start + timeout : timeout === 0 ? Number.POSITIVE_INFINITY : start;
    const queue = queues.get(this.lockPath) ?? new LocalQueue();
    queues.set(this.lockPath, queue);
    if (!queue.tryAcquire(type)) {
      const granted = deadline > start && (await waitInQueue(queue, type, deadline, signal, this.lockPath));
      if (!granted) {
        if (queue.idle) queues.delete(this.lockPath);
        if (!throwOnBusy) return false;
        throw new LockTimeoutError(this.lockPath, Math.round(performance.now() - start), process.pid);
      }
    }
    let held: LockFd | undefined;
    try {
      held = await acquireOsLock(backend, this.lockPath, this.#options, deadline);
    } finally {
      if (!held) {
        queue.release(type);
        if (queue.idle) queues.delete(this.lockPath);
      }
    }
    if (!held) {
      if (!throwOnBusy) return false;
      throw new LockTimeoutError(
        this.lockPath,
        Math.round(performance.now() - start),
        findHolderPid(this.lockPath),
      );
    }
    if (type === 'exclusive') writeHolderInfo(held.fd, backend.infoOffset);
    this.#hold = { held };
    return true;
  }
}

/** Waits for a grant from the in-process queue; false on timeout, LockAbortedError on abort. */
async function waitInQueue(
  queue: LocalQueue,
  type: LockType,
  deadline: number,
  signal: AbortSignal | undefined,
  lockPath: string,
): Promise<boolean> {
  const { granted, cancel } = queue.enqueue(type);
  const onGrant = (wake: () => void) => {
    granted.then(wake);
    return () => {};
  };
  try {
    // cancel() is false once the grant happened: then the grant wins over a simultaneous timeout.
    return (await waitEvent(onGrant, deadline - performance.now(), signal, lockPath)) || !cancel();
  } catch (err) {
    if (!cancel()) queue.release(type); // granted in the same turn as the abort: give it back
    throw err;
  }
}

/**
 * Takes the OS lock: one non-blocking attempt, then waits (woken by the lock file changing, or by backoff)
 * until the deadline. Returns the locked descriptor, or undefined when the deadline passed.
 */
async function acquireOsLock(
  backend: LockBackend,
  lockPath: string,
  options: ResolvedLockOptions,
  deadline: number,
): Promise<LockFd | undefined> {
  let current: LockFd | undefined = takeLockFd(lockPath, options.mode);
  let watcher: FSWatcher | undefined;
  let delay = options.retryDelay;
  try {
    for (;;) {
      if (backend.tryLock(current.fd, options.type)) {
        if (isCurrent(current, lockPath)) {
          const locked = current;
          current = undefined;
          return locked;
        }
        // We locked an inode that cleanStaleLocks unlinked (or someone replaced): it protects nothing.
        closeQuietly(current.fd);
        current = undefined;
        watcher?.close();
        watcher = undefined;
        current = openLockFile(lockPath, options.mode);
        continue;
      }
      const remaining = deadline - performance.now();
      if (remaining <= 0) return undefined;
      watcher ??= watchQuietly(lockPath);
      const jittered = delay * (0.75 + Math.random() * 0.5);
      const woken = await pause(Math.min(jittered, remaining), watcher, options.signal, lockPath);
      if (!woken) delay = Math.min(delay * 2, options.maxRetryDelay);
    }
  } finally {
    watcher?.close();
    if (current) closeQuietly(current.fd);
  }
}

/** Watches the lock file for the releaser's touch; undefined if watching is impossible (polling still works). */
function watchQuietly(lockPath: string): FSWatcher | undefined {
  try {
    const watcher = watch(lockPath, { persistent: false });
    watcher.on('error', () => {});
    return watcher;
  } catch {
    return undefined;
  }
}

/** Sleeps up to `ms`, ending early (true) if the lock file changes. */
function pause(
  ms: number,
  watcher: FSWatcher | undefined,
  signal: AbortSignal | undefined,
  lockPath: string,
) {
  const onChange = (wake: () => void) => {
    watcher?.on('change', wake);
    return () => watcher?.off('change', wake);
  };
  return waitEvent(onChange, ms, signal, lockPath);
}

/**
 * Waits until `subscribe`'s wake callback fires (true) or `ms` passes (false); rejects with
 * LockAbortedError when `signal` aborts. Every timer and listener is removed however it ends.
 */
function waitEvent(
  subscribe: (wake: () => void) => () => void,
  ms: number,
  signal: AbortSignal | undefined,
  lockPath: string,
): Promise<boolean> {
  return new Promise<boolean>((resolvePromise, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => settle(() => reject(new LockAbortedError(lockPath, signal?.reason)));
    const timer = Number.isFinite(ms) ? setTimeout(() => settle(() => resolvePromise(false)), ms) : undefined;
    const unsubscribe = subscribe(() => settle(() => resolvePromise(true)));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs `fn` under a shared lock on `path` (see {@link FileLock}). */
export function withReadLock<T>(
  path: string,
  fn: () => T | Promise<T>,
  options?: FileLockOptions,
): Promise<T> {
  return new FileLock(path, { ...options, type: 'shared' }).withLock(fn);
}

/** Runs `fn` under an exclusive lock on `path` (see {@link FileLock}). */
export function withWriteLock<T>(
  path: string,
  fn: () => T | Promise<T>,
  options?: FileLockOptions,
): Promise<T> {
  return new FileLock(path, { ...options, type: 'exclusive' }).withLock(fn);
}
