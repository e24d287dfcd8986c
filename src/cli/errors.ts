/**
 * The CLI's exit codes (util-linux flock(1)'s, from sysexits.h) and the one function that maps an error
 * to its code, plus the errors only the CLI throws. Library errors keep their codes; raw OS errors are
 * reported with their errno name.
 */
import { getSystemErrorMap } from 'node:util';

/** Exit codes; docs/cli.md and `townlock --help` show this table. */
export const EXIT = {
  ok: 0,
  /** The lock is busy or the wait timed out (unless -E), or a request failed (machine not found...). */
  failure: 1,
  /** EX_USAGE: the command line is wrong. */
  usage: 64,
  /** EX_DATAERR: a file's content is wrong (corrupt registry, invalid machine). */
  data: 65,
  /** EX_NOINPUT: an input cannot be opened (the lock file or its directory, the registry, a FILE, a key). */
  noInput: 66,
  /** EX_UNAVAILABLE: the command cannot be run (not found, not executable), or no lock on this platform. */
  unavailable: 69,
  /** EX_SOFTWARE: a bug in townlock; the stack is printed. */
  internal: 70,
  /** EX_OSERR: any other operating-system error. */
  os: 71,
  /** EX_TEMPFAIL: try again later (the machine cannot be reached now). */
  tempFail: 75,
} as const;

/** A command's outcome: the process exit code. */
export type ExitCode = number;

/** The command line is wrong (exit 64). `hint` says what to type instead. */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
  /** What to type instead; the dispatcher fills in "see 'townlock CMD --help'" when absent. */
  hint: string | undefined;

  constructor(problem: string, hint?: string) {
    super(problem);
    this.hint = hint;
  }
}
UsageError.prototype.name = 'UsageError';

/**
 * An input could not be opened (exit 66; 71 when the system ran out of memory or descriptors): the lock
 * file or its directory, a FILE or DIR argument, the registry, a key file. `code` is the errno name.
 */
export class InputError extends Error {
  readonly code: string;

  /** `what` names the kind of input (`lock file`, `registry`); empty when the path says enough. */
  constructor(what: string, path: string, cause: NodeJS.ErrnoException) {
    super(`cannot open ${what ? `${what} ` : ''}${path}: ${errnoText(cause)}`, { cause });
    this.code = cause.code ?? 'EIO';
  }
}
InputError.prototype.name = 'InputError';

/** The command `lock run` was asked to run could not be started (exit 69, or 71 for resource errors). */
export class RunError extends Error {
  readonly code: string;

  constructor(command: string, cause: NodeJS.ErrnoException) {
    const why = cause.code === 'ENOENT' ? 'command not found' : errnoText(cause);
    super(`cannot run ${command}: ${why}`, { cause });
    this.code = cause.code ?? 'EIO';
  }
}
RunError.prototype.name = 'RunError';

/** errnos that mean the system ran out of something, not that the input is wrong: EX_OSERR, as flock(1). */
const RESOURCE_ERRNOS = new Set(['ENOMEM', 'EMFILE', 'ENFILE', 'EAGAIN']);

/** Connection failures worth retrying later: the host did not answer, the link dropped, time ran out. */
const TEMPORARY_CONNECTION = new Set(['connect', 'timeout', 'closed']);

/** The exit code for `err`: the one place that decides it (docs/cli.md, "Exit codes"). */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError) return EXIT.usage;
  const code = (err as { code?: unknown })?.code;
  if (err instanceof InputError) return RESOURCE_ERRNOS.has(err.code) ? EXIT.os : EXIT.noInput;
  if (err instanceof RunError) return RESOURCE_ERRNOS.has(err.code) ? EXIT.os : EXIT.unavailable;
  switch (code) {
    case 'ERR_LOCK_TIMEOUT':
    case 'ERR_MACHINE_NOT_FOUND':
    case 'ERR_LOCAL_MACHINE':
    case 'ERR_NOT_FOUND':
    case 'ERR_PERMISSION':
      return EXIT.failure;
    case 'ERR_CONNECTION': {
      const reason = (err as { reason?: string }).reason ?? '';
      if (TEMPORARY_CONNECTION.has(reason)) return EXIT.tempFail;
      return reason === 'unsupported' ? EXIT.data : EXIT.failure;
    }
    case 'ERR_ETCD_UNAVAILABLE':
    case 'ERR_LEASE_EXPIRED':
    case 'ERR_LOCK_LOST':
      return EXIT.tempFail;
    case 'ERR_REGISTRY_CORRUPT':
    case 'ERR_REGISTRY_VERSION':
    case 'ERR_INVALID_MACHINE':
    case 'ERR_JSON_PARSE':
    case 'ERR_STORE_CORRUPT':
    case 'ERR_STORE_INVALID':
    case 'ERR_LOG_TORN':
    case 'ERR_ETCD_TXN_TOO_LARGE':
      return EXIT.data;
    case 'ERR_LOCK_UNSAFE':
    case 'ERR_LOCK_SYMLINK':
    case 'ERR_LOCK_DIR':
      return EXIT.noInput;
    case 'ERR_REGISTRY_IO':
    case 'ERR_STORE_IO':
      return (err as { action?: string }).action === 'read' ? EXIT.noInput : EXIT.os;
    case 'ERR_INVALID_OPTION':
      return EXIT.usage;
    case 'ERR_UNSUPPORTED_PLATFORM':
    case 'ERR_ETCD_REQUEST':
      return EXIT.unavailable;
  }
  return isOsError(err) ? EXIT.os : EXIT.internal;
}

/** The text of one error line (without `townlock: `): the message and, in brackets, its code. */
export function errorText(err: unknown): string {
  if (isOsError(err) && !(err instanceof InputError) && !(err instanceof RunError)) {
    // A raw OS error ("EACCES: permission denied, mkdir '/x'"): said in words, with its errno name.
    const what = [err.syscall, err.path === undefined ? undefined : String(err.path)].filter(Boolean);
    return `${what.length > 0 ? `cannot ${what.join(' ')}: ` : ''}${errnoText(err)} [${err.code}]`;
  }
  const e = err as { message?: unknown; code?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const hint = err instanceof UsageError && err.hint ? `; ${err.hint}` : '';
  const code = typeof e?.code === 'string' ? ` [${e.code}]` : '';
  return `${message.split('\n')[0]}${hint}${code}`;
}

/** Whether `err` is an operating-system error (ENOENT, EACCES...), not one of townlock's ERR_ codes. */
export function isOsError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

let systemErrors: Map<number, [string, string]> | undefined;

/** The system's words for an errno ("permission denied" for EACCES), else its name. */
export function errnoText(err: NodeJS.ErrnoException): string {
  systemErrors ??= getSystemErrorMap();
  for (const [name, text] of systemErrors.values()) if (name === err.code) return text;
  return err.code ?? err.message;
}
