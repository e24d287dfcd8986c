/**
 * Errors of the etcd backend. Where a meaning is the same as FileLock's, the class and code are the same
 * (`LockTimeoutError`, `LockAbortedError`) or a subclass with the same code whose message does not say
 * "FileLock" (`AlreadyLockedError`, `NotLockedError`); `lockPath` then holds the lock's etcd key prefix.
 */
import { TownlockError } from '../errors.js';
import { AlreadyLockedError, FileLockError, NotLockedError } from '../filelock/errors.js';

/**
 * No etcd endpoint answered within `callTimeout` (`ERR_ETCD_UNAVAILABLE`), or the `Etcd` was closed.
 * The message names every endpoint; `cause` is the last error seen from one of them.
 */
export class EtcdUnavailableError extends TownlockError {
  /** The endpoints that were tried. */
  readonly endpoints: readonly string[];

  constructor(endpoints: readonly string[], detail: string, cause?: unknown) {
    super('ERR_ETCD_UNAVAILABLE', `etcd unavailable at ${endpoints.join(', ')}: ${detail}`, { cause });
    this.endpoints = endpoints;
  }
}
EtcdUnavailableError.prototype.name = 'EtcdUnavailableError';

/**
 * etcd answered a request with a refusal townlock has no other error for (`ERR_ETCD_REQUEST`): the
 * endpoint is not an etcd v3 server (UNIMPLEMENTED), the cluster requires authentication (not supported
 * yet), its space quota is exhausted ("database space exceeded"), and the like. Retrying does not help;
 * `cause` is the client's error.
 */
export class EtcdRequestError extends TownlockError {
  /** The endpoints of the client. */
  readonly endpoints: readonly string[];

  constructor(endpoints: readonly string[], what: string, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super('ERR_ETCD_REQUEST', `etcd at ${endpoints.join(', ')} refused ${what}: ${detail}`, { cause });
    this.endpoints = endpoints;
  }
}
EtcdRequestError.prototype.name = 'EtcdRequestError';

/**
 * A write needs an etcd transaction with more operations than etcd takes (`ERR_ETCD_TXN_TOO_LARGE`):
 * etcd refuses a transaction whose compare, success or failure list is longer than its `--max-txn-ops`
 * (default 128), and townlock checks the same bound (the `maxTxnOps` option of `Etcd.connect()`) before
 * sending. Nothing of the write was applied. The message gives both numbers and the remedies: split the
 * write (several `update()` calls), or start etcd with a larger `--max-txn-ops` and pass the same value
 * as `maxTxnOps`.
 */
export class EtcdTxnTooLargeError extends TownlockError {
  /** The operations the transaction needed (the longest of its three lists, as etcd counts). */
  readonly operations: number;
  /** The limit it was checked against: `maxTxnOps`. */
  readonly limit: number;

  /** `what` opens the message: what needed the transaction, or who refused it. */
  constructor(what: string, operations: number, limit: number, cause?: unknown) {
    super(
      'ERR_ETCD_TXN_TOO_LARGE',
      `${what}: split it into smaller writes (several update() calls), or start etcd with a larger ` +
        '--max-txn-ops (default 128) and pass the same value as the maxTxnOps option of Etcd.connect()',
      { cause },
    );
    this.operations = operations;
    this.limit = limit;
  }
}
EtcdTxnTooLargeError.prototype.name = 'EtcdTxnTooLargeError';

/**
 * A held lock stopped being held without `unlock()` (`ERR_LOCK_LOST`): its session lease expired or was
 * revoked (for instance by `Etcd.close()`). Another holder may have run at the same time since then.
 */
export class LockLostError extends FileLockError {
  constructor(lockPrefix: string, reason: string, cause?: unknown) {
    super('ERR_LOCK_LOST', `Lock ${lockPrefix} was lost: ${reason}`, lockPrefix, cause);
  }
}
LockLostError.prototype.name = 'LockLostError';

/** `lock()` on an EtcdLock that holds or is acquiring its lock (`ERR_ALREADY_LOCKED`). */
export class EtcdAlreadyLockedError extends AlreadyLockedError {
  constructor(lockPrefix: string) {
    super(lockPrefix);
    this.message = `This EtcdLock already holds or is acquiring ${lockPrefix}; call unlock() first`;
  }
}
EtcdAlreadyLockedError.prototype.name = 'EtcdAlreadyLockedError';

/** `unlock()` on an EtcdLock that does not hold its lock (`ERR_NOT_LOCKED`). */
export class EtcdNotLockedError extends NotLockedError {
  constructor(lockPrefix: string) {
    super(lockPrefix);
    this.message = `Cannot unlock ${lockPrefix}: this EtcdLock does not hold it`;
  }
}
EtcdNotLockedError.prototype.name = 'EtcdNotLockedError';
