/**
 * Operations on one lock file: open it safely, check it is still the file at its path, write holder
 * info, and release with a wake-up. No policy lives here; lock.ts decides when to call what.
 */
import fs from 'node:fs';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { displayPath as display, type FsPath, fsBasename, fsDirname, type LockTarget } from './_target.js';
import type { LockBackend } from './backend.js';
import { LockSymlinkError, LockUnsafeError } from './errors.js';

// libuv opens every file with O_CLOEXEC, so lock descriptors never leak into child processes. O_NONBLOCK
// keeps a FIFO planted at the lock path from blocking the open; the type check below then refuses it.
const OPEN_FLAGS =
  fs.constants.O_RDWR |
  fs.constants.O_CREAT |
  (fs.constants.O_NOFOLLOW ?? 0) |
  (fs.constants.O_NONBLOCK ?? 0);
/**
 * A lock file the caller named (`isLockFile`, `-L`) is opened read-only, as flock(1) opens its FILE:
 * townlock never writes to it, and a script or program open for writing cannot be executed (ETXTBSY),
 * which would break `flock "$0"`. Exclusive flock on a read-only descriptor works, except where flock is
 * emulated with fcntl locks (Linux NFS: EBADF): the attempt then reopens it read-write, as flock(1) does.
 */
const OPEN_NAMED_FLAGS = (OPEN_FLAGS & ~fs.constants.O_RDWR) | fs.constants.O_RDONLY;

/** An open lock file descriptor and the inode it refers to (fixed for the descriptor's life). */
export interface LockFd {
  fd: number;
  ino: number;
  dev: number;
  /** A lock file the caller named (never written; it may have links). */
  named: boolean;
  /** Opened read-only (a named lock file, unless an exclusive lock needed write access; see OPEN_NAMED_FLAGS). */
  readOnly: boolean;
}

/**
 * Opens (creating it, and its directory if needed and `createDirs`) the lock file read-write, refusing
 * symlinks, anything but a regular file, hard-linked files, and files or lock directories owned by another
 * non-root user (who could swap or unlink them under us: the check OpenSSH's StrictModes makes). The file
 * is never truncated: a holder's content belongs to the holder.
 */
