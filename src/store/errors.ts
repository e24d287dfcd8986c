/** Errors thrown by the store module (JsonFile, JsonlLog, JsonlQueue); the registry has its own codes. */
import { TownlockError } from '../errors.js';

/** The file is not valid for this store; it is never overwritten (`ERR_STORE_CORRUPT`). */
export class StoreCorruptError extends TownlockError {
  /** Byte or character offset of the problem, when there is one. */
  readonly position: number | undefined;

  constructor(path: string, detail: string, position?: number, cause?: unknown) {
    super(
      'ERR_STORE_CORRUPT',
      `${path} is corrupt: ${detail}; fix or move it, townlock will not overwrite it`,
      { path, cause },
    );
    this.position = position;
  }
}
StoreCorruptError.prototype.name = 'StoreCorruptError';

/** The file could not be read or written (`ERR_STORE_IO`); `cause` is the OS error. */
export class StoreIoError extends TownlockError {
  /** Whether reading or writing the file failed. */
  readonly action: 'read' | 'write';

  constructor(path: string, action: 'read' | 'write', cause: NodeJS.ErrnoException | string) {
    super('ERR_STORE_IO', ioMessage(path, action, cause), {
      path,
      cause: typeof cause === 'string' ? undefined : cause,
    });
    this.action = action;
  }
}
StoreIoError.prototype.name = 'StoreIoError';

/** A value failed the store's `validate` option (`ERR_STORE_INVALID`); nothing was written. */
export class StoreInvalidError extends TownlockError {
  constructor(path: string, detail: string, cause?: unknown) {
    super('ERR_STORE_INVALID', `Invalid value for ${path}: ${detail}`, { path, cause });
  }
}
StoreInvalidError.prototype.name = 'StoreInvalidError';

/**
 * A write was made from inside an update callback of the same file (`ERR_STORE_REENTRANT`): it would
 * wait for the batch that is waiting for it. Edit the draft the callback receives instead.
 */
export class StoreReentrantError extends TownlockError {
  constructor(path: string) {
    super(
      'ERR_STORE_REENTRANT',
      `Cannot write ${path} from inside one of its own update callbacks; change the draft the callback receives instead`,
      { path },
    );
  }
}
StoreReentrantError.prototype.name = 'StoreReentrantError';

/** "Cannot read X: permission denied (EACCES)", with the usual causes in words. */
export function ioMessage(path: string, action: string, cause: NodeJS.ErrnoException | string): string {
  if (typeof cause === 'string') return `Cannot ${action} ${path}: ${cause}`;
  const why =
    cause.code === 'EACCES' || cause.code === 'EPERM'
      ? 'permission denied'
      : cause.code === 'EISDIR'
        ? 'it is a directory'
        : cause.code === 'ENOTDIR'
          ? 'a parent of it is not a directory'
          : cause.message;
  return `Cannot ${action} ${path}: ${why} (${cause.code ?? 'error'})`;
}

/** Whether `err` is an operating-system error (ENOENT, EACCES, ...), not one of ours. */
export function isOsError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && code.startsWith('E') && !code.startsWith('ERR_');
}
