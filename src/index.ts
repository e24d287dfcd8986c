/**
 * townlock: multi-process-safe file locks, durable atomic writes, shared JSON/JSONL stores and a shared
 * machine registry. Subpaths: townlock/filelock, townlock/atomic, townlock/store, townlock/registry,
 * townlock/connection, townlock/etcd (whose etcd client loads only when `Etcd.connect()` runs).
 */
export * from './atomic/index.js';
export * from './connection/index.js';
export { type ErrorCode, InvalidOptionError, TownlockError, UnsupportedPlatformError } from './errors.js';
export * from './etcd/index.js';
export * from './filelock/index.js';
export type { Lock, LockType } from './lock.js';
export * from './registry/index.js';
export * from './store/index.js';
