/**
 * FileLock: advisory, whole-file, cross-process locks with timeouts, cancellation and re-entrancy.
 *
 * Guarantees
 * - Two levels. In one process, callers queue fairly (FIFO) in a {@link LocalQueue} per lock file and wait
 *   on promises; the process then takes the OS lock (flock / LockFileEx) on its own descriptor, so other
 *   processes, worker threads, util-linux flock(1), Python's fcntl.flock and the Go tool are excluded.
 * - No thread ever blocks in the kernel: the backend makes single non-blocking attempts and this file waits
 *   between them, woken early when a townlock holder releases (it rings the oldest waiter in the lock's
 *   queue, see _fairness.ts) and otherwise polling with exponential backoff up to `maxRetryDelay`, so a
 *   foreign or crashed holder is noticed within that cap.
 * - Lock files are never deleted on unlock. Deleting them lets two processes hold "the lock" on two
 *   different inodes; instead every acquirer checks after locking that the path still names the inode it
 *   locked, and retries if not, which makes {@link cleanStaleLocks} safe.
 * - A timed-out or aborted wait leaves no descriptor or timer behind, and its file watcher is closed at
 *   the next turn of the event loop (closing an inotify watch waits for the kernel).
 *
 * Not guaranteed
 * - Strict fairness between processes: townlock waiters are woken in the order they queued (_fairness.ts),
 *   but a newcomer's first attempt, or a foreign holder (flock(1)), may still take a free lock first.
 * - Protection from code that ignores the lock: these are advisory locks.
 */
import fs, { type FSWatcher } from 'node:fs';
import { InvalidOptionError } from '../errors.js';
import type { Lock } from '../lock.js';
import {
  DEFER_LIMIT_MS,
  mayHaveWaiters,
  noteRelease,
  owesTurn,
  Place,
  RingHint,
  YIELD_MS,
} from './_fairness.js';
import { dropIfIdle, Hold, heldInContext, lockQueue, runInHold } from './_holds.js';
import type { LocalQueue } from './_local-queue.js';
import {
  closeQuietly,
  isCurrent,
  type LockFd,
  openLockFile,
  releaseAndWake,
  scheduleHolderInfo,
  takeLockFd,
  touchQuietly,
} from './_lock-file.js';
import { type LockTarget, resolveLockTarget } from './_target.js';
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
import { type FileLockOptions, type ResolvedLockOptions, resolveLockOptions } from './options.js';

/** An advisory lock on the file at `path`, taken on `<lockDir>/<basename>.lock`. */
export class FileLock implements Lock {
  /**
   * The protected file, absolute, with symbolic links resolved (the file writers actually replace); with
   * `isLockFile`, the lock file.
   */
  readonly path: string;
  /**
   * The lock file, absolute: `<dir of path>/.gastown/locks/<basename(path)>.lock` by default, `path`
   * itself with `isLockFile`.
   */
  readonly lockPath: string;
  readonly #target: LockTarget;
  readonly #options: ResolvedLockOptions;
  #hold: Hold | undefined;
  /** True while an acquisition through this handle is in progress. */
  #acquiring = false;

  /**
   * Validates the options and resolves the lock file (through symlinks, so every spelling of one file
   * shares one lock); creates nothing until the first lock. `path` may be a Buffer for a file name that
   * is not valid UTF-8.
   */
  constructor(path: string | Buffer, options: FileLockOptions = {}) {
    const resolved = resolveLockOptions(options);
    this.#target = resolveLockTarget(path, options.lockDir, options.isLockFile);
    this.path = this.#target.path;
    this.lockPath = this.#target.lockPath;
    this.#options = resolved;
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
  static async acquire(path: string | Buffer, options?: FileLockOptions): Promise<FileLock> {
    const lock = new FileLock(path, options);
    await lock.lock();
    return lock;
  }

  /**
   * Waits for the lock, up to `timeout` ms. Inside a hold of the same lock (a `withLock` callback), this
   * nests in that hold instead. Rejects with `LockTimeoutError`, `LockAbortedError`, `AlreadyLockedError`
   * (this handle holds it) or `LockUpgradeError` (the context holds it shared).
   */
  async lock(): Promise<void> {
    await this.#acquire(this.#options.timeout, true);
  }

  /** One attempt, in-process queue included: resolves `false` when the lock is busy. */
  async tryLock(): Promise<boolean> {
    return this.#acquire(-1, false);
  }

  /**
   * Releases this handle's hold; rejects with `NotLockedError` if it holds none. The OS lock is given back
   * once every hold nested in this one has been released too.
   */
  async unlock(): Promise<void> {
    const hold = this.#hold;
    if (!hold) throw new NotLockedError(this.lockPath);
    this.#hold = undefined;
    hold.release();
  }

  /**
   * Runs `fn` while holding the lock and returns its result; always unlocks, even if `fn` throws. Locks
   * taken on the same file inside `fn` nest in this hold: they re-enter it, one exclusive at a time.
   */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', fn, 'a function');
    await this.#acquire(this.#options.timeout, true);
    const hold = this.#hold!;
    try {
      return await runInHold(hold, fn);
    } finally {
      if (this.#hold === hold) {
        this.#hold = undefined;
        hold.release();
      }
    }
  }

