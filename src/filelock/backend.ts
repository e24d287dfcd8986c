/**
 * The one small interface between the lock policy (lock.ts) and the operating system.
 *
 * A backend makes exactly one non-blocking attempt per call: waiting, timeouts and cancellation live in
 * TypeScript, so no libuv threadpool thread ever parks in flock() or LockFileEx().
 */
import { UnsupportedPlatformError } from '../errors.js';
import type { LockType } from '../lock.js';

export type { LockType };

/** One platform's advisory lock primitive, applied to whole lock files opened by the caller. */
export interface LockBackend {
  /** Short name, for diagnostics: `flock` or `LockFileEx`. */
  readonly name: string;
  /** Byte offset at which holder info may be written without touching the locked range. */
  readonly infoOffset: number;
  /** One non-blocking attempt: `true` when acquired, `false` when another holder conflicts. Throws otherwise. */
  tryLock(fd: number, type: LockType): boolean;
  /** Releases the lock held through `fd` (closing `fd` releases it too). */
  unlock(fd: number): void;
  /** Sets the file's times to now, so that waiters watching the lock file wake (called after unlock). */
  touch(fd: number): void;
}

let cached: LockBackend | undefined;

/** Returns the backend for this platform, loading its native functions on first use. */
export async function loadBackend(): Promise<LockBackend> {
  cached ??= await createBackend(process.platform);
  return cached;
}

/** Builds the backend for `platform`; throws ERR_UNSUPPORTED_PLATFORM rather than fall back silently. */
export async function createBackend(platform: string): Promise<LockBackend> {
  switch (platform) {
    case 'linux':
    case 'darwin':
    case 'freebsd':
    case 'openbsd':
    case 'netbsd':
      return (await import('./backend-flock.js')).createFlockBackend();
    case 'win32':
      return (await import('./backend-windows.js')).createWindowsBackend();
    default:
      throw new UnsupportedPlatformError(platform);
  }
}

/** The backend if already loaded; lets the hot path stay synchronous after the first lock. */
export function loadedBackend(): LockBackend | undefined {
  return cached;
}
