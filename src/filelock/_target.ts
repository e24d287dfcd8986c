/**
 * Where the lock for a protected file lives, resolved through symbolic links so that every spelling of
 * one file (a symlink to it, a symlinked directory, `..` after a symlink, a lockDir reached through a
 * link) names one lock file and one in-process identity. Writers such as writeFileAtomic replace the
 * link's target, so the lock must follow the target too.
 *
 * Paths arrive as strings or, for names that are not valid UTF-8, as Buffers. Buffer paths are handled
 * as latin1 strings (one char per byte) for the path arithmetic and turned back into bytes for the
 * file system, so such a name is never mangled to U+FFFD.
 */
import fs from 'node:fs';
import { posix } from 'node:path';
import { InvalidOptionError } from '../errors.js';

/** A path as the file system takes it. */
export type FsPath = string | Buffer;

/** The resolved lock of one protected file. */
export interface LockTarget {
  /** The protected file, absolute, symlinks resolved (for display). */
  path: string;
  /** The lock file, absolute, symlinks resolved (for display). */
  lockPath: string;
  /** The lock file as file-system calls take it (a Buffer only for names that are not UTF-8). */
  fsLockPath: FsPath;
  /** The identity in-process queues and re-entrancy are keyed by. */
  key: string;
  /** Whether opening the lock file may create its missing directories (not for a lock file named directly). */
  createDirs: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Path arithmetic and file-system calls for one kind of path: text, or raw bytes carried in latin1. */
interface PathKind {
  bytes: boolean;
  fs(p: string): FsPath;
  display(p: string): string;
}
const TEXT: PathKind = { bytes: false, fs: (p) => p, display: (p) => p };
const BYTES: PathKind = {
  bytes: true,
  fs: (p) => Buffer.from(p, 'latin1'),
  display: (p) => Buffer.from(p, 'latin1').toString('utf8'),
};

/**
 * Resolves the lock of `path` (lock file `<dir of the real file>/.gastown/locks/<name>.lock`, or in
 * `lockDir`). With `isLockFile`, `path` is the lock file itself: only its directory is resolved (the file
 * is opened without following a symlink), as flock(1) takes its FILE.
 */
export function resolveLockTarget(path: string | Buffer, lockDir?: string, isLockFile = false): LockTarget {
  if (!(typeof path === 'string' || Buffer.isBuffer(path)) || path.length === 0) {
    throw new InvalidOptionError('path', path, 'a non-empty string or Buffer');
  }
  if (lockDir !== undefined && (typeof lockDir !== 'string' || lockDir.length === 0)) {
    throw new InvalidOptionError('lockDir', lockDir, 'a non-empty string');
  }
  if (lockDir !== undefined && isLockFile) {
    throw new InvalidOptionError(
      'lockDir',
      lockDir,
      'nothing when isLockFile is set (path is the lock file)',
    );
  }
  let kind = TEXT;
  let p: string;
  if (typeof path === 'string') p = path;
  else {
    const text = decodeUtf8(path);
    if (text === undefined) {
      kind = BYTES;
      p = path.toString('latin1');
    } else p = text;
  }
  if (p.includes('\0')) throw new InvalidOptionError('path', path, 'a path without NUL bytes');
  const cwd = kind.bytes ? Buffer.from(process.cwd()).toString('latin1') : process.cwd();
  if (isLockFile) {
    const abs = posix.resolve(cwd, p);
    if (abs === '/') throw new InvalidOptionError('path', path, 'a lock file, not /');
    const lockPath = posix.join(realDir(kind, posix.dirname(abs)), posix.basename(abs));
    const shown = kind.display(lockPath);
    const key = kind.bytes ? `\0${lockPath}` : lockPath;
    return { path: shown, lockPath: shown, fsLockPath: kind.fs(lockPath), key, createDirs: false };
  }
  const real = realTarget(kind, posix.resolve(cwd, p), 0);
  const dir =
    lockDir === undefined
      ? posix.join(posix.dirname(real), '.gastown', 'locks')
      : realDir(kind, posix.resolve(cwd, lockDir));
  const lockPath = posix.join(dir, `${posix.basename(real)}.lock`);
  return {
    path: kind.display(real),
    lockPath: kind.display(lockPath),
    fsLockPath: kind.fs(lockPath),
    key: kind.bytes ? `\0${lockPath}` : lockPath,
    createDirs: true,
  };
}

/** dirname() for either kind of path (node:path takes no Buffers). */
export function fsDirname(p: FsPath): FsPath {
  return typeof p === 'string'
    ? posix.dirname(p)
    : Buffer.from(posix.dirname(p.toString('latin1')), 'latin1');
}

/** basename() for either kind of path, as text (for comparisons with ASCII names). */
export function fsBasename(p: FsPath): string {
  return typeof p === 'string' ? posix.basename(p) : posix.basename(p.toString('latin1'));
}

/** A path for messages: Buffers (names that are not UTF-8) shown with replacement characters. */
export function displayPath(p: FsPath): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

/** `buf` as a string if it is valid UTF-8, else undefined. */
function decodeUtf8(buf: Buffer): string | undefined {
  try {
    return utf8.decode(buf);
  } catch {
    return undefined;
  }
}

/** The file `abs` really is: its realpath, the target of a dangling link, or its real directory + name. */
function realTarget(kind: PathKind, abs: string, depth: number): string {
  try {
    return realpath(kind, abs);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  // Missing: a file yet to be created, or a symlink whose target does not exist yet.
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(kind.fs(abs), { throwIfNoEntry: false });
  } catch (err) {
    if (!isMissing(err)) throw err; // ENOTDIR: a parent is a file; the lock file cannot be made either
  }
  if (st?.isSymbolicLink() && depth < 40) {
    const link = fromFs(kind, fs.readlinkSync(kind.fs(abs), { encoding: 'buffer' }));
    return realTarget(kind, posix.resolve(posix.dirname(abs), link), depth + 1);
  }
  return posix.join(realDir(kind, posix.dirname(abs)), posix.basename(abs));
}

/** The realpath of a directory, or of its nearest existing ancestor with the missing rest appended. */
function realDir(kind: PathKind, abs: string): string {
  const missing: string[] = [];
  let dir = abs;
  for (;;) {
    try {
      return posix.join(realpath(kind, dir), ...missing);
    } catch (err) {
      const parent = posix.dirname(dir);
      if (!isMissing(err) || parent === dir) throw err;
      missing.unshift(posix.basename(dir));
      dir = parent;
    }
  }
}

/** A file-system answer in this kind's string form. */
function fromFs(kind: PathKind, buf: Buffer): string {
  return kind.bytes ? buf.toString('latin1') : buf.toString('utf8');
}

/** realpath(3) of `p` in this kind's string form (one libc call, unlike fs.realpathSync). */
function realpath(kind: PathKind, p: string): string {
  return kind.bytes
    ? fs.realpathSync.native(kind.fs(p), { encoding: 'buffer' }).toString('latin1')
    : fs.realpathSync.native(p);
}

/** ENOENT or ENOTDIR: the path (or a parent) does not exist as a directory yet. */
function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
