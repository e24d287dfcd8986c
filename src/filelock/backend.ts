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

let loading: Promise<LockBackend> | undefined;

/**
 * Returns the backend for this platform, loading its native functions on first use. Loading (koffi and
 * the C library: ~10 ms, ~6 ms of it in one synchronous stretch) runs in event-loop turns of its own, so
 * that it never adds to a block of the caller's: the first lock of a process that did other work just
 * before (a registry's first write) would otherwise block the loop for both at once.
 */
export async function loadBackend(): Promise<LockBackend> {
  if (cached) return cached;
  loading ??= (async () => {
    try {
      await nextTurn();
      const backend = await createBackend(process.platform);
      await nextTurn();
      cached = backend;
      return backend;
    } finally {
      loading = undefined;
    }
  })();
  return loading;
}

/**
 * A turn of the event loop that no fake timers replace (node:test's mock.timers, sinon, jest and vitest
 * replace setImmediate, also node:timers' when that is first imported while they are on): a message
 * through a channel of its own. Only a process's first lock waits for it.
 */
function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.addEventListener('message', () => {
      port1.close();
      resolve();
    });
    port1.start();
    port2.postMessage(null);
  });
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
