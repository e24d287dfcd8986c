/** Temporary directories and leak probes (descriptors, inotify watches) shared by the unit tests. */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** Makes a temporary directory that is removed after the test file finishes. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** How many descriptors this process has open (Linux), for leak checks. */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** How many inotify watches this process holds (Linux), for checking that file watchers are closed. */
export function inotifyWatches(): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    try {
      count += readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('inotify wd:')).length;
    } catch {
      // the descriptor closed while we looked
    }
  }
  return count;
}
