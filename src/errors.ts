/**
 * The error hierarchy every townlock module throws.
 *
 * Callers branch on `code`, which is stable across releases; messages are for people and may change.
 * Operating-system errors (`ENOENT`, `EACCES`, ...) pass through unchanged unless townlock adds meaning.
 */

/** Every stable error code townlock can put on an error it throws. */
export type ErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_UNSUPPORTED_PLATFORM'
  | 'ERR_LOCK_TIMEOUT'
  | 'ERR_ALREADY_LOCKED'
  | 'ERR_NOT_LOCKED'
  | 'ERR_LOCK_ABORTED'
  | 'ERR_LOCK_UPGRADE'
  | 'ERR_LOCK_SYMLINK'
  | 'ERR_LOCK_UNSAFE'
  | 'ERR_LOCK_DIR'
  | 'ERR_LOCK_LOST'
  | 'ERR_JSON_PARSE'
  | 'ERR_REGISTRY_CORRUPT'
  | 'ERR_REGISTRY_VERSION'
  | 'ERR_REGISTRY_IO'
  | 'ERR_INVALID_MACHINE'
  | 'ERR_MACHINE_NOT_FOUND'
  | 'ERR_LOCAL_MACHINE'
  | 'ERR_REGISTRY_REENTRANT'
  | 'ERR_STORE_CORRUPT'
  | 'ERR_STORE_IO'
  | 'ERR_STORE_INVALID'
  | 'ERR_STORE_REENTRANT'
  | 'ERR_UPDATE_TIMEOUT'
  | 'ERR_DRAFT_CLOSED'
  | 'ERR_LOG_TORN'
  | 'ERR_LEASE_EXPIRED'
  | 'ERR_ETCD_UNAVAILABLE'
  | 'ERR_ETCD_TXN_TOO_LARGE'
  | 'ERR_ETCD_REQUEST'
  | 'ERR_CONNECTION'
  | 'ERR_NOT_FOUND'
  | 'ERR_PERMISSION'
  | 'ERR_USAGE';

/** Fields common to every townlock error. */
export interface TownlockErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
  /** The file the error is about, if any. */
  path?: string;
}

/** Base class of every error townlock throws on purpose. Branch on {@link TownlockError.code}. */
export class TownlockError extends Error {
  /** Stable, machine-readable error code. */
  readonly code: ErrorCode;
  /** The file the error is about, when there is one. */
  readonly path: string | undefined;

  constructor(code: ErrorCode, message: string, options: TownlockErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options.path;
  }
}
TownlockError.prototype.name = 'TownlockError';

/** An option or argument had a value townlock cannot use; the message names the option and the value. */
export class InvalidOptionError extends TownlockError {
  constructor(option: string, value: unknown, expected: string) {
    super(
      'ERR_INVALID_OPTION',
      `Invalid option ${option}: expected ${expected}, received ${describe(value)}`,
    );
  }
}
InvalidOptionError.prototype.name = 'InvalidOptionError';

/** The current platform has no lock backend; townlock never falls back to a weaker lock silently. */
export class UnsupportedPlatformError extends TownlockError {
  constructor(platform: string) {
    super('ERR_UNSUPPORTED_PLATFORM', `File locking is not supported on platform "${platform}"`);
  }
}
UnsupportedPlatformError.prototype.name = 'UnsupportedPlatformError';

/** Renders a received value for an error message without dumping large objects. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
