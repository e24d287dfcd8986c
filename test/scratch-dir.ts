/** Temporary directories and descriptor counts shared by the unit tests. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
