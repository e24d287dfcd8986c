/**
 * cleanStaleLocks: remove lock files nobody uses, without ever breaking mutual exclusion.
 *
 * What it touches: only `*.lock` regular files inside a townlock lock directory, `<dir>/.gastown/locks`
 * (or that directory given directly). Anything else (a project's `Cargo.lock`, a directory that does
 * not exist, a file) is left alone or refused with `ERR_LOCK_DIR`.
 *
 * Why deleting is delicate: a process that opened a lock file before it was unlinked locks the deleted
 * inode, while a newcomer creates and locks a new file at the path: two holders. townlock acquirers check
 * after locking that the path still names their inode and retry if not; flock(1), the Go tool and Python
 * do not. So a file is deleted only
 * - while this process holds it exclusively (held files are skipped) and the path still names that inode;
 * - when no other process has it open (Linux /proc: descriptors and blocked flock() waiters);
 * - and, because a process may open it between that check and the unlink, the check is repeated after
 *   the unlink: if a straggler holds the old inode open, the cleaner takes the lock of whatever file is
 *   at the path now before letting go of the old one, and keeps it until the last straggler has closed
 *   the old inode. Newcomers and stragglers then never hold at once; the file counts as not removed.
 * Left open: another user's process, invisible without root in /proc, that opens the file in the
 * microseconds between the two checks and is not yet blocked in flock() when the second runs.
 * Where /proc does not exist, the open-file checks are impossible and cleanStaleLocks refuses
 * (`ERR_UNSUPPORTED_PLATFORM`) unless told that only townlock processes use the lock files.
 * cleanLockFile applies exactly these rules to one lock file.
 */
import fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidOptionError, UnsupportedPlatformError } from '../errors.js';
import { closeIdleDescriptors, closeQuietly, isCurrent, type LockFd, openLockFile } from './_lock-file.js';
import { canListOpeners, idKey, openersIn } from './_openers.js';
import { displayPath, type FsPath, fsBasename, fsDirname, resolveLockTarget } from './_target.js';
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
 * one that does not exist or is not a directory is refused with `LockDirError` (`ERR_LOCK_DIR`).
 */
export async function cleanStaleLocks(dir: string, options: CleanOptions = {}): Promise<number> {
  if (typeof dir !== 'string' || dir === '') throw new InvalidOptionError('dir', dir, 'a non-empty string');
  checkOptions(options);
  const lockDir = locateLockDir(dir);
  if (!lockDir) return 0;
  const { backend, checkOpeners } = await prepare(options);
  const inUse = checkOpeners ? openersIn(lockDir) : new Map<string, Set<number>>();
  let removed = 0;
  for (const name of fs.readdirSync(lockDir)) {
    if (!name.endsWith('.lock')) continue;
    if (await cleanOne(backend, lockDir, join(lockDir, name), inUse, checkOpeners)) removed++;
  }
  return removed;
}

/**
 * Deletes the one lock file `lockPath` if nobody holds or has it open, with exactly the rules of
 * {@link cleanStaleLocks}, and returns whether it deleted it (false when it does not exist or is in use).
 * `lockPath` must be a `*.lock` file in a `.gastown/locks` directory: anything else is refused with
 * `LockDirError` (`ERR_LOCK_DIR`). It may be a Buffer for a name that is not valid UTF-8.
 */
export async function cleanLockFile(lockPath: string | Buffer, options: CleanOptions = {}): Promise<boolean> {
  if (!(typeof lockPath === 'string' || Buffer.isBuffer(lockPath)) || lockPath.length === 0)
    throw new InvalidOptionError('lockPath', lockPath, 'a non-empty string or Buffer');
  checkOptions(options);
  const target = resolveLockTarget(lockPath, undefined, true);
  const dir = fsDirname(target.fsLockPath);
  if (fsBasename(dir) !== 'locks' || fsBasename(fsDirname(dir)) !== '.gastown')
    throw new LockDirError(target.lockPath, 'it is not in a .gastown/locks directory');
  if (!fsBasename(target.fsLockPath).endsWith('.lock'))
    throw new LockDirError(target.lockPath, 'lock files are named *.lock');
  const { backend, checkOpeners } = await prepare(options);
  // openersIn matches descriptors by their link text, decoded as this display form is.
  const lockDir = displayPath(dir);
  const inUse = checkOpeners ? openersIn(lockDir) : new Map<string, Set<number>>();
  return cleanOne(backend, lockDir, target.fsLockPath, inUse, checkOpeners);
}

