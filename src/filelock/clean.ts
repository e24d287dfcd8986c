/**
 * cleanStaleLocks: remove lock files nobody uses, without ever breaking mutual exclusion.
 *
 * What it touches: only `*.lock` regular files inside a townlock lock directory, `<dir>/.gastown/locks`
 * (or that directory given directly), and the waiters' queues beside them (`*.lock.waiters/`: bells no
 * waiter holds, then the directory when empty; `*.lock.wait` files of earlier versions). Anything else (a project's `Cargo.lock`, a directory that does
 * not exist, a file) is left alone or refused with `ERR_LOCK_DIR`.
 *
 * Why deleting is delicate: a process that opened a lock file before it was unlinked locks the deleted
 * inode, while a newcomer creates and locks a new file at the path: two holders. townlock acquirers check
 * after locking that the path still names their inode and retry if not; flock(1), the Go tool and Python
 * do not. So a file is deleted only
 * - while this process holds it exclusively (held files are skipped) and the path still names that inode;
 * - when no other process has it open (Linux /proc: descriptors and blocked flock() waiters, matched by
 *   device and inode, so symlinked paths and bind mounts are seen too);
 * - and, because a process may open it between that check and the unlink, the check is repeated after
 *   the unlink: if a straggler holds the old inode open, the cleaner takes the lock of whatever file is
 *   at the path now before letting go of the old one, and keeps it until the last straggler has closed
 *   the old inode. Newcomers and stragglers then never hold at once; the file counts as not removed.
 *   The bridge never gives up half way, so a straggler that keeps the old inode open keeps the cleaner
 *   (and newcomers, who wait for its hold) waiting until it closes it.
 * Files are handled in rounds of 64: one /proc scan, lock the unused ones, unlink, one more scan; the
 * window in which an open is missed by the first scan (and must be bridged) is one round.
 * Left open: another user's process, invisible without root in /proc, that opens the file in that window
 * and is not yet blocked in flock() when the second scan runs.
 * cleanLockFile applies exactly these rules to one lock file.
 * Where /proc does not exist, the open-file checks are impossible and cleanStaleLocks refuses
 * (`ERR_UNSUPPORTED_PLATFORM`) unless told that only townlock processes use the lock files.
 */
import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidOptionError, UnsupportedPlatformError } from '../errors.js';
import { removeAbandonedBells } from './_fairness.js';
import { closeIdleDescriptors, closeQuietly, isCurrent, type LockFd } from './_lock-file.js';
import { canListOpeners, idKey, openLockFiles } from './_openers.js';
import { type FsPath, fsBasename, fsDirname, resolveLockTarget } from './_target.js';
import { type LockBackend, loadBackend } from './backend.js';
import { LockDirError } from './errors.js';

/** Options for {@link cleanStaleLocks}. */
export interface CleanOptions {
  /**
   * Skip the open-file checks (needed where there is no /proc). Safe only if no process other than
   * townlock ones (flock(1), the Go tool, Python) ever opens these lock files. @default false
   */
  assumeTownlockOnly?: boolean;
}

/** Test hooks: run between the open-file check and the unlink (to stage a straggler). Internal. */
export const cleanHooks: { beforeUnlink?: (lockPath: string) => Promise<void> } = {};

const OPEN_EXISTING = fs.constants.O_RDWR | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);
/** How often the bridge looks again for stragglers, in ms. */
const POLL_MS = 5;

/**
 * Deletes every unused `*.lock` file in `dir/.gastown/locks` (or in `dir` itself when it is such a
 * directory) and returns how many it deleted. A `dir` without `.gastown/locks` has nothing to clean (0);
 * one that does not exist or is not a directory, or whose `.gastown` or `locks` is a symbolic link, is
 * refused with `LockDirError` (`ERR_LOCK_DIR`).
 */
export async function cleanStaleLocks(dir: string, options: CleanOptions = {}): Promise<number> {
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) {
    throw new InvalidOptionError('dir', dir, 'a non-empty string');
  }
  checkOptions(options);
  const lockDir = locateLockDir(dir);
  if (!lockDir) return 0;
  const { backend, checkOpeners } = await prepare(options);
  // Names as bytes: a lock file whose name is not valid UTF-8 (locked with flock(1) or the Go tool) is
  // cleaned like any other, never looked up under a lossy decoding of its name.
  const names = fs.readdirSync(lockDir, { encoding: 'buffer' });
  const pathOf = (name: Buffer): FsPath =>
    isUtf8(name) ? join(lockDir, name.toString()) : Buffer.concat([Buffer.from(`${lockDir}/`), name]);
  for (const name of names) {
    // A waiters' file of earlier versions, and the queue directory of today's (see _fairness.ts).
    if (endsWith(name, '.lock.wait')) removeWaitFile(backend, pathOf(name));
    else if (endsWith(name, '.lock.waiters')) removeAbandonedBells(backend, pathOf(name));
  }
  const lockPaths = names.filter((n) => endsWith(n, '.lock')).map(pathOf);
  let removed = 0;
  for (let i = 0; i < lockPaths.length; i += ROUND) {
    removed += await cleanRound(backend, lockPaths.slice(i, i + ROUND), checkOpeners);
    await new Promise((resolve) => setImmediate(resolve)); // a long pass must not stall the event loop
  }
  return removed;
}

