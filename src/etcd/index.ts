/**
 * townlock/etcd: the same locks across hosts, on an etcd cluster. See docs/etcd.md. Importing this module
 * does not load the etcd client; `Etcd.connect()` does.
 */
export { LockAbortedError, LockTimeoutError, LockUpgradeError } from '../filelock/errors.js';
export type { Lock, LockType } from '../lock.js';
export {
  EtcdAlreadyLockedError,
  EtcdNotLockedError,
  EtcdUnavailableError,
  LockLostError,
} from './errors.js';
export { Etcd } from './etcd.js';
export { EtcdLock } from './lock.js';
export type { EtcdLockOptions, EtcdOptions } from './options.js';
export { EtcdMachineRegistry, type EtcdRegistryOptions } from './registry.js';
