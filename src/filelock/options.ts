/** FileLock options: their documented defaults, merged and validated in one place. */
import { InvalidOptionError } from '../errors.js';
import type { LockType } from '../lock.js';
import { resolveLockTarget } from './_target.js';

/** Options for {@link FileLock} and the `with*Lock` helpers. */
export interface FileLockOptions {
  /** Shared (read) or exclusive (write). @default 'exclusive' */
  type?: LockType;
  /** How long to wait, in ms. `0` waits forever; a negative value makes one attempt. @default 30000 */
  timeout?: number;
  /** First poll interval while another holder has the lock, in ms; doubles up to `maxRetryDelay`. @default 2 */
  retryDelay?: number;
  /** Longest poll interval, in ms: a crashed or foreign (flock(1), Go) holder is noticed within it. @default 50 */
  maxRetryDelay?: number;
  /** Directory of lock files. @default `<dirname(path)>/.gastown/locks` */
  lockDir?: string;
  /**
   * `path` is the lock file itself, as util-linux flock(1)'s FILE, not a file to protect: it is locked as
   * named (no `.gastown/locks/`, no `.lock` added), so it excludes `flock(1)` on the same path. Its
   * directory must exist; the file is created if missing and must not be a symlink. Not with `lockDir`.
   * @default false
   */
  isLockFile?: boolean;
  /** Cancels a wait; the wait rejects with `LockAbortedError`. */
  signal?: AbortSignal;
  /** Permission bits of a newly created lock file (before umask). @default 0o644 */
  mode?: number;
}

/** Options after defaults are merged and values checked. */
export interface ResolvedLockOptions {
  type: LockType;
  timeout: number;
  retryDelay: number;
  maxRetryDelay: number;
  signal: AbortSignal | undefined;
  mode: number;
}

/** The default lock timeout, in ms (the Go design's 30 s). */
export const DEFAULT_TIMEOUT = 30_000;

/**
 * Returns where the lock file for `path` lives: `<dir>/.gastown/locks/<name>.lock`, where `<dir>/<name>`
 * is the file `path` really names (symbolic links resolved), or `<lockDir>/<name>.lock`.
 */
export function lockPathFor(path: string | Buffer, lockDir?: string): string {
  return resolveLockTarget(path, lockDir).lockPath;
}

/** Merges defaults into `options` and validates every field, naming the bad option and value. */
export function resolveLockOptions(options: FileLockOptions = {}): ResolvedLockOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new InvalidOptionError('options', options, 'an object');
  const { type = 'exclusive', timeout = DEFAULT_TIMEOUT, retryDelay = 2, signal, mode = 0o644 } = options;
  if (type !== 'exclusive' && type !== 'shared')
    throw new InvalidOptionError('type', type, "'exclusive' or 'shared'");
  if (typeof timeout !== 'number' || Number.isNaN(timeout))
    throw new InvalidOptionError('timeout', timeout, 'a number of ms');
  if (typeof retryDelay !== 'number' || !(retryDelay > 0) || !Number.isFinite(retryDelay)) {
    throw new InvalidOptionError('retryDelay', retryDelay, 'a positive number of ms');
  }
  // The default is computed only once retryDelay is known to be a number (Math.max(50, Symbol()) throws).
  const { maxRetryDelay = Math.max(50, retryDelay) } = options;
  if (
    typeof maxRetryDelay !== 'number' ||
    !(maxRetryDelay >= retryDelay) ||
    !Number.isFinite(maxRetryDelay)
  ) {
    throw new InvalidOptionError(
      'maxRetryDelay',
      maxRetryDelay,
      `a number of ms >= retryDelay (${retryDelay})`,
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidOptionError('signal', signal, 'an AbortSignal');
  }
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
    throw new InvalidOptionError('mode', mode, 'file permission bits');
  if (options.isLockFile !== undefined && typeof options.isLockFile !== 'boolean')
    throw new InvalidOptionError('isLockFile', options.isLockFile, 'a boolean');
  return {
    type,
    timeout: timeout === Number.POSITIVE_INFINITY ? 0 : timeout,
    retryDelay,
    maxRetryDelay,
    signal,
    mode,
  };
}