/** Whether a file name (as bytes) ends with `suffix`. */
function endsWith(name: Buffer, suffix: string): boolean {
  const tail = Buffer.from(suffix);
  return name.length >= tail.length && name.subarray(name.length - tail.length).equals(tail);
}

/**
 * Deletes the one lock file `lockPath` if nobody holds or has it open, with exactly the rules of
 * {@link cleanStaleLocks}, and returns whether it deleted it (false when it does not exist or is in use).
 * `lockPath` must be a `*.lock` file in a `.gastown/locks` directory: anything else is refused with
 * `LockDirError` (`ERR_LOCK_DIR`). It may be a Buffer for a name that is not valid UTF-8.
 */
export async function cleanLockFile(lockPath: string | Buffer, options: CleanOptions = {}): Promise<boolean> {
  if (!(typeof lockPath === 'string' || Buffer.isBuffer(lockPath)) || lockPath.length === 0) {
    throw new InvalidOptionError('lockPath', lockPath, 'a non-empty string or Buffer');
  }
  checkOptions(options);
  const target = resolveLockTarget(lockPath, undefined, true);
  const dir = fsDirname(target.fsLockPath);
  if (fsBasename(dir) !== 'locks' || fsBasename(fsDirname(dir)) !== '.gastown') {
    throw new LockDirError(target.lockPath, 'it is not in a .gastown/locks directory');
  }
  if (!fsBasename(target.fsLockPath).endsWith('.lock')) {
    throw new LockDirError(target.lockPath, 'lock files are named *.lock');
  }
  for (const part of [fsDirname(dir), dir]) {
    if (fs.lstatSync(part, { throwIfNoEntry: false })?.isSymbolicLink()) {
      throw new LockDirError(target.lockPath, 'its .gastown or locks directory is a symbolic link');
    }
  }
  const { backend, checkOpeners } = await prepare(options);
  return (await cleanRound(backend, [target.fsLockPath], checkOpeners)) === 1;
}

/** Refuses options that are not an object. */
function checkOptions(options: CleanOptions): void {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', options, 'an object');
  }
}

/** The backend, and whether open files can and must be checked (throws where they cannot but must). */
async function prepare(options: CleanOptions): Promise<{ backend: LockBackend; checkOpeners: boolean }> {
  const checkOpeners = !options.assumeTownlockOnly;
  if (checkOpeners && !canListOpeners) {
    throw new UnsupportedPlatformError(
      `${process.platform} (cleanStaleLocks cannot list open files here; pass assumeTownlockOnly if only townlock uses these locks)`,
    );
  }
  const backend = await loadBackend();
  closeIdleDescriptors(); // this process's own idle descriptors would otherwise count as "in use"
  return { backend, checkOpeners };
}

/** How many lock files one round locks, deletes and checks at once. */
const ROUND = 64;

/**
 * One round: skip files anyone has open (one /proc scan), lock the rest, delete them, and look once more:
 * a file a process opened in between is bridged (see {@link bridge}). Returns how many are gone.
 */
async function cleanRound(backend: LockBackend, lockPaths: FsPath[], checkOpeners: boolean): Promise<number> {
  const inUse = checkOpeners ? openLockFiles() : new Map<string, Set<number>>();
  const taken: { path: FsPath; held: LockFd }[] = [];
  for (const path of lockPaths) {
    const held = lockIfUnused(backend, path, inUse);
    if (held) taken.push({ path, held });
  }
  const unlinked: { path: FsPath; held: LockFd }[] = [];
  for (const t of taken) {
    try {
      await cleanHooks.beforeUnlink?.(String(t.path));
      fs.unlinkSync(t.path);
      unlinked.push(t);
    } catch {
      closeQuietly(t.held.fd); // not removable now: leave it for a later pass
    }
  }
  const ours = new Set(unlinked.map((u) => u.held.fd));
  const stragglers =
    checkOpeners && unlinked.length > 0 ? openLockFiles(ours) : new Map<string, Set<number>>();
  let removed = 0;
  const bridges: { path: FsPath; held: LockFd }[] = [];
  for (const u of unlinked) {
    if (stragglers.has(idKey(u.held))) bridges.push(u);
    else {
      closeQuietly(u.held.fd);
      removed++;
    }
  }
  for (const b of bridges) await bridge(backend, b.path, b.held);
  return removed;
}

