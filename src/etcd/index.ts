/**
 * townlock/etcd: the same locks and machine registry across hosts, on an etcd cluster. See docs/etcd.md.
 * Importing this module loads neither the etcd client (`Etcd.connect()` does) nor the registry code
 * (`etcd.registry()` does).
 */
export { LockAbortedError, LockTimeoutError, LockUpgradeError } from '../filelock/errors.js';
export type { Lock, LockType } from '../lock.js';
export {
  EtcdAlreadyLockedError,
  EtcdNotLockedError,
  EtcdRequestError,
  EtcdTxnTooLargeError,
  EtcdUnavailableError,
  LockLostError,
} from './errors.js';
export { Etcd } from './etcd.js';
export { EtcdLock } from './lock.js';
export type { EtcdLockOptions, EtcdOptions } from './options.js';
// Types only: the registry code (with the connection module and ssh2) loads when etcd.registry() runs.
export type { EtcdMachineRegistry, EtcdRegistryOptions } from './registry.js';