  /** Alias of `unlock()` that does nothing when not locked, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#hold) await this.unlock();
  }

  /** Shared path of lock() and tryLock(); returns false only when busy and `throwOnBusy` is false. */
  async #acquire(timeout: number, throwOnBusy: boolean): Promise<boolean> {
    if (this.#hold || this.#acquiring) throw new AlreadyLockedError(this.lockPath);
    this.#acquiring = true;
    try {
      const { signal } = this.#options;
      if (signal?.aborted) throw new LockAbortedError(this.lockPath, signal.reason);
      const start = performance.now();
      const deadline = timeout > 0 ? start + timeout : timeout === 0 ? Number.POSITIVE_INFINITY : start;
      const parent = heldInContext(this.#target.key);
      const hold = parent
        ? await this.#nest(parent, deadline)
        : await this.#acquireRoot(deadline, loadedBackend() ?? (await this.#loadBackend()));
      if (hold) {
        this.#hold = hold;
        return true;
      }
      if (!throwOnBusy) return false;
      const holderPid = parent ? process.pid : findHolderPid(this.#target.fsLockPath);
      throw new LockTimeoutError(this.lockPath, Math.round(performance.now() - start), holderPid);
    } finally {
      this.#acquiring = false;
    }
  }

  /** The first lock of a process loads the backend (event-loop turns of its own): an abort meanwhile counts. */
  async #loadBackend(): Promise<LockBackend> {
    const backend = await loadBackend();
    const { signal } = this.#options;
    if (signal?.aborted) throw new LockAbortedError(this.lockPath, signal.reason);
    return backend;
  }

  /** Re-enters `parent`: waits for a grant among the holds nested in it. Undefined when busy at the deadline. */
  async #nest(parent: Hold, deadline: number): Promise<Hold | undefined> {
    const { type, signal } = this.#options;
    if (parent.type === 'shared' && type === 'exclusive') throw new LockUpgradeError(this.lockPath);
    try {
      const granted =
        parent.nested.tryAcquire(type) ||
        (deadline > performance.now() &&
          (await waitInQueue(parent.nested, type, deadline, signal, this.lockPath)));
      return granted ? new Hold(this.#target.key, type, parent) : undefined;
    } finally {
      parent.settle(); // a withdrawn request may have been the last thing keeping an released parent alive
    }
  }

  /** Takes the in-process grant, then the OS lock. Undefined when busy at the deadline. */
  async #acquireRoot(deadline: number, backend: LockBackend): Promise<Hold | undefined> {
    const { type, signal, mode } = this.#options;
    const { key } = this.#target;
    const queue = lockQueue(key);
    if (!queue.tryAcquire(type)) {
      const granted =
        deadline > performance.now() && (await waitInQueue(queue, type, deadline, signal, this.lockPath));
      if (!granted) {
        dropIfIdle(key, queue);
        return undefined;
      }
    }
    let held: LockFd | undefined;
    let waited = false;
    try {
      // This process rang a waiter when it released last: queue behind it rather than take the lock
      // before it wakes (see _fairness.ts). A single attempt (tryLock) owes nothing.
      const queueFirst = deadline > performance.now() && owesTurn(this.#target);
      const fd = takeLockFd(this.#target, mode);
      const attempt = queueFirst ? { open: fd } : attemptOsLock(backend, this.#target, this.#options, fd);
      if ('locked' in attempt) held = attempt.locked;
      else {
        waited = true;
        held = await waitForOsLock(backend, this.#target, this.#options, deadline, attempt.open, queueFirst);
      }
    } finally {
      if (!held) {
        queue.release(type);
        dropIfIdle(key, queue);
      }
    }
    if (!held) return undefined;
    const fd = held;
    const target = this.#target;
    // A lock file the caller named (a script, data: flock "$0") is never written: no holder line.
    const cancelInfo =
      type === 'exclusive' && !target.named ? scheduleHolderInfo(fd.fd, backend.infoOffset) : undefined;
    // A lock that had to wait will likely have waiters to ring: find the first during the hold.
    const hint = waited ? new RingHint(backend, target) : undefined;
    return new Hold(key, type, undefined, () => {
      cancelInfo?.();
      try {
        // Unlock; then, if townlock processes may wait, ring the next one, or, if none could be rung,
        // touch the lock file for the waiters that watch it (see _fairness.ts).
        releaseAndWake(backend, key, fd, () => {
          const queued = mayHaveWaiters(target);
          return queued !== undefined && !noteRelease(backend, target, queued, hint) && mayTouch(target, fd);
        });
      } finally {
        hint?.dispose();
        queue.release(type);
        dropIfIdle(key, queue);
      }
    });
  }
}

/**
 * Whether a release may touch the lock file to wake the waiters that watch it: always a lock file of
 * townlock's own; one the caller named (a script, a data file locked in place) only while it is empty, as
 * a file used only as a lock is, so that a file with content keeps its times (its waiters then poll).
 */
function mayTouch(target: LockTarget, held: LockFd): boolean {
  return !target.named || fs.fstatSync(held.fd).size === 0;
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
  { fsLockPath, createDirs, named }: LockTarget,
  options: ResolvedLockOptions,
  fd: LockFd,
): { locked: LockFd } | { open: LockFd } {
  let current = fd;
  let readOnly = named;
  for (;;) {
    try {
      if (!backend.tryLock(current.fd, options.type)) return { open: current };
      if (isCurrent(current, fsLockPath)) return { locked: current };
    } catch (err) {
      closeQuietly(current.fd);
      // An exclusive lock refused on a read-only descriptor (flock emulated with fcntl, as on Linux NFS):
      // open the named file read-write and try again, as flock(1) does.
      if (!(current.readOnly && (err as NodeJS.ErrnoException).code === 'EBADF')) throw err;
      readOnly = false;
      current = openLockFile(fsLockPath, options.mode, createDirs, named, readOnly);
      continue;
    }
    closeQuietly(current.fd); // releases the orphan lock
    current = openLockFile(fsLockPath, options.mode, createDirs, named, readOnly);
  }
}

/**
 * Waits for the OS lock on `fd` until the deadline, with a place in the lock's queue of waiters (see
 * _fairness.ts): woken when a townlock releaser rings this waiter, or by backoff polling (a foreign
 * holder rings nobody). With `queueFirst` (this process owes a turn), it sleeps in its place before its
 * first attempt. Returns the locked descriptor, or undefined at the deadline; closes `fd` on every path
 * that does not return it.
 */
async function waitForOsLock(
  backend: LockBackend,
  target: LockTarget,
  options: ResolvedLockOptions,
  deadline: number,
  fd: LockFd,
  queueFirst: boolean,
): Promise<LockFd | undefined> {
  const { fsLockPath, lockPath } = target;
  const { signal } = options;
  if (deadline <= performance.now()) {
    closeQuietly(fd.fd); // a single attempt (tryLock) that failed: no place in the queue
    return undefined;
  }
  let current: LockFd | undefined = fd;
  // Without a place in the queue, or when the lock file is shared between users (who may be unable to
  // ring each other's bells): a townlock release that rings nobody touches the lock file.
  let lockWatcher: FSWatcher | undefined;
  const stat = fs.fstatSync(fd.fd);
  const sharedAcrossUsers = (stat.mode & 0o022) !== 0;
  // A file the caller named is touched on release only while empty (see mayTouch): watching one with
  // content would only wake this waiter on every write the holder's command makes to it.
  const watchable = !target.named || stat.size === 0;
  let delay = options.retryDelay;
  const place = new Place(backend, target, options.mode);
  let took: LockType | undefined;
  /**
   * Takes (or, after a ring this waiter lost to a newcomer, takes again) its place, or else watches the
   * lock file. True when a wake-up source was made just now: an attempt must then come before any sleep,
   * or a release in between would have found nothing to wake.
   */
  const prepareWake = (): boolean => {
    const fresh = place.enter();
    if ((place.watcher && !sharedAcrossUsers) || lockWatcher || !watchable) return fresh;
    lockWatcher = watchQuietly(fsLockPath);
    return fresh || lockWatcher !== undefined;
  };
  let mustAttempt = prepareWake() && !queueFirst;
  // While this waiter leaves its timer's attempts to an older waiter: until when it may (see below).
  let deferUntil: number | undefined;
  let yielding = queueFirst;
  try {
    for (;;) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) return undefined;
      const watchers = [place.watcher, lockWatcher];
      if (yielding) {
        yielding = false;
        await pause(Math.min(YIELD_MS, remaining), watchers, signal, lockPath);
        place.takeRing(); // consumed here: a ring during the yield must not pass for a later one
      } else if (!mustAttempt) {
        const jittered = delay * (0.75 + Math.random() * 0.5);
        const deferLeft = deferUntil === undefined ? jittered : Math.max(0, deferUntil - performance.now());
        const woken = await pause(Math.min(jittered, remaining, deferLeft), watchers, signal, lockPath);
        if (!woken) delay = Math.min(delay * 2, options.maxRetryDelay);
        if (!place.takeRing()) {
          // Woken by the timer or by the lock file (a release, or a holder's info line), not by a ring:
          // the attempt is the older waiter's (see _fairness.ts), for a while: one that stopped attempting
          // (a process suspended while it waits) must not hold the queue up after a foreign holder left.
          const now = performance.now();
          deferUntil ??= now + DEFER_LIMIT_MS;
          if (now < deferUntil && place.isBehind()) continue;
        }
        deferUntil = undefined;
      } else if (signal?.aborted) {
        await pause(0, watchers, signal, lockPath); // rejects as an aborted wait does
      }
      const before: LockFd = current;
      const fresh = mustAttempt;
      current = undefined; // attemptOsLock owns it now (and closes it if it throws)
      const attempt = attemptOsLock(backend, target, options, before);
      if ('locked' in attempt) {
        // The attempt right after taking a place (it closes the lost-wake-up window) can meet a release
        // meant for an older waiter, rung but not running yet: the lock is that waiter's. An exclusive
        // waiter gives it back, rings that waiter, and waits in place as after a timer wake-up (deferring
        // DEFER_LIMIT_MS at most), when its deadline leaves room for that. (A reader may keep it, as it
        // may overtake a queued writer while other readers hold the lock.)
        if (
          fresh &&
          options.type === 'exclusive' &&
          deadline - performance.now() > 2 * DEFER_LIMIT_MS &&
          place.isBehind()
        ) {
          current = attempt.locked;
          backend.unlock(current.fd);
          if (!place.ringOlder() && mayTouch(target, current)) touchQuietly(backend, current.fd);
          deferUntil = performance.now() + DEFER_LIMIT_MS;
          mustAttempt = false;
          if (current !== before && lockWatcher) {
            // The file was replaced: watch the new one (no attempt needed: this waiter just released it).
            closeSoon(lockWatcher);
            lockWatcher = watchQuietly(fsLockPath);
          }
          continue;
        }
        took = options.type;
        return attempt.locked;
      }
      current = attempt.open;
      if (current !== before && lockWatcher) {
        // The file was replaced: watch the new one.
        closeSoon(lockWatcher);
        lockWatcher = undefined;
      }
      mustAttempt = prepareWake();
    }
  } finally {
    place.leave(took);
    // Closing an inotify watch waits for an RCU grace period (about 0.3 ms measured here); on the way to
    // handing over a lock that would be pure handoff latency, so the close runs after the caller resumes.
    if (lockWatcher) closeSoon(lockWatcher);
    if (current) closeQuietly(current.fd);
  }
}

/** Runs `fn` under a shared lock on `path` (see {@link FileLock}). */
export async function withReadLock<T>(
  path: string | Buffer,
  fn: () => T | Promise<T>,
  options?: FileLockOptions,
): Promise<T> {
  return new FileLock(path, { ...checkedOptions(options), type: 'shared' }).withLock(fn);
}

/** Runs `fn` under an exclusive lock on `path` (see {@link FileLock}). */
export async function withWriteLock<T>(
  path: string | Buffer,
  fn: () => T | Promise<T>,
  options?: FileLockOptions,
): Promise<T> {
  return new FileLock(path, { ...checkedOptions(options), type: 'exclusive' }).withLock(fn);
}

/** `options` if it is an object or undefined; anything else is ERR_INVALID_OPTION before it is spread. */
function checkedOptions(options: FileLockOptions | undefined): FileLockOptions | undefined {
  if (options !== undefined && (options === null || typeof options !== 'object' || Array.isArray(options))) {
    throw new InvalidOptionError('options', options, 'an object');
  }
  return options;
}
