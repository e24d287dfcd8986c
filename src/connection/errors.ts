/** Errors thrown by connections: every one names the machine and the operation. */
import { type ErrorCode, TownlockError } from '../errors.js';

/** Why a connection operation failed, for callers that branch on more than the code. */
export type ConnectionFailure =
  | 'connect'
  | 'auth'
  | 'host-key'
  | 'closed'
  | 'timeout'
  | 'aborted'
  | 'remote'
  | 'unsupported';

/** Base class of connection errors (`ERR_CONNECTION`); `machine` and `operation` say where it happened. */
export class ConnectionError extends TownlockError {
  /** The machine's name. */
  readonly machine: string;
  /** The operation that failed: `connect`, `exec`, `readFile`, ... */
  readonly operation: string;
  /** What kind of failure this was. */
  readonly reason: ConnectionFailure;

  constructor(
    machine: string,
    operation: string,
    reason: ConnectionFailure,
    message: string,
    options: { cause?: unknown; path?: string; code?: ErrorCode } = {},
  ) {
    super(options.code ?? 'ERR_CONNECTION', `${machine}: ${operation} failed: ${message}`, options);
    this.machine = machine;
    this.operation = operation;
    this.reason = reason;
  }
}
ConnectionError.prototype.name = 'ConnectionError';

/** The path does not exist on the machine (`ERR_NOT_FOUND`). */
export class NotFoundError extends ConnectionError {
  constructor(machine: string, operation: string, path: string, cause?: unknown) {
    super(machine, operation, 'remote', `no such file or directory: ${path}`, {
      cause,
      path,
      code: 'ERR_NOT_FOUND',
    });
  }
}
NotFoundError.prototype.name = 'NotFoundError';

/** The machine refused access to the path (`ERR_PERMISSION`). */
export class PermissionError extends ConnectionError {
  constructor(machine: string, operation: string, path: string, cause?: unknown) {
    super(machine, operation, 'remote', `permission denied: ${path}`, {
      cause,
      path,
      code: 'ERR_PERMISSION',
    });
  }
}
PermissionError.prototype.name = 'PermissionError';
