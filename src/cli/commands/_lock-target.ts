/**
 * What the FILE (or DIR) argument of `lock run`, `lock status` and `lock clean` names, decided the same
 * way for all three so that a lock file can never be mistaken for a file to protect:
 * - `-L FILE`: FILE is the lock file itself, as flock(1)'s FILE;
 * - `--protect FILE`: FILE is the file to protect (lock in `.gastown/locks/`), whatever its name;
 * - otherwise a FILE inside a `.gastown/locks` directory is the lock file, a FILE named `*.lock` elsewhere
 *   is ambiguous (refused, showing both spellings), and any other FILE is the file to protect;
 * - a directory is a DIR for status and clean, and refused by run (and with -L or --protect).
 */
import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { type FsPath, type LockTarget, resolveLockTarget } from '../../filelock/_target.js';
import { absolutePath, type ParsedArgs } from '../args.js';
import type { CliContext } from '../context.js';
import { InputError, isOsError, UsageError } from '../errors.js';
import type { CommandInput } from '../spec.js';

/** The thing a FILE or DIR argument names. */
export type LockArgument =
  /** A directory (status and clean only): its `.gastown/locks`, or itself if it is one. */
  | { kind: 'dir'; path: string }
  /** A lock file, named directly. */
  | { kind: 'lock-file'; path: FsPath; shown: string }
  /** A file to protect, whose lock file is in `.gastown/locks` beside it. */
  | { kind: 'protected'; path: FsPath; shown: string };

/**
 * Decides what the positional at `index` names. Throws UsageErrors for ambiguous names and for directories where a file is needed.
 */
export function lockArgument(
  args: ParsedArgs,
  index: number,
  ctx: CliContext,
  input: CommandInput,
  allowDir: boolean,
): LockArgument {
  const arg = args.positionals[index]!;
  if (arg === '')
    throw new UsageError(
      `${allowDir ? 'FILE or DIR' : 'FILE'} is empty ('')`,
      allowDir
        ? "give a path, or nothing for the current directory ('.')"
        : 'give the path of the file to lock',
    );
  const asLockFile = args.values['lock-file'] === true;
  const protect = args.values.protect === true;
  if (asLockFile && protect)
    throw new UsageError(
      '-L and --protect cannot be used together',
      '-L FILE locks FILE itself; --protect FILE locks .gastown/locks/FILE.lock',
    );
  const shown = absolutePath(ctx, arg);
  // A name that is not valid UTF-8 is used as the bytes it is, never as its lossy decoding.
  const bytes = input.bytesOf(args.positionalIndexes[index]!);
  const path: FsPath = bytes ? absoluteBytes(bytes, ctx) : shown;
  const isDir = statOf(path, shown)?.isDirectory() ?? false;
  if (!isDir && arg.endsWith('/')) throw new InputError('directory', shown, enoent()); // a DIR/ that does not exist
  if (isDir) {
    if (allowDir && !asLockFile && !protect) return { kind: 'dir', path: shown };
    throw new UsageError(
      `${arg} is a directory`,
      asLockFile || !allowDir
        ? `give the file to protect, e.g. '${input.name} ${slashJoin(arg, 'state.json')} ...' (-L DIR is not supported either: townlock lock files are regular files)`
        : `give a file to protect or a lock file, or DIR without ${protect ? '--protect' : '-L'}`,
    );
  }
  if (asLockFile) return { kind: 'lock-file', path, shown };
  if (protect) return { kind: 'protected', path, shown };
  const dir = dirname(shown);
  if (basename(dir) === 'locks' && basename(dirname(dir)) === '.gastown')
    return { kind: 'lock-file', path, shown };
  if (basename(shown).endsWith('.lock'))
    throw new UsageError(
      `'${arg}' is ambiguous: it may be a lock file or a file to protect`,
      allowDir
        ? `write '${input.name} -L ${arg}' if it is a lock file (only those in .gastown/locks directories are cleaned), or '${input.name} --protect ${arg}' for the lock that protects it`
        : `write '${input.name} -L ${arg} ...' to lock it as flock(1) does, or '${input.name} --protect ${arg} ...' to protect it with a lock in .gastown/locks`,
    );
  return { kind: 'protected', path, shown };
}

/** stat of an argument; undefined if nothing is there; other failures (EACCES...) are InputErrors (66). */
function statOf(path: FsPath, shown: string): fs.Stats | undefined {
  try {
    return fs.statSync(path, { throwIfNoEntry: false });
  } catch (err) {
    throw isOsError(err) ? new InputError('', shown, err) : err;
  }
}

/** `bytes` made absolute against the working directory, still as bytes. */
function absoluteBytes(bytes: Buffer, ctx: CliContext): Buffer {
  return bytes[0] === 0x2f ? bytes : Buffer.concat([Buffer.from(`${ctx.cwd}/`), bytes]);
}

/** `dir/name` for a hint, without doubling a trailing slash. */
function slashJoin(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

/** The argument of status and clean: FILE or DIR, the current directory when absent. */
export function targetOf(args: ParsedArgs, ctx: CliContext, input: CommandInput): LockArgument {
  return args.positionals.length === 0
    ? { kind: 'dir', path: ctx.cwd }
    : lockArgument(args, 0, ctx, input, true);
}

/**
 * The lock file a FILE argument names, if it exists. A FILE whose lock file does not exist, and which
 * does not exist either, is an input that cannot be opened (InputError, exit 66).
 */
export function existingLockFile(target: Exclude<LockArgument, { kind: 'dir' }>): LockTarget | undefined {
  let lock: LockTarget;
  try {
    lock = resolveLockTarget(target.path, undefined, target.kind === 'lock-file');
  } catch (err) {
    throw isOsError(err) ? new InputError('', target.shown, err) : err;
  }
  if (exists(lock.fsLockPath)) return lock;
  if (target.kind === 'lock-file') throw new InputError('lock file', lock.lockPath, enoent());
  if (!exists(target.path)) throw new InputError('', target.shown, enoent());
  return undefined;
}

/**
 * The lock directory of DIR: DIR itself if it is a .gastown/locks directory, else DIR/.gastown/locks
 * (undefined when there is none). A DIR that does not exist is an InputError (exit 66).
 */
export function lockDirOf(dir: string): string | undefined {
  let real: string;
  try {
    real = fs.realpathSync.native(dir);
  } catch (err) {
    throw isOsError(err) ? new InputError('directory', dir, err) : err;
  }
  if (basename(real) === 'locks' && basename(dirname(real)) === '.gastown') return real;
  const nested = join(real, '.gastown', 'locks');
  try {
    return fs.lstatSync(nested, { throwIfNoEntry: false })?.isDirectory() ? nested : undefined;
  } catch (err) {
    throw isOsError(err) ? new InputError('directory', nested, err) : err;
  }
}

/** Whether something (even a dangling symlink) is at `path`; a failed lstat (EACCES...) is an InputError. */
function exists(path: FsPath): boolean {
  try {
    return fs.lstatSync(path, { throwIfNoEntry: false }) !== undefined;
  } catch (err) {
    throw isOsError(err) ? new InputError('', String(path), err) : err;
  }
}

/** An ENOENT error, for an argument found missing by a check rather than by a failed call. */
function enoent(): NodeJS.ErrnoException {
  return Object.assign(new Error('no such file or directory'), { code: 'ENOENT' });
}
