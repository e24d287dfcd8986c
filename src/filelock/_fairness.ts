/**
 * Fair turns between townlock processes that contend for one lock: a queue of waiters, each woken alone.
 *
 * Without this, the process that just released wins again (its next caller is already running while the
 * others still have to be woken), and waking every waiter on each release makes them all compete for the
 * CPU the holder needs. Nothing here parks a thread in flock() (such a wait cannot be cancelled), and
 * nothing here is needed for exclusion: it only decides who is woken to try.
 *
 * - A process that has to wait at the OS level takes a place in the queue: a file of its own (a "bell")
 *   in `<lock file>.waiters/`, named by a ticket (monotonic clock, then pid), on which it holds an
 *   exclusive flock while it waits (the kernel drops it if the process dies) and which it watches.
 * - A releaser lists that directory after its unlock and rings the oldest bell whose owner still holds
 *   it, by unlinking it: the owner's watch reports the change, and an unlinked bell cannot be rung twice.
 *   A bell nobody holds belongs to a waiter that died (or has not locked it yet): it is unlinked too
 *   (which wakes that waiter if it lives) and the next bell is asked. At most MAX_PROBES bells per release.
 * - A waiter makes its bell before the attempt that precedes each sleep, so a release after a failed
 *   attempt always finds its bell (or an older one, whose owner then takes the lock and rings on release,
 *   or loses it to a newcomer who does). A rung waiter that loses the lock to a newcomer takes its place
 *   again under its old ticket, and attempts once more before it sleeps. A waiter leaving the queue
 *   unlinks its bell before closing it; finding it already unlinked, it was rung, and one that gives up
 *   (timeout, abort) then passes the ring on. A shared taker rings the next waiter too, so queued readers
 *   go together. The order is strict among exclusive waiters; a reader may overtake a queued writer while
 *   other readers hold the lock (the writer could not have it anyway), as with flock itself.
 * - A releaser that rang someone owes a turn: its next attempt on that lock, within YIELD_MS, starts by
 *   queueing behind the others instead of taking the lock ahead of the waiter it woke.
 * - Every waiter still polls with backoff, so a ring that never comes (a flock(1), Go or Python holder
 *   rings nothing; a rung waiter killed before it woke) delays it by about `maxRetryDelay` at most. A
 *   waiter woken by its timer leaves the attempt to an older live waiter, which polls too (so the queue
 *   order holds between rings), but only for DEFER_LIMIT_MS at a time: an older waiter that stopped
 *   attempting (a suspended process) delays the queue, it never strands it. Bells of dead waiters are
 *   removed by whoever probes them.
 * - flock(1), the Go tool and Python neither queue nor ring; they still exclude and are excluded exactly
 *   as before. A townlock release that finds the queue directory but rings nobody (no live bell, or a
 *   queue it may not use: only its owner's processes and root's use a queue) touches the lock file
 *   instead, which wakes the waiters that watch it: those without a place, and, when the lock file is
 *   writable by group or others, every waiter, since another user may be unable to ring them; those with
 *   a place then leave the attempt to older waiters, as after a timer. Without a queue directory a waiter
 *   is woken by polling alone.
 */
import fs, { type FSWatcher } from 'node:fs';
import { closeQuietly } from './_lock-file.js';
import type { FsPath, LockTarget } from './_target.js';
import { closeSoon, watchQuietly } from './_wait.js';
import type { LockBackend, LockType } from './backend.js';

/**
 * How long after ringing a waiter this process's next attempt on that lock queues behind it before it
 * tries regardless, in ms: the bound for a rung waiter that never takes the lock (it hung, or died before
 * it woke). A live one takes it within a wake-up, well under a millisecond on an idle machine.
 */
export const YIELD_MS = 100;

/**
 * Longest a waiter woken by its timer leaves the attempt to an older waiter that does not take the lock
 * (see Place.isBehind), in ms.
 */
export const DEFER_LIMIT_MS = 1000;

/**
 * Most bells one release (or one deferral check) looks at. Abandoned bells are removed as they are found,
 * so a queue of dead waiters is cleared over a few releases; only entries nobody can remove (planted by
 * someone who may write the lock directory) keep costing.
 */
