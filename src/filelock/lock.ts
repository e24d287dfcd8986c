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
 * - A timed-out or aborted wait leaves no descriptor or timer behind, and its file watcher is closed at
 *   the next turn of the event loop (closing an inotify watch waits for the kernel).
 *
 * Not guaranteed
 * - Fairness between processes: the kernel decides which waiter wins a released lock.
 * - Protection from code that ignores the lock: these are advisory locks.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { FSWatcher } from 'node:fs';
import { resolve } from 'node:path';
import type { Lock } from '../lock.js';
import { LocalQueue } from './_local-queue.js';
import {
  closeQuietly,
  isCurrent,
  type LockFd,
  openLockFile,
  releaseAndWake,
  scheduleHolderInfo,
  takeLockFd,
} from './_lock-file.js';
import { closeSoon, pause, waitEvent, watchQuietly } from './_wait.js';
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

/** A lock held by `withLock` in the current async context, and the ones around it (for re-entrancy). */
interface HeldInContext {
  lock: FileLock;
  outer: HeldInContext | undefined;
}

/** Which locks the current async context holds; written only by `withLock`. */
const context = new AsyncLocalStorage<HeldInContext>();

/** The innermost lock on `lockPath` the current context still holds, if any. */
function heldInContext(lockPath: string): FileLock | undefined {
  for (let h = context.getStore(); h; h = h.outer) {
    if (h.lock.lockPath === lockPath && h.lock.isLocked) return h.lock;
  }
  return undefined;
}

/** The in-process queue of each lock file that is held or waited for; idle queues are dropped. */
const queues = new Map<string, LocalQueue>();

/** What a held FileLock owns: an OS descriptor, or nothing when it re-entered an outer hold. */
type Hold = { held: LockFd; cancelInfo: (() => void) | undefined } | { reentrant: true };

/** An advisory lock on the file at `path`, taken on `<lockDir>/<basename>.lock`. */
export class FileLock implements Lock {
  /** The protected file, absolute. */
  readonly path: string;
  /** The lock file, absolute: `<dirname(path)>/.gastown/locks/<basename(path)>.lock` by default. */
  readonly lockPath: string;
  readonly #options: ResolvedLockOptions;
  #hold: Hold | undefined;
  /** True while an acquisition through this handle is in progress. */
  #acquiring = false;

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
    this.#release();
  }

  /** Runs `fn` while holding the lock and returns its result; always unlocks, even if `fn` throws. */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    await this.#acquire(this.#options.timeout, true);
    try {
      if ('reentrant' in this.#hold!) return await fn();
      return await context.run({ lock: this, outer: context.getStore() }, fn);
    } finally {
      this.#release();
    }
  }

  /** Alias of `unlock()` that does nothing when not locked, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#hold) this.#release();
  }

  /** Gives back the OS lock, then the in-process grant, waking the next waiter. */
  #release(): void {
    const hold = this.#hold;
    if (!hold) throw new NotLockedError(this.lockPath);
    this.#hold = undefined;
    if ('reentrant' in hold) return;
    const queue = queues.get(this.lockPath)!;
    hold.cancelInfo?.();
    try {
      releaseAndWake(loadedBackend()!, this.lockPath, hold.held);
    } finally {
      queue.release(this.type);
      if (queue.idle) queues.delete(this.lockPath);
    }
  }

  /** Shared path of lock() and tryLock(); returns false only when busy and `throwOnBusy` is false. */
  async #acquire(timeout: number, throwOnBusy: boolean): Promise<boolean> {
    if (this.#hold || this.#acquiring) throw new AlreadyLockedError(this.lockPath);
    this.#acquiring = true;
    try {
      return await this.#acquireOnce(timeout, throwOnBusy);
    } finally {
      this.#acquiring = false;
    }
  }

  /** The body of #acquire, run while `#acquiring` guards the handle against a second caller. */
  async #acquireOnce(timeout: number, throwOnBusy: boolean): Promise<boolean> {
    const { type, signal } = this.#options;
    if (signal?.aborted) throw new LockAbortedError(this.lockPath, signal.reason);
    const outer = heldInContext(this.lockPath);
    if (outer) {
      if (outer.type === 'shared' && type === 'exclusive') throw new LockUpgradeError(this.lockPath);
      this.#hold = { reentrant: true };
      return true;
    }
    const backend = loadedBackend() ?? (await loadBackend());
    const start = performance.now();
    const deadline = timeout > 0 ? start + timeout : timeout === 0 ? Number.POSITIVE_INFINITY : start;
    let queue = queues.get(this.lockPath);
    if (!queue) {
      queue = new LocalQueue();
      queues.set(this.lockPath, queue);
    }
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
      const attempt = attemptOsLock(
        backend,
        this.lockPath,
        this.#options,
        takeLockFd(this.lockPath, this.#options.mode),
      );
      held =
        'locked' in attempt
          ? attempt.locked
          : await waitForOsLock(backend, this.lockPath, this.#options, deadline, attempt.open);
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
    const cancelInfo = type === 'exclusive' ? scheduleHolderInfo(held.fd, backend.infoOffset) : undefined;
    this.#hold = { held, cancelInfo };
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
 * One OS-level attempt on the open descriptor `fd`. If what it locked is no longer the file at the path
 * (cleanStaleLocks unlinked it, or it was replaced), the lock protects nothing: it reopens and tries
 * again. Returns the locked descriptor, or the open one to wait on when the lock is busy.
 */
function attemptOsLock(
  backend: LockBackend,
  lockPath: string,
  options: ResolvedLockOptions,
  fd: LockFd,
): { locked: LockFd } | { open: LockFd } {
  let current = fd;
  for (;;) {
    try {
      if (!backend.tryLock(current.fd, options.type)) return { open: current };
      if (isCurrent(current, lockPath)) return { locked: current };
    } catch (err) {
      closeQuietly(current.fd);
      throw err;
    }
    closeQuietly(current.fd); // releases the orphan lock
    current = openLockFile(lockPath, options.mode);
  }
}

/**
 * Waits for the OS lock on `fd` until the deadline: woken by the lock file changing (a townlock holder
 * touches it on release) or by backoff polling. Returns the locked descriptor, or undefined at the
 * deadline; closes `fd` on every path that does not return it.
 */
async function waitForOsLock(
  backend: LockBackend,
  lockPath: string,
  options: ResolvedLockOptions,
  deadline: number,
  fd: LockFd,
): Promise<LockFd | undefined> {
  let current: LockFd | undefined = fd;
  let watcher: FSWatcher | undefined;
  let delay = options.retryDelay;
  try {
    for (;;) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) return undefined;
      watcher ??= watchQuietly(lockPath);
      const jittered = delay * (0.75 + Math.random() * 0.5);
      const woken = await pause(Math.min(jittered, remaining), watcher, options.signal, lockPath);
      if (!woken) delay = Math.min(delay * 2, options.maxRetryDelay);
      const before: LockFd = current;
      const attempt = attemptOsLock(backend, lockPath, options, current);
      current = undefined;
      if ('locked' in attempt) return attempt.locked;
      current = attempt.open;
      if (current !== before) {
        // The file was replaced: watch the new one.
        watcher?.close();
        watcher = undefined;
      }
    }
  } finally {
    // Closing an inotify watch waits for an RCU grace period (about 0.3 ms measured here); on the way to
    // handing over a lock that would be pure handoff latency, so the close runs after the caller resumes.
    if (watcher) closeSoon(watcher);
    if (current) closeQuietly(current.fd);
  }
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