/** Opens and exclusively locks the lock file at `path` if nobody uses it; undefined otherwise. */
function lockIfUnused(
  backend: LockBackend,
  path: FsPath,
  inUse: Map<string, Set<number>>,
): LockFd | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, OPEN_EXISTING);
  } catch {
    return undefined; // gone already, a symlink, or not ours to open: leave it
  }
  try {
    const st = fs.fstatSync(fd);
    const held: LockFd = { fd, ino: st.ino, dev: st.dev, named: false, readOnly: false };
    if (
      st.isFile() &&
      st.nlink === 1 &&
      !inUse.has(idKey(held)) &&
      backend.tryLock(fd, 'exclusive') &&
      isCurrent(held, path)
    ) {
      return held;
    }
  } catch {
    // not lockable now: leave it
  }
  closeQuietly(fd);
  return undefined;
}

/**
 * Deletes a waiters' announcement file of earlier versions (a shared flock on `<lock>.wait`) that no waiter holds. Nothing depends on it for
 * exclusion, so no straggler protocol: a waiter announcing on the deleted file only loses its turn.
 */
function removeWaitFile(backend: LockBackend, path: FsPath): void {
  const held = lockIfUnused(backend, path, new Map());
  if (!held) return;
  try {
    fs.unlinkSync(path);
  } catch {
    // leave it for a later pass
  } finally {
    closeQuietly(held.fd);
  }
}

/** The lock directory `dir` names, or undefined when it has none. Throws LockDirError for bad `dir`s. */
function locateLockDir(dir: string): string | undefined {
  const abs = resolve(dir);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (!st) throw new LockDirError(abs, 'it does not exist');
  if (!st.isDirectory()) throw new LockDirError(abs, 'it is not a directory');
  const real = fs.realpathSync.native(abs);
  if (basename(real) === 'locks' && basename(dirname(real)) === '.gastown') return real;
  // Our layout only, component by component: a .gastown or locks that is a symlink may lead anywhere.
  for (const part of [join(real, '.gastown'), join(real, '.gastown', 'locks')]) {
    const entry = fs.lstatSync(part, { throwIfNoEntry: false });
    if (!entry) return undefined;
    if (entry.isSymbolicLink())
      throw new LockDirError(part, 'it is a symbolic link, which clean-up never follows');
    if (!entry.isDirectory()) throw new LockDirError(part, 'it is not a directory');
  }
  return join(real, '.gastown', 'locks');
}

/**
 * A straggler opened `old` before it was unlinked and will lock it once we let go, while newcomers lock
 * the file now at the path. Take the newcomers' file first (waiting if one holds it), then let go of
 * `old`, and keep the new file locked until nobody has `old` open any more. Never gives up half way:
 * letting go of `old` without holding the new file would let a straggler and a newcomer hold at once, so
 * any error is retried, and this waits as long as a straggler keeps `old` open.
 */
async function bridge(backend: LockBackend, lockPath: FsPath, old: LockFd): Promise<void> {
  let current: LockFd | undefined;
  try {
    while (!current) {
      current = lockCurrentFile(backend, lockPath);
      if (!current) await pause(POLL_MS);
    }
    closeQuietly(old.fd); // the stragglers may go now, one at a time on the old inode
    const key = idKey(old);
    while (openLockFiles(new Set([current.fd])).has(key)) await pause(POLL_MS);
  } finally {
    if (!current) closeQuietly(old.fd); // only reached if the process is going down anyway
    if (current) closeQuietly(current.fd);
  }
}

/** Opens (creating it if needed) and exclusively locks the file now at `lockPath`; undefined if not now. */
function lockCurrentFile(backend: LockBackend, lockPath: FsPath): LockFd | undefined {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, OPEN_EXISTING | fs.constants.O_CREAT, 0o644);
  } catch {
    return undefined; // EMFILE, EACCES, ...: try again
  }
  try {
    const st = fs.fstatSync(fd);
    const held: LockFd = { fd, ino: st.ino, dev: st.dev, named: false, readOnly: false };
    if (backend.tryLock(fd, 'exclusive') && isCurrent(held, lockPath)) return held;
  } catch {
    // try again
  }
  closeQuietly(fd);
  return undefined;
}

/** Waits `ms`. */
function pause(ms: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, ms));
}
