/**
 * cleanStaleLocks: remove lock files nobody holds.
 *
 * A file is deleted only while this process holds it exclusively and after checking that its path still
 * names the inode it locked; acquirers make the same check after locking. Together these make deletion
 * safe against every interleaving: a waiter on the deleted inode notices and retries on the new file.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { closeQuietly, isCurrent } from './_lock-file.js';
import { loadBackend } from './backend.js';

const OPEN_EXISTING = fs.constants.O_RDWR | (fs.constants.O_NOFOLLOW ?? 0);

/** Deletes every `*.lock` file in `lockDir` that no process holds; returns how many it deleted. */
export async function cleanStaleLocks(lockDir: string): Promise<number> {
  const backend = await loadBackend();
  let names: string[];
  try {
    names = await fs.promises.readdir(lockDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.endsWith('.lock')) continue;
    const lockPath = join(lockDir, name);
    let fd: number;
    try {
      fd = fs.openSync(lockPath, OPEN_EXISTING);
    } catch {
      continue; // gone already, a symlink, or not ours to open: leave it
    }
    try {
      if (backend.tryLock(fd, 'exclusive') && isCurrent({ fd, ...identity(fs.fstatSync(fd)) }, lockPath)) {
        fs.unlinkSync(lockPath);
        removed++;
      }
    } catch {
      // Not removable now (permissions, a race with another cleaner): leave it for a later pass.
    } finally {
      closeQuietly(fd);
    }
  }
  return removed;
}

/** The fields that identify a file: inode and device. */
function identity({ ino, dev }: fs.Stats): { ino: number; dev: number } {
  return { ino, dev };
}
