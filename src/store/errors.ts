/** Errors thrown by the store module (JsonFile, JsonlLog, JsonlQueue); the registry has its own codes. */

import { JsonParseError } from '../atomic/errors.js';
import { parseJson } from '../atomic/read-json.js';
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

/**
 * An update callback ran longer than the lock timeout while its batch held the file's lock
 * (`ERR_UPDATE_TIMEOUT`): most often it waited for another write to the same file, which waits for this
 * batch. Its changes to the draft were undone; the rest of the batch went on. The callback itself is not
 * stopped (JavaScript cannot stop a running function): whatever else it does still happens.
 */
export class UpdateTimeoutError extends TownlockError {
  constructor(path: string, ms: number) {
    super(
      'ERR_UPDATE_TIMEOUT',
      `An update callback on ${path} ran for more than ${ms} ms while holding its lock; its changes to the draft were discarded, but the callback itself may still be running. A callback must not wait for another write to the same file (it waits for this one)`,
      { path },
    );
  }
}
UpdateTimeoutError.prototype.name = 'UpdateTimeoutError';

/** A draft was used after its update callback had settled (`ERR_DRAFT_CLOSED`): the change went nowhere. */
export class DraftClosedError extends TownlockError {
  constructor(path: string) {
    super(
      'ERR_DRAFT_CLOSED',
      `The draft of an update on ${path} was used after its callback settled (a missing await?); that change was not made`,
      { path },
    );
  }
}
DraftClosedError.prototype.name = 'DraftClosedError';

/**
 * ack(), release() or renew() of a queue lease whose task was handed to another consumer since, or
 * acked already (`ERR_LEASE_EXPIRED`): the work may be done twice; at-least-once allows it.
 */
export class LeaseExpiredError extends TownlockError {
  /** The lease id. */
  readonly lease: string;

  constructor(path: string, lease: string) {
    super(
      'ERR_LEASE_EXPIRED',
      `Lease ${lease} on ${path} is no longer held: its deadline passed and the task was handed out again, or it was acked already`,
      { path },
    );
    this.lease = lease;
  }
}
LeaseExpiredError.prototype.name = 'LeaseExpiredError';

/**
 * A JSONL log holds a line that is not a whole JSON value (`ERR_LOG_TORN`): a crash mid-append left a
 * last line without its newline, or a line is not JSON. Readers never yield it; repair() moves it aside.
 */
export class LogTornError extends TownlockError {
  /** Byte offset of the torn line. */
  readonly offset: number;
  /** True when it is the file's last line, without its newline. */
  readonly tail: boolean;

  constructor(path: string, offset: number, tail: boolean) {
    super(
      'ERR_LOG_TORN',
      `${path} has a torn ${tail ? 'last line (a crash while appending?)' : 'line that is not JSON'} at byte ${offset}; entries before it were read; pass onTorn to read past it, or call repair() to move it to ${path}.torn`,
      { path },
    );
    this.offset = offset;
    this.tail = tail;
  }
}
LogTornError.prototype.name = 'LogTornError';

/**
 * "Cannot read X: permission denied (EACCES)", with the usual causes in words. When the OS error is about
 * another path (the lock file, a temporary file), that path is named too.
 */
export function ioMessage(path: string, action: string, cause: NodeJS.ErrnoException | string): string {
  if (typeof cause === 'string') return `Cannot ${action} ${path}: ${cause}`;
  const other = typeof cause.path === 'string' && cause.path !== path ? cause.path : undefined;
  const why =
    cause.code === 'EACCES' || cause.code === 'EPERM'
      ? 'permission denied'
      : cause.code === 'EISDIR'
        ? `${other ?? 'it'} is a directory`
        : cause.code === 'ENOTDIR'
          ? `a parent of ${other ?? 'it'} is not a directory`
          : inWords(cause, path);
  const on = other && (cause.code === 'EACCES' || cause.code === 'EPERM') ? ` on ${other}` : '';
  return `Cannot ${action} ${path}: ${why} (${cause.code ?? 'error'})${on}`;
}

/**
 * Node's "ENOENT: no such file or directory, mkdir '/a/b'" in words, "no such file or directory, mkdir
 * /a/b": the system call always (uv_cwd is not the file), its path when it is not `subject`, and the
 * destination of a rename or link. The errno name follows in parentheses, so a leading one is dropped.
 */
function inWords(cause: NodeJS.ErrnoException, subject: string): string {
  const m = /^[A-Z][A-Z0-9_]*: (.+?), ([a-z_]+)(?: '(.*?)')?(?: -> '(.*)')?$/s.exec(cause.message);
  if (!m) return cause.message.replace(/^[A-Z][A-Z0-9_]*: /, '');
  const [, text, syscall, from, to] = m;
  const where = from === undefined || from === subject ? '' : ` ${from}`;
  return `${text}, ${syscall}${where}${to === undefined ? '' : ` -> ${to}`}`;
}

/** Whether `err` is an operating-system error (ENOENT, EACCES, ...), not one of ours. */
export function isOsError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && code.startsWith('E') && !code.startsWith('ERR_');
}

/** `text` parsed as JSON; invalid JSON is StoreCorruptError with its line, column and position. */
export function parseStoreJson(text: string, path: string): unknown {
  try {
    return parseJson(text, path);
  } catch (err) {
    if (!(err instanceof JsonParseError)) throw err;
    throw new StoreCorruptError(
      path,
      `invalid JSON at line ${err.line}, column ${err.column} (position ${err.position})`,
      err.position,
      err,
    );
  }
}
