/**
 * Fair turns between townlock processes that contend for one lock.
 *
 * Without this, the process that just released wins again: its next caller is already running while the
 * others still have to be woken, so one process runs ahead and the rest starve (measured: p99 wait 5x
 * the kernel's own blocking queue). Nothing here parks a thread in flock() (such a wait cannot be
 * cancelled), and nothing here is needed for exclusion: it only decides who tries first.
 *
 * - A process waiting at the OS level announces itself: it holds a shared flock on `<lock file>.wait`
 *   for as long as it waits (the kernel drops it if the process dies).
 * - A releaser probes that file with a non-blocking exclusive flock. If it cannot get it, other townlock
 *   processes are waiting, so this process's next attempt on that lock yields: it waits up to YIELD_MS
 *   for a waiter to take the lock (the taker touches the wait file, which wakes the yielder at once),
 *   then tries, and if the lock is busy it waits, announced, like everyone else. Turns go round.
 * - flock(1), the Go tool and Python neither announce nor yield; they still exclude and are excluded
 *   exactly as before. A wait file that cannot be created or locked just leaves the old behaviour.
 */
import fs from 'node:fs';
import { closeQuietly } from './_lock-file.js';
import type { FsPath, LockTarget } from './_target.js';
import { closeSoon, pause, watchQuietly } from './_wait.js';
import type { LockBackend } from './backend.js';

/** Longest a releaser yields to announced waiters before trying again itself, in ms. */
export const YIELD_MS = 10;

const OPEN_EXISTING = fs.constants.O_RDWR | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);
const OPEN_CREATE = OPEN_EXISTING | fs.constants.O_CREAT;

/** The announcement file of a lock file: `<lock file>.wait`. */
export function waitFileOf(lockPath: FsPath): FsPath {
  return typeof lockPath === 'string' ? `${lockPath}.wait` : Buffer.concat([lockPath, Buffer.from('.wait')]);
}

/** A releaser's note to yield its next turn on one lock. */
interface Yield {
  /** performance.now() after which the yield is over. */
  until: number;
  /** The wait file's mtime when the note was made: a later one means a waiter took the lock. */
  mtimeMs: number;
}

const yields = new Map<string, Yield>();

/** A waiter's announcement: a shared flock on the wait file, held while it waits. */
export class Announcement {
  readonly #backend: LockBackend;
  readonly #path: FsPath;
  readonly #mode: number;
  #fd: number | undefined;

  constructor(backend: LockBackend, target: LockTarget, mode: number) {
    this.#backend = backend;
    this.#path = waitFileOf(target.fsLockPath);
    this.#mode = mode;
  }

  /** Announces, if not done yet (a releaser probing at that instant makes it fail; the next call retries). */
  announce(): void {
    if (this.#fd !== undefined) return;
    let fd: number | undefined;
    try {
      fd = fs.openSync(this.#path, OPEN_CREATE, this.#mode);
      if (!fs.fstatSync(fd).isFile() || !this.#backend.tryLock(fd, 'shared')) {
        closeQuietly(fd);
        return;
      }
      this.#fd = fd;
    } catch {
      // Fairness is best effort: without a usable wait file this waiter simply does not announce.
      if (fd !== undefined) closeQuietly(fd);
    }
  }

  /** The waiter holds the lock now: wake a yielding releaser (touch), then withdraw. */
  taken(): void {
    if (this.#fd !== undefined) {
      try {
        this.#backend.touch(this.#fd);
      } catch {
        // only a wake-up
      }
    }
    this.withdraw();
  }

  /** Stops announcing (closing the descriptor drops the shared flock). */
  withdraw(): void {
    if (this.#fd === undefined) return;
    closeQuietly(this.#fd);
    this.#fd = undefined;
  }
}

/**
 * Whether townlock processes may wait for `target`: its wait file exists (a waiter creates it before it
 * sleeps, and it stays). When it does not, a release needs neither the wake-up touch nor the fairness
 * probe: a waiter announces itself before its last attempt ahead of sleeping (see waitForOsLock), so a
 * release that saw no wait file came before that attempt, which then finds the lock free. (existsSync
 * throws nothing: a failed open would cost ~10 µs of exception on every uncontended release.)
 */
export function mayHaveWaiters(target: LockTarget): boolean {
  return fs.existsSync(waitFileOf(target.fsLockPath));
}

/**
 * After this process released `target` (and saw its wait file): if townlock processes announced they
 * wait, yield the next turn.
 */
export function noteRelease(backend: LockBackend, target: LockTarget): void {
  const path = waitFileOf(target.fsLockPath);
  let fd: number;
  try {
    fd = fs.openSync(path, OPEN_EXISTING);
  } catch {
    return;
  }
  try {
    if (backend.tryLock(fd, 'exclusive')) {
      backend.unlock(fd);
      return; // nobody waits
    }
    yields.set(target.key, { until: performance.now() + YIELD_MS, mtimeMs: fs.fstatSync(fd).mtimeMs });
  } catch {
    // a probe that fails tells nothing: no yield
  } finally {
    closeQuietly(fd);
  }
}

/**
 * Before this process's first attempt on `target`: if it owes announced waiters a turn, waits until one
 * of them takes the lock, YIELD_MS passed, or the caller's deadline or abort comes. Synchronous no-op
 * (returns undefined) when nothing is owed, so the uncontended path pays one map lookup.
 */
export function yieldTurn(
  target: LockTarget,
  deadline: number,
  signal: AbortSignal | undefined,
): Promise<unknown> | undefined {
  const owed = yields.get(target.key);
  if (!owed) return undefined;
  yields.delete(target.key);
  const until = Math.min(owed.until, deadline);
  if (until <= performance.now()) return undefined;
  const path = waitFileOf(target.fsLockPath);
  const watcher = watchQuietly(path);
  const current = fs.statSync(path, { throwIfNoEntry: false });
  if (!current || current.mtimeMs !== owed.mtimeMs) {
    if (watcher) closeSoon(watcher);
    return undefined; // a waiter took the lock already
  }
  return pause(until - performance.now(), watcher, signal, target.lockPath).finally(() => {
    if (watcher) closeSoon(watcher);
  });
}
