/**
 * Operations on one lock file: open it safely, check it is still the file at its path, write holder
 * info, and release with a wake-up. No policy lives here; lock.ts decides when to call what.
 */
import fs from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import type { LockBackend } from './backend.js';
import { LockSymlinkError } from './errors.js';

// libuv opens every file with O_CLOEXEC, so lock descriptors never leak into child processes.
const OPEN_FLAGS = fs.constants.O_RDWR | fs.constants.O_CREAT | (fs.constants.O_NOFOLLOW ?? 0);

/** An open lock file descriptor and the inode it refers to (fixed for the descriptor's life). */
export interface LockFd {
  fd: number;
  ino: number;
  dev: number;
}

/**
 * Opens (creating it and its directory if needed) the lock file read-write, refusing symlinks.
 * The file is never truncated: a holder's content belongs to the holder.
 */
export function openLockFile(lockPath: string, mode: number): LockFd {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, OPEN_FLAGS, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'EMLINK') throw new LockSymlinkError(lockPath, err);
    if (code !== 'ENOENT') throw err;
    fs.mkdirSync(dirname(lockPath), { recursive: true });
    return openLockFile(lockPath, mode);
  }
  try {
    const { ino, dev } = fs.fstatSync(fd);
    return { fd, ino, dev };
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/**
 * True when `lockPath` still names the inode `held` refers to. A lock held on an inode that was unlinked
 * (by cleanStaleLocks) or replaced protects nothing, so acquirers must check this after locking.
 */
export function isCurrent(held: LockFd, lockPath: string): boolean {
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
export function takeLockFd(lockPath: string, mode: number): LockFd {
  const cached = idle.get(lockPath);
  if (!cached) return openLockFile(lockPath, mode);
  idle.delete(lockPath);
  return cached;
}

/** Keeps an unlocked descriptor for reuse until the event loop turns; closes it if one is kept already. */
function keepIdle(lockPath: string, held: LockFd): void {
  if (idle.has(lockPath)) {
    closeQuietly(held.fd);
    return;
  }
  idle.set(lockPath, held);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(closeIdle);
}

/** Closes every idle descriptor. */
function closeIdle(): void {
  flushScheduled = false;
  for (const held of idle.values()) closeQuietly(held.fd);
  idle.clear();
}

/** What an exclusive holder writes into its lock file, for diagnostics only. */
export interface HolderInfo {
  pid: number;
  host: string;
  command: string;
  since: string;
}

const INFO_PREFIX = `{"pid":${process.pid},"host":${JSON.stringify(hostname())},"command":${JSON.stringify(
  process.argv.join(' ').slice(0, 512),
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
 * Readers parse only up to the first newline, so a longer line left behind needs no truncation; the
 * content is for diagnostics and correctness never depends on it.
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
      fs.writeSync(fd, `${INFO_PREFIX}${new Date(since).toISOString()}"}\n`, offset);
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
 * Releases the lock, then touches the file so that townlock waiters watching it wake at once, then
 * parks the descriptor for reuse. The touch comes after the unlock, or the woken waiter would find the lock still held.
 */
export function releaseAndWake(backend: LockBackend, lockPath: string, held: LockFd): void {
  try {
    backend.unlock(held.fd);
    backend.touch(held.fd);
  } catch (err) {
    closeQuietly(held.fd);
    throw err;
  }
  keepIdle(lockPath, held);
}

/** Closes a descriptor, ignoring errors (used on paths that are already failing). */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // The descriptor is being abandoned; nothing useful can be done with a close error here.
  }
}