export function openLockFile(
  lockPath: FsPath,
  mode: number,
  createDirs = true,
  named = false,
  readOnly = named,
): LockFd {
  let madeDirs = false;
  for (;;) {
    let fd: number;
    try {
      fd = fs.openSync(lockPath, readOnly ? OPEN_NAMED_FLAGS : OPEN_FLAGS, mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'EMLINK') throw new LockSymlinkError(display(lockPath), err);
      // Directories are made once: an ENOENT after that (a file system such as /proc that accepts no new
      // entries, or a directory removed again at once) is the answer, not a reason to loop.
      if (code !== 'ENOENT' || !createDirs || madeDirs) throw err;
      makeDirs(fsDirname(lockPath));
      madeDirs = true;
      continue;
    }
    try {
      const st = fs.fstatSync(fd);
      // No links left: cleanStaleLocks deleted it between our open and fstat. Open the path again.
      if (st.nlink === 0) {
        closeQuietly(fd);
        continue;
      }
      checkLockFile(lockPath, st, named);
      return { fd, ino: st.ino, dev: st.dev, named, readOnly };
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }
}

/**
 * Creates `dir` and its missing parents, one level at a time, each 0o775 whatever the umask allows beyond
 * it (never writable by everyone: see checkDirectory). Not `mkdirSync(recursive)`: on some file systems
 * (/proc/PID) Node's recursive mkdir spins forever in native code, beyond the reach of any signal.
 */
function makeDirs(dir: FsPath): void {
  const missing: FsPath[] = [];
  for (let d = dir; ; d = fsDirname(d)) {
    try {
      fs.mkdirSync(d, { mode: 0o775 });
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') break; // there (a file instead of a directory: the open says ENOTDIR)
      const parent = fsDirname(d);
      if (code !== 'ENOENT' || String(parent) === String(d)) throw err;
      missing.push(d);
    }
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d, { mode: 0o775 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // made by a racing process: fine
    }
  }
}

/** Throws LockUnsafeError unless `st` is a plain, singly linked lock file in directories we trust. */
function checkLockFile(lockPath: FsPath, st: fs.Stats, named: boolean): void {
  const shown = display(lockPath);
  if (!st.isFile()) throw new LockUnsafeError(shown, 'it is not a regular file');
  // A holder writes its line into a lock file of townlock's own: through a second link, into another
  // file. A file the caller named is never written, so it may have links, as under flock(1).
  if (st.nlink !== 1 && !named) throw new LockUnsafeError(shown, `it has ${st.nlink} hard links`);
  checkOwner(shown, 'lock file', st.uid);
  const dir = fsDirname(lockPath);
  checkDirectory(shown, 'lock directory', dir);
  const parent = fsDirname(dir);
  if (fsBasename(parent) === '.gastown') checkDirectory(shown, 'directory', parent);
}

/**
 * Refuses a lock directory (or `.gastown`) that is a symbolic link (it may lead anywhere, and would give
 * one lock file two spellings), that another non-root user owns, or that anyone may write without the
 * sticky bit (anyone could then delete or replace a held lock file).
 */
function checkDirectory(lockPath: string, what: string, dir: FsPath): void {
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink())
    throw new LockUnsafeError(lockPath, `the ${what} ${display(dir)} is a symbolic link`);
  checkOwner(lockPath, `${what} ${display(dir)}`, st.uid);
  if (process.platform !== 'win32' && (st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
    throw new LockUnsafeError(
      lockPath,
      `the ${what} ${display(dir)} is writable by everyone (mode ${(st.mode & 0o7777).toString(8)}): anyone could delete a held lock file`,
    );
  }
}

/** Refuses what another non-root user owns: they could replace or delete it while we hold its lock. */
function checkOwner(lockPath: string, what: string, uid: number): void {
  const euid = process.geteuid?.();
  if (euid === undefined || uid === euid || uid === 0) return;
  throw new LockUnsafeError(
    lockPath,
    `the ${what} is owned by uid ${uid}, not by this user (${euid}) or root`,
  );
}

/**
 * True when `lockPath` still names the inode `held` refers to. A lock held on an inode that was unlinked
 * (by cleanStaleLocks) or replaced protects nothing, so acquirers must check this after locking.
 */
export function isCurrent(held: LockFd, lockPath: FsPath): boolean {
  const onPath = fs.lstatSync(lockPath, { throwIfNoEntry: false });
  return onPath !== undefined && held.ino === onPath.ino && held.dev === onPath.dev;
}

/**
 * Unlocked descriptors kept open until the event loop turns, so that a burst of lock/unlock cycles on
 * one file (a loop of withWriteLock calls) skips open, fstat and close. An idle descriptor holds no lock;
 * if cleanStaleLocks deletes its file meanwhile, isCurrent() notices on reuse and the caller reopens.
 */
const idle = new Map<string, LockFd>();
let flushScheduled = false;

/** Returns an open descriptor for the lock file: an idle one if there is one, else a new one. */
export function takeLockFd({ key, fsLockPath, createDirs, named }: LockTarget, mode: number): LockFd {
  const cached = idle.get(key);
  if (cached) idle.delete(key);
  // A descriptor opened for the other kind of lock file (a lockDir file also named with isLockFile):
  // read-only where a holder line must be written, or read-write where the caller named the file.
  if (cached && cached.named !== named) closeQuietly(cached.fd);
  else if (cached) return cached;
  return openLockFile(fsLockPath, mode, createDirs, named);
}

/** Keeps an unlocked descriptor for reuse until the event loop turns; closes it if one is kept already. */
function keepIdle(key: string, held: LockFd): void {
  if (idle.has(key)) {
    closeQuietly(held.fd);
    return;
  }
  idle.set(key, held);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(closeIdleDescriptors);
}

/** Closes every idle descriptor now (also before cleanStaleLocks looks for open lock files). */
export function closeIdleDescriptors(): void {
  flushScheduled = false;
  for (const held of idle.values()) closeQuietly(held.fd);
  idle.clear();
}

/** What an exclusive holder writes into its lock file, for diagnostics only. */
export interface HolderInfo {
  pid: number;
  host: string;
  /** The executable or script name only: lock files are world-readable, arguments may hold secrets. */
  command: string;
  since: string;
}

/**
 * The name diagnostics show for this process: its script's file name when argv[1] is a script that
 * exists (under `node -e`, argv[1] is the first user argument, which may be a secret), else the
 * executable's.
 */
export function executableName(): string {
  const script = process.argv[1];
  let isScript = false;
  try {
    isScript = script !== undefined && fs.statSync(script, { throwIfNoEntry: false })?.isFile() === true;
  } catch {
    // ENOTDIR, ENAMETOOLONG, EACCES...: not a script this process can name (and never a reason to fail)
  }
  return basename(isScript ? script! : process.execPath).slice(0, 128);
}

const INFO_PREFIX = `{"pid":${process.pid},"host":${JSON.stringify(hostname())},"command":${JSON.stringify(
  executableName(),
)},"since":"`;

/** An exclusive hold whose holder info line is still to be written. */
interface PendingInfo {
  fd: number;
  offset: number;
  since: number;
}

const pendingInfo = new Set<PendingInfo>();
let infoScheduled = false;

/**
 * Arranges for one JSON line of holder info to be written at `offset` when the event loop next turns,
 * and returns a function that cancels it (call it before releasing). Deferring keeps the write off the
 * lock/unlock fast path: a lock released within the same turn was never observable, so it writes nothing.
 * The line replaces the file's content (an earlier holder's line). Only for lock files of townlock's
 * own: a file the caller named as the lock (`isLockFile`, `-L`) may be a script or data, never written.
 * The content is for diagnostics; correctness never depends on it.
 */
export function scheduleHolderInfo(fd: number, offset: number): () => void {
  const entry = { fd, offset, since: Date.now() };
  pendingInfo.add(entry);
  if (!infoScheduled) {
    infoScheduled = true;
    setImmediate(writePendingInfo);
  }
  return () => pendingInfo.delete(entry);
}

/** Writes the info line of every exclusive hold of this process still held (also run by lockHolders). */
export function writePendingInfo(): void {
  infoScheduled = false;
  for (const { fd, offset, since } of pendingInfo) {
    try {
      const line = Buffer.from(`${INFO_PREFIX}${new Date(since).toISOString()}"}\n`);
      fs.writeSync(fd, line, 0, line.length, offset);
      // A longer line left by an earlier holder (perhaps a version that recorded arguments) goes too.
      fs.ftruncateSync(fd, offset + line.length);
    } catch {
      // Diagnostics only: a full disk or read-only lock file must not fail the lock.
    }
  }
  pendingInfo.clear();
}

/** Parses the first line of a lock file's content as holder info, or returns undefined. */
export function parseHolderInfo(content: string): HolderInfo | undefined {
  const line = content.trimStart().split('\n', 1)[0];
  if (!line) return undefined;
  try {
    const info = JSON.parse(line) as Partial<HolderInfo>;
    if (typeof info.pid !== 'number') return undefined;
    return {
      pid: info.pid,
      host: String(info.host ?? ''),
      command: String(info.command ?? ''),
      since: String(info.since ?? ''),
    };
  } catch {
    return undefined;
  }
}

/**
 * Releases the lock; then runs `wake`, which rings the next waiter when townlock processes may be waiting
 * (see _fairness.ts) and returns true when waiters may be waiting but none could be rung: then it touches
 * the file, so that waiters watching it wake at once; then parks the descriptor for reuse. Both come
 * after the unlock: the woken waiter would find the lock still held, and a waiter that queued after the
 * check but failed its attempt before the unlock would be missed.
 */
export function releaseAndWake(backend: LockBackend, key: string, held: LockFd, wake: () => boolean): void {
  try {
    backend.unlock(held.fd);
    if (wake()) touchQuietly(backend, held.fd);
  } catch (err) {
    closeQuietly(held.fd);
    throw err;
  }
  keepIdle(key, held);
}

/**
 * Touches the lock file to wake the waiters that watch it. Only a wake-up: a file this process may not
 * change the times of (another user's, read-only, on a read-only mount) leaves them to their polling.
 */
export function touchQuietly(backend: LockBackend, fd: number): void {
  try {
    backend.touch(fd);
  } catch {
    // the waiters poll
  }
}

/** Closes a descriptor, ignoring errors (used on paths that are already failing). */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // The descriptor is being abandoned; nothing useful can be done with a close error here.
  }
}