/** Validates CleanOptions. */
function checkOptions(options: CleanOptions): void {
  if (options === null || typeof options !== 'object')
    throw new InvalidOptionError('options', options, 'an object');
}

/** The backend, and whether open files can (and must) be checked; closes this process's idle descriptors. */
async function prepare(options: CleanOptions): Promise<{ backend: LockBackend; checkOpeners: boolean }> {
  const checkOpeners = !options.assumeTownlockOnly;
  if (checkOpeners && !canListOpeners)
    throw new UnsupportedPlatformError(
      `${process.platform} (cleanStaleLocks cannot list open files here; pass assumeTownlockOnly if only townlock uses these locks)`,
    );
  const backend = await loadBackend();
  closeIdleDescriptors(); // this process's own idle descriptors would otherwise count as "in use"
  return { backend, checkOpeners };
}

/** Deletes one candidate if it is a plain, singly linked file that no process has open; true if it did. */
async function cleanOne(
  backend: LockBackend,
  lockDir: string,
  lockPath: FsPath,
  inUse: Map<string, Set<number>>,
  checkOpeners: boolean,
): Promise<boolean> {
  const st = fs.lstatSync(lockPath, { throwIfNoEntry: false });
  if (!st?.isFile() || st.nlink !== 1 || inUse.has(idKey(st))) return false;
  return removeIfUnused(backend, lockDir, lockPath, checkOpeners);
}

/** The lock directory `dir` names, or undefined when it has none. Throws LockDirError for bad `dir`s. */
function locateLockDir(dir: string): string | undefined {
  const abs = resolve(dir);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (!st) throw new LockDirError(abs, 'it does not exist');
  if (!st.isDirectory()) throw new LockDirError(abs, 'it is not a directory');
  const real = fs.realpathSync.native(abs);
  if (basename(real) === 'locks' && basename(dirname(real)) === '.gastown') return real;
  const nested = join(real, '.gastown', 'locks');
  const inner = fs.lstatSync(nested, { throwIfNoEntry: false });
  if (!inner) return undefined;
  if (!inner.isDirectory())
    throw new LockDirError(nested, 'it is not a directory (a symlink is not followed)');
  return nested;
}

/** Deletes one lock file if nobody holds or has it open; true if it is gone. */
async function removeIfUnused(
  backend: LockBackend,
  lockDir: string,
  lockPath: FsPath,
  checkOpeners: boolean,
): Promise<boolean> {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, OPEN_EXISTING);
  } catch {
    return false; // gone already, or not ours to open: leave it
  }
  let bridged = false;
  try {
    const st = fs.fstatSync(fd);
    const held: LockFd = { fd, ino: st.ino, dev: st.dev };
    if (!st.isFile() || st.nlink !== 1 || !backend.tryLock(fd, 'exclusive') || !isCurrent(held, lockPath)) {
      return false;
    }
    await cleanHooks.beforeUnlink?.(displayPath(lockPath));
    fs.unlinkSync(lockPath);
    if (!checkOpeners || !openersIn(lockDir, fd).has(idKey(st))) return true;
    bridged = true;
    await bridge(backend, lockDir, lockPath, held);
    return false;
  } catch {
    return false; // not removable now (permissions, a race with another cleaner): leave it for a later pass
  } finally {
    if (!bridged) closeQuietly(fd);
  }
}

/**
 * A straggler opened `old` before it was unlinked and will lock it once we let go, while newcomers lock
 * the file now at the path. Take the newcomers' file first (waiting if one holds it), then let go of
 * `old`, and keep the new file locked until nobody has `old` open any more.
 */
async function bridge(backend: LockBackend, lockDir: string, lockPath: FsPath, old: LockFd): Promise<void> {
  let current: LockFd | undefined;
  let oldOpen = true;
  try {
    for (;;) {
      current = openLockFile(lockPath, 0o644);
      if (backend.tryLock(current.fd, 'exclusive') && isCurrent(current, lockPath)) break;
      closeQuietly(current.fd);
      current = undefined;
      await pause(POLL_MS);
    }
    closeQuietly(old.fd); // the stragglers may go now, one at a time on the old inode
    oldOpen = false;
    const key = idKey(old);
    while (openersIn(lockDir).has(key)) await pause(POLL_MS);
  } finally {
    if (oldOpen) closeQuietly(old.fd);
    if (current) closeQuietly(current.fd);
  }
}

/** Waits `ms`. */
function pause(ms: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, ms));
}