const MAX_PROBES = 64;

const OPEN_PROBE = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);
const OPEN_BELL =
  fs.constants.O_RDWR |
  fs.constants.O_CREAT |
  fs.constants.O_EXCL |
  (fs.constants.O_NOFOLLOW ?? 0) |
  (fs.constants.O_NONBLOCK ?? 0);

/** A bell's name: a 20-digit ticket, the owner's pid, `.bell`. Anything else in the directory is ignored. */
const BELL_NAME = /^\d{20}-\d+\.bell$/;

/** The queue directory of a lock file: `<lock file>.waiters`. */
export function waitersDirOf(lockPath: FsPath): FsPath {
  return join(lockPath, '.waiters');
}

/** `a` followed by `b` (a Buffer stays a Buffer: names that are not UTF-8). */
function join(a: FsPath, b: string): FsPath {
  return typeof a === 'string' ? a + b : Buffer.concat([a, Buffer.from(b)]);
}

/** A new ticket: later tickets sort after earlier ones on this host (the monotonic clock is system-wide). */
function newTicket(): string {
  return process.hrtime.bigint().toString().padStart(20, '0');
}

/** Releases of this process that rang a waiter, by lock key: performance.now() until which a turn is owed. */
const owed = new Map<string, number>();

/** A waiter's place in the queue of one lock (see the module comment). */
export class Place {
  readonly #backend: LockBackend;
  readonly #dir: FsPath;
  readonly #mode: number;
  #name: string | undefined;
  #fd: number | undefined;
  #watcher: FSWatcher | undefined;
  /** The bell changed (it is rung when it has no links left). */
  #changed = false;
  /** Taking a place failed: this waiter polls (and watches the lock file) instead. */
  #unusable = false;

  constructor(backend: LockBackend, target: LockTarget, mode: number) {
    this.#backend = backend;
    this.#dir = waitersDirOf(target.fsLockPath);
    this.#mode = mode;
  }

  /** The bell's watcher while this waiter has a place; undefined without one. */
  get watcher(): FSWatcher | undefined {
    return this.#watcher;
  }

