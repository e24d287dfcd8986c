/** townlock/filelock: advisory cross-process file locks. See docs/locking.md. */
export type { Lock, LockType } from '../lock.js';
export { type CleanOptions, cleanLockFile, cleanStaleLocks } from './clean.js';
export {
  AlreadyLockedError,
  FileLockError,
  LockAbortedError,
  LockDirError,
  LockSymlinkError,
  LockTimeoutError,
  LockUnsafeError,
  LockUpgradeError,
  NotLockedError,
} from './errors.js';
export { type LockHolder, lockHolders } from './holders.js';
export { FileLock, withReadLock, withWriteLock } from './lock.js';
export { DEFAULT_TIMEOUT, type FileLockOptions, lockPathFor } from './options.js';
