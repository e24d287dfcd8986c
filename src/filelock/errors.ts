/** Errors thrown by the filelock module; all extend {@link FileLockError}. */
import { type ErrorCode, TownlockError } from '../errors.js';

/** Base class of every lock error; `lockPath` is the lock file concerned. */
export class FileLockError extends TownlockError {
  /** The lock file (in `.gastown/locks/`) the error is about. */
  readonly lockPath: string;

  constructor(code: ErrorCode, message: string, lockPath: string, cause?: unknown) {
    super(code, message, { path: lockPath, cause });
    this.lockPath = lockPath;
  }
}
FileLockError.prototype.name = 'FileLockError';

/** The lock was not acquired within `timeout` ms (`ERR_LOCK_TIMEOUT`). */
export class LockTimeoutError extends FileLockError {
  /** How long the caller waited, in ms. */
  readonly waited: number;
  /** The pid holding the lock when the wait ended, when it could be found. */
  readonly holderPid: number | undefined;

  constructor(lockPath: string, waited: number, holderPid: number | undefined) {
    const holder = holderPid === undefined ? 'holder unknown' : `held by pid ${holderPid}`;
    super(
      'ERR_LOCK_TIMEOUT',
      `Timed out after ${waited} ms waiting for lock ${lockPath} (${holder})`,
      lockPath,
    );
    this.waited = waited;
    this.holderPid = holderPid;
  }
}
LockTimeoutError.prototype.name = 'LockTimeoutError';

/** `lock()` was called on a handle that already holds its lock (`ERR_ALREADY_LOCKED`). */
export class AlreadyLockedError extends FileLockError {
  constructor(lockPath: string) {
    super('ERR_ALREADY_LOCKED', `This FileLock already holds ${lockPath}; call unlock() first`, lockPath);
  }
}
AlreadyLockedError.prototype.name = 'AlreadyLockedError';

/** `unlock()` was called on a handle that does not hold its lock (`ERR_NOT_LOCKED`). */
export class NotLockedError extends FileLockError {
  constructor(lockPath: string) {
    super('ERR_NOT_LOCKED', `Cannot unlock ${lockPath}: this FileLock does not hold it`, lockPath);
  }
}
NotLockedError.prototype.name = 'NotLockedError';

/** The wait was cancelled through its AbortSignal (`ERR_LOCK_ABORTED`); `cause` is the signal's reason. */
export class LockAbortedError extends FileLockError {
  constructor(lockPath: string, reason: unknown) {
    super('ERR_LOCK_ABORTED', `Waiting for lock ${lockPath} was aborted`, lockPath, reason);
  }
}
LockAbortedError.prototype.name = 'LockAbortedError';

/**
 * An exclusive lock was requested where the same async context holds the shared lock (`ERR_LOCK_UPGRADE`).
 * Upgrading in place would deadlock against any other reader doing the same, so it fails at once.
 */
export class LockUpgradeError extends FileLockError {
  constructor(lockPath: string) {
    super(
      'ERR_LOCK_UPGRADE',
      `Cannot take an exclusive lock on ${lockPath} while this async context holds it shared; release the shared lock first`,
      lockPath,
    );
  }
}
LockUpgradeError.prototype.name = 'LockUpgradeError';

/** The lock file path is a symbolic link, which townlock refuses to follow (`ERR_LOCK_SYMLINK`). */
export class LockSymlinkError extends FileLockError {
  constructor(lockPath: string, cause: unknown) {
    super(
      'ERR_LOCK_SYMLINK',
      `Refusing to open lock file ${lockPath}: it is a symbolic link`,
      lockPath,
      cause,
    );
  }
}
LockSymlinkError.prototype.name = 'LockSymlinkError';

/**
 * The lock file or its directory cannot be trusted (`ERR_LOCK_UNSAFE`): not a regular file (a FIFO, a
 * device), hard-linked to another file, or owned by another non-root user who could replace it.
 */
export class LockUnsafeError extends FileLockError {
  /** Why the file was refused. */
  readonly reason: string;

  constructor(lockPath: string, reason: string) {
    super('ERR_LOCK_UNSAFE', `Refusing to use lock file ${lockPath}: ${reason}`, lockPath);
    this.reason = reason;
  }
}
LockUnsafeError.prototype.name = 'LockUnsafeError';

/** cleanStaleLocks was pointed at something that is not a townlock lock directory (`ERR_LOCK_DIR`). */
export class LockDirError extends FileLockError {
  constructor(dir: string, reason: string) {
    super('ERR_LOCK_DIR', `Not cleaning ${dir}: ${reason}`, dir);
  }
}
LockDirError.prototype.name = 'LockDirError';