  /**
   * Takes a place, or takes it again after a ring (same ticket: the waiter keeps its turn). Returns true
   * when it made a bell now: the caller must then attempt before it sleeps, or a release in between would
   * have found no bell to ring.
   */
  enter(): boolean {
    if (this.#unusable) return false;
    if (this.#fd !== undefined) {
      if (!this.#changed) return false;
      this.#changed = false;
      try {
        if (fs.fstatSync(this.#fd).nlink > 0) return false; // changed, but not rung: still in place
      } catch {
        // treat as rung
      }
      this.#drop();
    }
    this.#name ??= `${newTicket()}-${process.pid}.bell`;
    const path = join(this.#dir, `/${this.#name}`);
    // Twice: cleanStaleLocks may take a bell made a moment ago (before its flock) for an abandoned one.
    for (let tries = 0; tries < 2; tries++) {
      let fd: number | undefined;
      try {
        fd = openBell(this.#dir, path, this.#mode);
        if (!this.#backend.tryLock(fd, 'exclusive')) throw new Error('bell busy');
        const watcher = watchQuietly(path);
        if (watcher && fs.fstatSync(fd).nlink > 0) {
          watcher.on('change', () => {
            this.#changed = true;
          });
          this.#fd = fd;
          this.#watcher = watcher;
          return true;
        }
        if (watcher) closeSoon(watcher);
      } catch {
        // below
      }
      // Fairness is best effort: without a place this waiter polls (and watches the lock file).
      if (fd !== undefined) {
        unlinkQuietly(path);
        closeQuietly(fd);
      }
    }
    this.#unusable = true;
    return false;
  }

  /** True when the last wake-up came from this waiter's bell (a ring), not from a timer or the lock file. */
  get rung(): boolean {
    return this.#changed;
  }

  /**
   * Whether a waiter that still waits took its place before this one: a waiter woken by its timer rather
   * than a ring then leaves the attempt to it, instead of taking the lock from the waiter just rung. Bells
   * nobody holds are removed on the way, so a dead waiter is never waited for; the oldest live waiter is
   * never behind anyone and keeps polling, so a missed ring delays the queue, never strands it.
   */
  isBehind(): boolean {
    if (this.#fd === undefined || this.#changed || this.#name === undefined) return false;
    let probes = 0;
    for (const name of bellNames(this.#dir)) {
      if (name >= this.#name || ++probes > MAX_PROBES) return false;
      if (probeBell(this.#backend, join(this.#dir, `/${name}`), false) === 'waiting') return true;
    }
    return false;
  }

  /**
   * Leaves the queue. A waiter that did not get the lock (`took` undefined) and finds its bell rung passes
   * the ring to the next waiter; one that took a shared lock rings the next waiter too.
   */
  leave(took: LockType | undefined): void {
    if (this.#fd === undefined) return;
    // Rung: no links left, or (a ring landing now) gone when this waiter unlinks it; a ring after that
    // finds no bell and rings the next one. Unlinked before the close, so no ringer takes a bell that
    // was closed for one that was abandoned. The fstat first spares a taker the cost of an ENOENT.
    let rung: boolean;
    try {
      rung = fs.fstatSync(this.#fd).nlink === 0;
    } catch {
      rung = false;
    }
    let gone = rung;
    if (!rung) {
      try {
        fs.unlinkSync(join(this.#dir, `/${this.#name}`));
        gone = true;
      } catch (err) {
        rung = gone = (err as NodeJS.ErrnoException).code === 'ENOENT';
      }
    }
    // A taker's bell, gone from the queue, is closed after the caller resumes; any other at once, so a
    // wait that ends without the lock leaves no descriptor behind.
    this.#drop(took !== undefined && gone);
    if ((rung && took === undefined) || took === 'shared') ringNext(this.#backend, this.#dir);
  }

  /**
   * Closes the bell (dropping its flock) and its watcher. `later` (only for a bell already unlinked): at
   * the next turn of the event loop, as closing the last descriptor of an unlinked file frees its inode,
   * tens of microseconds that would otherwise lie between a taker's lock and its caller.
   */
  #drop(later = false): void {
    if (this.#watcher) closeSoon(this.#watcher);
    this.#watcher = undefined;
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) return;
    if (later) setImmediate(closeQuietly, fd);
    else closeQuietly(fd);
  }
}

/**
 * Opens a new bell exclusively in the queue directory, making the directory (0o775 less the umask, as lock
 * directories) when missing. The directory is checked first: through a symlink planted in its place, a
 * bell would be created anywhere.
 */
function openBell(dir: FsPath, path: FsPath, mode: number): number {
  for (let tries = 0; ; tries++) {
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st && !trusted(st)) throw new Error('not a queue directory of ours');
    try {
      if (!st) fs.mkdirSync(dir, { mode: 0o775 });
      return fs.openSync(path, OPEN_BELL, mode);
    } catch (err) {
      // Made by a racing waiter, or removed by cleanStaleLocks meanwhile: look again, a few times.
      const code = (err as NodeJS.ErrnoException).code;
      if (tries >= 2 || (code !== 'EEXIST' && code !== 'ENOENT')) throw err;
    }
  }
}

function unlinkQuietly(path: FsPath): void {
  try {
    fs.unlinkSync(path);
  } catch {
    // gone already
  }
}

/**
 * Whether townlock processes may wait for `target`: its waiters directory exists (the first waiter makes
 * it; cleanStaleLocks removes it only when empty). Asked after the unlock: a waiter makes the directory
 * and its bell before the attempt that precedes each sleep, and if that attempt failed it came before
 * this unlock, so this finds the directory. (lstat without throwing: no exception on the uncontended
 * path; a symlink in its place is no queue.)
 */
export function mayHaveWaiters(target: LockTarget): boolean {
  return fs.lstatSync(waitersDirOf(target.fsLockPath), { throwIfNoEntry: false })?.isDirectory() === true;
}

const euid = process.geteuid?.();

/**
 * Whether a queue directory is one this process may list and unlink in: a real directory (a symlink is
 * never followed) that this user or root owns. Another user's could be renamed away and replaced by a
 * link between this check and the use of its path; such a queue is left to its owner's processes (a
 * waiter then polls, and is woken by the touch of the lock file).
 */
function trusted(st: fs.Stats | undefined): boolean {
  return st?.isDirectory() === true && (euid === undefined || st.uid === euid || st.uid === 0);
}

/**
 * After this process released `target` (and saw its waiters directory): rings the oldest waiter, and if
 * one was rung, owes it a turn and returns true. False when nobody could be rung (no live bell, or a queue
 * this process may not use): the caller then touches the lock file instead.
 */
export function noteRelease(backend: LockBackend, target: LockTarget): boolean {
  const dir = waitersDirOf(target.fsLockPath);
  if (!trusted(fs.lstatSync(dir, { throwIfNoEntry: false })) || !ringNext(backend, dir)) return false;
  const now = performance.now();
  // Debts of locks this process never asked for again expire unused: drop them before the map grows.
  if (owed.size >= 256) for (const [key, until] of owed) if (until <= now) owed.delete(key);
  owed.set(target.key, now + YIELD_MS);
  return true;
}

/**
 * Rings the oldest bell in `dir` whose owner still waits; returns whether one was rung. Bells nobody holds
 * are unlinked on the way; at most MAX_PROBES bells are looked at. Never throws: a ring is only a wake-up.
 */
export function ringNext(backend: LockBackend, dir: FsPath): boolean {
  let probes = 0;
  for (const name of bellNames(dir)) {
    if (++probes > MAX_PROBES) return false;
    if (probeBell(backend, join(dir, `/${name}`), true) === 'waiting') return true;
  }
  return false;
}

/**
 * Removes the bells in the queue directory `dir` that no waiter holds, then the directory if that left it
 * empty (for cleanStaleLocks). A waiter whose bell or directory goes meanwhile is only woken: it makes
 * them again.
 */
export function removeAbandonedBells(backend: LockBackend, dir: FsPath): void {
  if (!trusted(fs.lstatSync(dir, { throwIfNoEntry: false }))) return; // never through a symlink, never a file
  for (const name of bellNames(dir)) probeBell(backend, join(dir, `/${name}`), false);
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty (someone waits), or gone already
  }
}

/** The bells in `dir`, oldest first (none when it cannot be read). */
function bellNames(dir: FsPath): string[] {
  try {
    return (fs.readdirSync(dir) as string[]).filter((n) => BELL_NAME.test(n)).sort();
  } catch {
    return [];
  }
}

/**
 * Asks whether the bell at `path` has a waiting owner (it holds its flock): 'waiting', and then, with
 * `ring`, rings it by unlinking it. A bell nobody holds is 'abandoned' and unlinked (which wakes its
 * owner, if it lives and is about to lock it: it then polls). 'gone' when it left the queue, someone
 * else rang or removed it first, or it cannot be opened or unlinked.
 */
function probeBell(backend: LockBackend, path: FsPath, ring: boolean): 'waiting' | 'abandoned' | 'gone' {
  let fd: number;
  try {
    fd = fs.openSync(path, OPEN_PROBE);
  } catch {
    return 'gone';
  }
  try {
    const waiting = fs.fstatSync(fd).isFile() && !backend.tryLock(fd, 'exclusive');
    if (waiting && !ring) return 'waiting';
    fs.unlinkSync(path);
    return waiting ? 'waiting' : 'abandoned';
  } catch {
    return 'gone';
  } finally {
    closeQuietly(fd); // also drops the probe's lock on an abandoned bell
  }
}

/**
 * Whether this process owes waiters a turn on `target` (it rang one less than YIELD_MS ago): its next
 * attempt then queues before it tries. Clears the debt.
 */
export function owesTurn(target: LockTarget): boolean {
  const until = owed.get(target.key);
  if (until === undefined) return false;
  owed.delete(target.key);
  return until > performance.now();
}
