/**
 * Which processes have a file open, from Linux's /proc: what cleanStaleLocks needs to know before and
 * after it deletes a lock file, because flock(1), the Go tool and Python do not re-check, after
 * locking, that the path still names the file they locked.
 *
 * Sources: every /proc/PID/fd this process may read (all of them as root, its own user's otherwise),
 * and /proc/locks, which lists the processes blocked in flock() on a file whatever their user.
 */
import fs from 'node:fs';

/** A file's identity. */
export interface FileId {
  dev: number;
  ino: number;
}

/** Whether this platform can list open files (Linux /proc). */
export const canListOpeners = process.platform === 'linux' && fs.existsSync('/proc/self/fd');

/**
 * The pids that have a file in `dir` open, by file identity (`dev:ino`), found through descriptors whose
 * link text starts with `dir/` (a deleted file's link ends in " (deleted)"). `except` is one descriptor
 * of this process to ignore (the caller's own).
 */
export function openersIn(dir: string, except?: number): Map<string, Set<number>> {
  const found = new Map<string, Set<number>>();
  const prefix = `${dir}/`;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or another user's process (see blockedWaiters)
    }
    for (const fd of fds) {
      if (except !== undefined && Number(pid) === process.pid && Number(fd) === except) continue;
      const link = `/proc/${pid}/fd/${fd}`;
      try {
        if (!fs.readlinkSync(link).startsWith(prefix)) continue;
        const st = fs.statSync(link);
        addPid(found, idKey(st), Number(pid));
      } catch {
        // closed while we looked
      }
    }
  }
  for (const [key, pid] of blockedWaiters()) addPid(found, key, pid);
  return found;
}

/** Records that `pid` has the file `key` open. */
function addPid(found: Map<string, Set<number>>, key: string, pid: number): void {
  const pids = found.get(key);
  if (pids) pids.add(pid);
  else found.set(key, new Set([pid]));
}

/** `dev:ino` in the form openersIn keys by. */
export function idKey({ dev, ino }: FileId): string {
  return `${dev}:${ino}`;
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
