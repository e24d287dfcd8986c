/**
 * Holder diagnostics: who holds a lock file, and how.
 *
 * On Linux the truth comes from /proc/locks, which lists every flock holder (shared and exclusive, ours
 * and foreign ones such as flock(1)); the holder info line an exclusive townlock holder writes into the
 * lock file adds host, command and start time. Elsewhere only that line is available, and it is reported
 * only while the lock is observed to be held.
 * Warning: the answer can be stale as soon as it is returned; use it for diagnostics, never for decisions.
 */
import fs from 'node:fs';
import { hostname } from 'node:os';
import { InvalidOptionError } from '../errors.js';
import { closeQuietly, type HolderInfo, parseHolderInfo, writePendingInfo } from './_lock-file.js';
import { type FsPath, resolveLockTarget } from './_target.js';
import type { FileLockOptions } from './options.js';

/** Holder info is one short line; nothing past this many bytes is ever read from a lock file. */
const MAX_INFO_BYTES = 4096;
// Never follow a symlink (to /dev/zero, say) and never block on a FIFO planted at the lock path.
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);

/** One process holding a lock file. */
export interface LockHolder {
  /** Holding process id; -1 when the kernel does not say (open-file-description locks, other platforms). */
  pid: number;
  /** `'exclusive'` or `'shared'`. */
  mode: 'exclusive' | 'shared';
  /** The holder's executable or script name (never its arguments), when known. */
  command?: string;
  /** The holder's host name, when known. */
  host?: string;
  /** When the holder took the lock (ISO 8601), when known (exclusive townlock holders). */
  since?: string;
}

/**
 * Lists the holders of the lock protecting `path` (the lock file is found as FileLock finds it; with
 * `isLockFile`, `path` is the lock file).
 */
export async function lockHolders(
  path: string | Buffer,
  options: Pick<FileLockOptions, 'lockDir' | 'isLockFile'> = {},
): Promise<LockHolder[]> {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', options, 'an object');
  }
  return holdersOfLockFile(resolveLockTarget(path, options.lockDir, options.isLockFile === true).fsLockPath);
}

/**
 * Lists the holders of a lock file given by its own path; [] if it does not exist or is not a regular
 * file. Reads at most a few KB of it, without following symlinks or blocking on FIFOs.
 */
export function holdersOfLockFile(lockPath: FsPath): LockHolder[] {
  writePendingInfo(); // this process's own holds report their info even before the event loop turns
  let fd: number;
  try {
    fd = fs.openSync(lockPath, READ_FLAGS);
  } catch {
    return [];
  }
  let content: string;
  let stat: fs.BigIntStats;
  try {
    stat = fs.fstatSync(fd, { bigint: true });
    if (!stat.isFile()) return [];
    const buf = Buffer.alloc(MAX_INFO_BYTES);
    content = buf.subarray(0, fs.readSync(fd, buf, 0, MAX_INFO_BYTES, 0)).toString('utf8');
  } catch {
    return [];
  } finally {
    closeQuietly(fd);
  }
  const info = parseHolderInfo(content);
  if (process.platform === 'linux') return fromProcLocks(stat, info);
  return info && isAlive(info.pid) ? [{ pid: info.pid, mode: 'exclusive', ...describeInfo(info) }] : [];
}

/** The pid of a current holder, for timeout messages; undefined if none can be found. */
export function findHolderPid(lockPath: FsPath): number | undefined {
  return holdersOfLockFile(lockPath).find((h) => h.pid > 0)?.pid;
}

/** Holders of the inode `stat` names, from /proc/locks, enriched by the holder info line. */
function fromProcLocks(stat: fs.BigIntStats, info: HolderInfo | undefined): LockHolder[] {
  let table: string;
  try {
    table = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    return [];
  }
  // Linux encodes dev_t as major:minor with a 12-bit major split around a 20-bit minor (see sysmacros.h).
  const dev = stat.dev;
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  const holders: LockHolder[] = [];
  for (const line of table.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; lines with "->" are blocked waiters, not holders.
    const m = /^\d+:\s+(\S+)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (!m || BigInt(`0x${m[4]}`) !== major || BigInt(`0x${m[5]}`) !== minor || BigInt(m[6]!) !== stat.ino)
      continue;
    const pid = Number(m[3]);
    const mode = m[2] === 'WRITE' ? 'exclusive' : 'shared';
    const holder: LockHolder = { pid, mode, host: hostname() };
    if (info && info.pid === pid && mode === 'exclusive') Object.assign(holder, describeInfo(info));
    else if (pid > 0) {
      const command = executableOf(pid);
      if (command) holder.command = command;
    }
    holders.push(holder);
  }
  return holders;
}

/** The optional fields of a holder, from its info line. */
function describeInfo(info: HolderInfo): Pick<LockHolder, 'command' | 'host' | 'since'> {
  return { command: info.command, host: info.host, since: info.since };
}

/** A process's executable name from /proc (comm: no arguments, which may hold secrets), or undefined. */
function executableOf(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process with this pid exists (EPERM means it exists but is another user's). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
