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
 * - A releaser, after its unlock, rings the oldest bell whose owner still holds it, by touching it (its
 *   times): the owner's watch reports the change. It finds that bell by listing the directory, or, when it
 *   had to wait for the lock itself, it found and opened it during its hold (RingHint: at the next turn,
 *   or when the first waiter queues; later bells are younger, but for one made again under its old ticket
 *   after cleanStaleLocks took it, which then waits one turn more), so the ring follows the unlock within
 *   a few system calls. A bell nobody holds belongs to a waiter that died or is leaving: it is
 *   unlinked (which wakes that waiter if it lives) and the next bell is asked. At most MAX_PROBES bells
 *   per release.
 * - A bell stays in the queue until its owner leaves, so waiters behind a rung one see it there. A waiter
 *   leaving without the lock unlinks and closes its bell at once; an exclusive taker drops the bell's
 *   flock at once (so that others take it for an abandoned one and spend no ring on it) and unlinks and
 *   closes it at the next turn, off the way between its lock and its caller.
 * - A waiter makes its bell before the attempt that precedes each sleep (but for a releaser that owes a
 *   turn, which first sleeps up to YIELD_MS), so a release after a failed attempt always finds it (or an
 *   older one, whose owner then takes the lock and rings on release, or loses it to a newcomer who does). A waiter that leaves without the lock (timeout,
 *   abort) rings the next waiter, in case a ring meant for it came; a shared taker rings the next waiter
 *   too, so queued readers go together. Two releasers may ring one bell (shared holders): one wake-up is
 *   wasted, none is lost, as the rung waiter stays first. The order is strict among exclusive waiters; a
 *   reader may overtake a queued writer while other readers hold the lock, as with flock itself.
 * - A releaser that rang a waiter that has waited STARVING_MS or more owes it a turn: its next attempt on
 *   that lock, within YIELD_MS, starts by queueing behind the others instead of taking the lock ahead of
 *   the waiter it woke. (A waiter rung sooner competes with the releaser's next attempt, as with flock:
 *   short critical sections run in bursts rather than paying a handoff each.) A bell that this
 *   process's next release finds first again did not take the lock when rung (hung, suspended, or beaten
 *   by a newcomer): it is rung again, the next waiter is rung too, and no turn is owed, so a hung waiter
 *   costs a releaser one YIELD_MS at most.
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
 * How long the oldest waiter must have waited before a release that rings it also gives it the turn
 * (queues this process's next attempt behind it), in ms: under that, the releaser may take the lock again
 * at once, as with flock itself, while the rung waiter wakes. Go's sync.Mutex turns fair after 1 ms.
 */
export const STARVING_MS = 2;
const STARVING_NS = BigInt(STARVING_MS * 1e6);

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
// Read-write: touching a file's times through a descriptor needs write access (or ownership).
const OPEN_RING = fs.constants.O_RDWR | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);
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

/** Releases of this process that gave a waiter the turn, by lock key: performance.now() until which it is owed. */
const owed = new Map<string, number>();

/** A waiter's place in the queue of one lock (see the module comment). */
export class Place {
  readonly #backend: LockBackend;
  readonly #dir: FsPath;
  readonly #mode: number;
  #name: string | undefined;
  #fd: number | undefined;
  #watcher: FSWatcher | undefined;
  /** The bell changed since the last takeRing(): rung (or removed, when it has no links left). */
  #changed = false;
  /** Taking a place failed: this waiter polls (and watches the lock file) instead. */
  #unusable = false;
  /**
   * Remove the queue directory when leaving it empty: beside a lock file the caller named (a script, a
   * data file), where no lock directory holds it and `lock clean` does not look.
   */
  readonly #tidy: boolean;

  constructor(backend: LockBackend, target: LockTarget, mode: number) {
    this.#backend = backend;
    this.#dir = waitersDirOf(target.fsLockPath);
    this.#mode = mode;
    this.#tidy = target.named;
  }

