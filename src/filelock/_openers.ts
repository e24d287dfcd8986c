/**
 * Which processes have a lock file open, from Linux's /proc: what cleanStaleLocks needs to know before and
 * after it deletes a lock file, because flock(1), the Go tool and Python do not re-check, after locking,
 * that the path still names the file they locked.
 *
 * Files are identified by device and inode, never by the path a process used (a symlinked directory, a
 * bind mount or a container volume shows another path for the same file). Sources: every /proc/PID/fd
 * this process may read (all of them as root, its own user's otherwise), and /proc/locks, which lists the
 * processes blocked in flock() on a file whatever their user.
 */
import fs from 'node:fs';

/** A file's identity. */
export interface FileId {
  dev: number;
  ino: number;
}

/** Whether this platform can list open files (Linux /proc). */
export const canListOpeners = process.platform === 'linux' && fs.existsSync('/proc/self/fd');

// Lock files end in ".lock"; a deleted one's link text ends in ".lock (deleted)". Only those are stat'ed.
const LOCK_LINK = /\.lock(?: \(deleted\))?$/;

/**
 * The open lock files of every process (by `dev:ino`), with the pids that have each open. `except` are
 * descriptors of this process to leave out (the caller's own).
 */
export function openLockFiles(except: ReadonlySet<number> = new Set()): Map<string, Set<number>> {
  const found = new Map<string, Set<number>>();
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or another user's process (see blockedWaiters)
    }
    for (const fd of fds) {
      if (Number(pid) === process.pid && except.has(Number(fd))) continue;
      const link = `/proc/${pid}/fd/${fd}`;
      try {
        if (!LOCK_LINK.test(fs.readlinkSync(link))) continue;
        addPid(found, idKey(fs.statSync(link)), Number(pid));
      } catch {
        // closed while we looked
      }
    }
  }
  for (const [key, pid] of blockedWaiters()) addPid(found, key, pid);
  return found;
}

/** `dev:ino` in the form openLockFiles keys by. */
export function idKey({ dev, ino }: FileId): string {
  return `${dev}:${ino}`;
}

/** Records that `pid` has the file `key` open. */
function addPid(found: Map<string, Set<number>>, key: string, pid: number): void {
  const pids = found.get(key);
  if (pids) pids.add(pid);
  else found.set(key, new Set([pid]));
}

/** (file, pid) of every process blocked in flock() or fcntl() on a file, from /proc/locks. */
function blockedWaiters(): [string, number][] {
  let table: string;
  try {
    table = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    return [];
  }
  const out: [string, number][] = [];
  // "12: -> FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": a waiter (->) of pid 1234 on dev 08:01, inode 5678.
  for (const m of table.matchAll(/^\d+: -> \S+\s+\S+\s+\S+\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/gm)) {
    const dev = makedev(Number.parseInt(m[2]!, 16), Number.parseInt(m[3]!, 16));
    out.push([`${dev}:${m[4]}`, Number(m[1])]);
  }
  return out;
}

/** Linux's dev_t from major and minor, as stat() reports it (see sysmacros.h). */
function makedev(major: number, minor: number): number {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return Number((mi & 0xffn) | ((ma & 0xfffn) << 8n) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n));
}
