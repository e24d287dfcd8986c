/**
 * Creating a file's directory durably: a directory made by mkdir exists after a crash only once its
 * parent's entry is on disk, so each directory this creates is fsynced into its parent (ext4 happens to
 * order this; XFS and btrfs need the fsync). Existing directories cost one stat.
 */
import fs from 'node:fs';
import { dirname } from 'node:path';
import { ops } from './_fs-ops.js';

/** Creates `dir` and its missing parents; with `durable`, fsyncs the parent of each one it created. */
export async function mkdirDurable(dir: string, durable: boolean): Promise<void> {
  if (fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return;
  const missing: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = dirname(d)) {
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // made by a racing writer: fine
    }
    if (durable) await syncDir(dirname(d));
  }
}

/** fsyncs a directory; platforms that cannot (Windows) are skipped. */
async function syncDir(dir: string): Promise<void> {
  try {
    await ops.syncDir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (process.platform === 'win32' || code === 'EINVAL' || code === 'EISDIR' || code === 'EPERM') return;
    throw err;
  }
}