  /** The bell's watcher while this waiter has a place; undefined without one. */
  get watcher(): FSWatcher | undefined {
    return this.#watcher;
  }

  /**
   * Takes a place, or takes it again if its bell was removed (by hand, or its directory by
   * cleanStaleLocks while it was being made; same ticket: the waiter keeps its turn). Returns true when it
   * made a bell now: the caller must then attempt before it sleeps, or a release in between would have
   * found no bell to ring.
   */
  enter(): boolean {
    if (this.#unusable) return false;
    if (this.#fd !== undefined) {
      try {
        if (fs.fstatSync(this.#fd).nlink > 0) return false; // still in place
      } catch {
        // make it again
      }
      this.#drop();
    }
    this.#name ??= `${newTicket()}-${process.pid}.bell`;
    const path = join(this.#dir, `/${this.#name}`);
    // Made under a hidden name, locked, then renamed into the queue: a bell anyone can see is locked
    // until its owner leaves, so a bell found unlocked is never one being made. Twice: the queue
    // directory may be removed by cleanStaleLocks between the steps.
    const hidden = join(this.#dir, `/.${this.#name}`);
    for (let tries = 0; tries < 2; tries++) {
      let fd: number | undefined;
      try {
        fd = openBell(this.#dir, hidden, this.#mode);
        if (!this.#backend.tryLock(fd, 'exclusive')) throw new Error('bell busy');
        fs.renameSync(hidden, path);
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
        unlinkQuietly(hidden);
        unlinkQuietly(path);
        closeQuietly(fd);
      }
    }
    this.#unusable = true;
    return false;
  }

  /** Whether the bell was rung since the last call (the wake-up came from it, not a timer or the lock file). */
  takeRing(): boolean {
    const rung = this.#changed;
    this.#changed = false;
    return rung;
  }

  /**
   * Whether a waiter that still waits took its place before this one: a waiter woken by its timer rather
   * than a ring then leaves the attempt to it, instead of taking the lock from the waiter just rung. Bells
   * nobody holds are removed on the way, so a dead waiter is never waited for; the oldest live waiter is
   * never behind anyone and keeps polling, so a missed ring delays the queue, never strands it.
   */
  isBehind(): boolean {
    if (this.#fd === undefined || this.#name === undefined) return false;
    let probes = 0;
    for (const name of bellNames(this.#dir)) {
      if (name >= this.#name || ++probes > MAX_PROBES) return false;
      if (probeBell(this.#backend, join(this.#dir, `/${name}`), false) === 'waiting') return true;
    }
    return false;
  }

  /**
   * Rings the oldest waiter that still waits, ahead of this one (isBehind found it): this waiter has just
   * given back a lock it won from under it. False if none could be rung.
   */
  ringOlder(): boolean {
    if (this.#fd === undefined || this.#name === undefined) return false;
    const rung = ringNext(this.#backend, this.#dir);
    return rung !== undefined && rung < this.#name;
  }

  /**
   * Leaves the queue: unlinks the bell, then closes it. A waiter that did not get the lock (`took`
   * undefined) rings the next waiter, as a ring may have been meant for it; one that took a shared lock
   * rings the next waiter too.
   */
  leave(took: LockType | undefined): void {
    if (this.#fd === undefined) return;
    const path = join(this.#dir, `/${this.#name}`);
    if (took === 'exclusive') {
      // The unlink and close wait for the next turn of the event loop: each costs tens of microseconds
      // (closing the last descriptor of an unlinked file frees its inode) that would lie between the lock
      // and its caller. Its flock goes now (a microsecond), so that meanwhile other processes take the
      // bell for an abandoned one (they remove it; no ring is spent on it) and this process's own release
      // skips it (it is in `leaving`).
      const name = this.#name!;
      const fd = this.#fd;
      try {
        this.#backend.unlock(fd);
      } catch {
        // closed at the next turn all the same
      }
      leaving.add(name);
      if (this.#watcher) closeSoon(this.#watcher);
      this.#watcher = undefined;
      this.#fd = undefined;
      const tidy = this.#tidy;
      setImmediate(() => {
        unlinkQuietly(path);
        closeQuietly(fd);
        leaving.delete(name);
        if (tidy) rmdirQuietly(this.#dir);
      });
      return;
    }
    // Any other wait ends with its bell gone and closed: no descriptor left behind once it settles.
    unlinkQuietly(path);
    this.#drop();
    ringNext(this.#backend, this.#dir);
    if (this.#tidy) rmdirQuietly(this.#dir);
  }

  /** Closes the bell (dropping its flock) and its watcher. */
  #drop(): void {
    if (this.#watcher) closeSoon(this.#watcher);
    this.#watcher = undefined;
    if (this.#fd !== undefined) closeQuietly(this.#fd);
    this.#fd = undefined;
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

/**
 * Removes the queue directory if it is empty. A waiter making its bell meanwhile finds it gone and makes it
 * again (openBell), as when cleanStaleLocks removes it.
 */
function rmdirQuietly(dir: FsPath): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty (someone waits), or gone already
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
 * Whether townlock processes may wait for `target`: the stats of its waiters directory if it exists (the
 * first waiter makes it; cleanStaleLocks removes it only when empty), else undefined. Asked after the unlock: a waiter makes the directory
 * and its bell before the attempt that precedes each sleep, and if that attempt failed it came before
 * this unlock, so this finds the directory. (lstat without throwing: no exception on the uncontended
 * path; a symlink in its place is no queue.)
 */
export function mayHaveWaiters(target: LockTarget): fs.Stats | undefined {
  const st = fs.lstatSync(waitersDirOf(target.fsLockPath), { throwIfNoEntry: false });
  return st?.isDirectory() ? st : undefined;
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
 * After this process released `target` (and saw its waiters directory, `queue`): rings the oldest waiter (the one
 * `hint` holds open, if it still waits), and if one was rung, owes it a turn and returns true. False when
 * nobody could be rung (no live bell, or a queue this process may not use): the caller then touches the
 * lock file instead.
 */
export function noteRelease(
  backend: LockBackend,
  target: LockTarget,
  queue: fs.Stats,
  hint?: RingHint,
): boolean {
  const dir = waitersDirOf(target.fsLockPath);
  const prepared = hint?.take();
  let rung: string | undefined;
  if (prepared) {
    try {
      // Still queued (linked), a bell, and still waiting (its flock held): ring it.
      const st = fs.fstatSync(prepared.fd);
      if (st.nlink > 0 && st.isFile() && !backend.tryLock(prepared.fd, 'exclusive')) {
        backend.touch(prepared.fd);
        rung = prepared.name;
      }
    } catch {
      // ask the directory instead
    } finally {
      closeQuietly(prepared.fd);
    }
  }
  if (rung === undefined) {
    if (!trusted(queue)) return false;
    rung = ringNext(backend, dir);
    if (rung === undefined) {
      lastRung.delete(target.key);
      // Beside a file the caller named (where `lock clean` does not look), what waiters who died left is
      // cleared, so that the queue directory goes: ringNext removed the bells nobody holds.
      if (target.named) clearHiddenBells(backend, dir, MAX_PROBES);
      return false;
    }
  }
  // The same waiter first again at this process's next release, after a ring that gave it the turn: it
  // did not take the lock (it hangs, is suspended, or lost it to a newcomer). Ring the one after it too,
  // and owe no turn: a turn owed to a waiter that does not take it would delay every release of this
  // process by YIELD_MS. (After a ring that did not give it the turn, it simply had no turn yet.)
  const before = lastRung.get(target.key);
  if (before?.name === rung && before.gaveTurn) {
    ringNext(backend, dir, rung);
    return true;
  }
  // A waiter that has waited only briefly is woken but not given the turn: this process may go on if it
  // asks again at once. Short critical sections (a log append) then run in bursts instead of paying a
  // handoff each; once the first waiter has waited STARVING_MS, the next release gives it the turn.
  const gaveTurn = process.hrtime.bigint() - BigInt(rung.slice(0, 20)) >= STARVING_NS;
  if (lastRung.size >= 256) lastRung.clear();
  lastRung.set(target.key, { name: rung, gaveTurn });
  if (!gaveTurn) return true;
  const now = performance.now();
  // Debts of locks this process never asked for again expire unused: drop them before the map grows.
  if (owed.size >= 256) for (const [key, until] of owed) if (until <= now) owed.delete(key);
  owed.set(target.key, now + YIELD_MS);
  return true;
}

/** The bell each lock's last release of this process rang, by lock key, and whether it gave it the turn. */
const lastRung = new Map<string, { name: string; gaveTurn: boolean }>();

/**
 * A release's ring prepared during the hold: at the next turn of the event loop after a lock that had to
 * wait, the oldest waiting bell is found and opened, so that the release only asks it and touches it
 * (see the module comment). Nothing is found when nobody waits yet; a lock released within the same turn
 * finds nothing either, and its release lists the directory as usual.
 */
export class RingHint {
  readonly #backend: LockBackend;
  readonly #dir: FsPath;
  #bell: { fd: number; name: string } | undefined;
  /** Watches the queue directory while nobody waits yet, to find the first waiter when it queues. */
  #watcher: FSWatcher | undefined;
  #done = false;

  constructor(backend: LockBackend, target: LockTarget) {
    this.#backend = backend;
    this.#dir = waitersDirOf(target.fsLockPath);
    setImmediate(() => {
      if (this.#done || !trusted(fs.lstatSync(this.#dir, { throwIfNoEntry: false }))) return;
      if (this.#look()) return;
      // Nobody waits yet: the first to queue during this hold is the one to ring.
      this.#watcher = watchQuietly(this.#dir);
      this.#watcher?.on('change', (_event: string, name: unknown) => {
        if (!this.#done && typeof name === 'string' && BELL_NAME.test(name) && this.#look()) this.#unwatch();
      });
      this.#look(); // a waiter that queued before the watch began
    });
  }

  /** Finds and opens the oldest bell whose owner waits (holds its flock); true if found. */
  #look(): boolean {
    if (this.#bell) return true;
    let probes = 0;
    for (const name of bellNames(this.#dir)) {
      if (++probes > MAX_PROBES) return false;
      const fd = openQuietly(join(this.#dir, `/${name}`), OPEN_RING);
      if (fd === undefined) continue;
      try {
        if (fs.fstatSync(fd).isFile() && !this.#backend.tryLock(fd, 'exclusive')) {
          this.#bell = { fd, name };
          return true;
        }
      } catch {
        // not a bell to ring
      }
      closeQuietly(fd); // abandoned or leaving: the release's to remove
    }
    return false;
  }

  #unwatch(): void {
    if (this.#watcher) closeSoon(this.#watcher);
    this.#watcher = undefined;
  }

  /** The opened bell and its name, now the caller's to close; undefined if none. Ends the hint. */
  take(): { fd: number; name: string } | undefined {
    this.#done = true;
    this.#unwatch();
    const bell = this.#bell;
    this.#bell = undefined;
    return bell;
  }

  /** Ends the hint, closing what it opened (a release that did not use it). */
  dispose(): void {
    const bell = this.take();
    if (bell) closeQuietly(bell.fd);
  }
}

function openQuietly(path: FsPath, flags: number): number | undefined {
  try {
    return fs.openSync(path, flags);
  } catch {
    return undefined;
  }
}

/**
 * Rings the oldest bell in `dir` (after `after`, if given) whose owner still waits; returns its name, or
 * undefined if none was rung. Bells nobody holds are unlinked on the way; at most MAX_PROBES bells are
 * looked at. Never throws: a ring is only a wake-up.
 */
export function ringNext(backend: LockBackend, dir: FsPath, after = ''): string | undefined {
  let probes = 0;
  for (const name of bellNames(dir)) {
    if (name <= after) continue;
    if (++probes > MAX_PROBES) return undefined;
    if (probeBell(backend, join(dir, `/${name}`), true) === 'waiting') return name;
  }
  return undefined;
}

/**
 * Removes the bells in the queue directory `dir` that no waiter holds, then the directory if that left it
 * empty (for cleanStaleLocks). A waiter whose bell or directory goes meanwhile is only woken: it makes
 * them again.
 */
export function removeAbandonedBells(backend: LockBackend, dir: FsPath): void {
  if (!trusted(fs.lstatSync(dir, { throwIfNoEntry: false }))) return; // never through a symlink, never a file
  for (const name of bellNames(dir)) probeBell(backend, join(dir, `/${name}`), false, true);
  clearHiddenBells(backend, dir, Number.POSITIVE_INFINITY);
}

/**
 * Removes the hidden bells of waiters that died while making them, `limit` at most, then `dir` if that left
 * it empty: for cleanStaleLocks, and after a release beside a lock file the caller named found no waiter
 * to ring (MAX_PROBES there). Only bells a minute old: a younger one may be in the making, and taking its
 * flock to ask would make its owner give up its place. Bells are probed read-write, so that a probe works
 * where flock is emulated with fcntl locks (Linux NFS refuses an exclusive one on a read-only descriptor).
 */
function clearHiddenBells(backend: LockBackend, dir: FsPath, limit: number): void {
  const old = Date.now() - 60_000;
  let probes = 0;
  for (const name of hiddenBellNames(dir)) {
    if (++probes > limit) return;
    const path = join(dir, `/${name}`);
    if ((fs.lstatSync(path, { throwIfNoEntry: false })?.mtimeMs ?? old) < old)
      probeBell(backend, path, false, true);
  }
  rmdirQuietly(dir);
}

/** The hidden names under which bells are made (see Place.enter), in `dir`. */
function hiddenBellNames(dir: FsPath): string[] {
  try {
    return (fs.readdirSync(dir) as string[]).filter((n) => n.startsWith('.') && BELL_NAME.test(n.slice(1)));
  } catch {
    return [];
  }
}

/** Bells of this process's exclusive takers, unlinked at the next turn: never rung, never waited for. */
const leaving = new Set<string>();

/** The bells in `dir`, oldest first (none when it cannot be read). */
function bellNames(dir: FsPath): string[] {
  try {
    return (fs.readdirSync(dir) as string[]).filter((n) => BELL_NAME.test(n) && !leaving.has(n)).sort();
  } catch {
    return [];
  }
}

/**
 * Asks whether the bell at `path` has a waiting owner (it holds its flock): 'waiting', and then, with
 * `ring`, rings it by touching it. A bell nobody holds is 'abandoned' and unlinked (which wakes its
 * owner, if it lives and is about to lock it: it then makes it again). 'gone' when it left the queue or
 * cannot be opened, rung or unlinked. `writable`: opened read-write even without `ring` (an fcntl-emulated
 * flock refuses an exclusive lock on a read-only descriptor).
 */
function probeBell(
  backend: LockBackend,
  path: FsPath,
  ring: boolean,
  writable = ring,
): 'waiting' | 'abandoned' | 'gone' {
  const fd = openQuietly(path, writable ? OPEN_RING : OPEN_PROBE);
  if (fd === undefined) return 'gone';
  try {
    // Anything but a regular file named like a bell is junk: removed like an abandoned bell.
    if (fs.fstatSync(fd).isFile() && !backend.tryLock(fd, 'exclusive')) {
      if (ring) backend.touch(fd);
      return 'waiting';
    }
    fs.unlinkSync(path);
    return 'abandoned';
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
