/**
 * Where the lock for a protected file lives, resolved through symbolic links (src/_real-path.ts) so that
 * every spelling of one file (a symlink to it, a symlinked directory, `..` after a symlink, a lockDir
 * reached through a link) names one lock file and one in-process identity. Writers such as
 * writeFileAtomic replace the link's target, so the lock must follow the target too.
 */
import { posix } from 'node:path';
import { BYTES, decodeUtf8, type FsPath, realDir, realTarget, TEXT } from '../_real-path.js';
import { InvalidOptionError } from '../errors.js';

export { displayPath, type FsPath, fsBasename, fsDirname } from '../_real-path.js';

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
  /**
   * Whether the lock file was named directly (`isLockFile`, the CLI's `-L`): a file of the caller's, maybe
   * a script or data (`flock "$0"`), which a holder must not overwrite with its info line.
   */
  named: boolean;
}

/**
 * Resolutions made during the current turn of the event loop, by spelling: a burst of locks on one file
 * (a loop of withWriteLock calls) resolves it once instead of paying lstat + realpath every time. Cleared
 * when the loop turns, so a symlink pointed elsewhere is followed from the next turn on.
 */
const resolved = new Map<string, LockTarget>();
let clearScheduled = false;

/**
 * Resolves the lock of `path` (lock file `<dir of the real file>/.gastown/locks/<name>.lock`, or in
 * `lockDir`). With `isLockFile`, `path` is the lock file itself: only its directory is resolved (the file
 * is opened without following a symlink), as flock(1) takes its FILE.
 */
export function resolveLockTarget(path: string | Buffer, lockDir?: string, isLockFile = false): LockTarget {
  if (typeof path !== 'string' || (lockDir !== undefined && typeof lockDir !== 'string'))
    return resolve(path, lockDir, isLockFile);
  const key = `${path.startsWith('/') ? '' : process.cwd()}\0${path}\0${lockDir ?? ''}\0${isLockFile}`;
  const cached = resolved.get(key);
  if (cached) return cached;
  const target = resolve(path, lockDir, isLockFile);
  resolved.set(key, target);
  if (!clearScheduled) {
    clearScheduled = true;
    setImmediate(() => {
      clearScheduled = false;
      resolved.clear();
    });
  }
  return target;
}

/** resolveLockTarget without the per-turn cache. */
function resolve(path: string | Buffer, lockDir: string | undefined, isLockFile: boolean): LockTarget {
  if (!(typeof path === 'string' || Buffer.isBuffer(path)) || path.length === 0) {
    throw new InvalidOptionError('path', path, 'a non-empty string or Buffer');
  }
  if (
    lockDir !== undefined &&
    (typeof lockDir !== 'string' || lockDir.length === 0 || lockDir.includes('\0'))
  ) {
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
  // Read only for a relative path: with absolute paths, a deleted working directory changes nothing.
  const cwd = () => (kind.bytes ? Buffer.from(process.cwd()).toString('latin1') : process.cwd());
  const absolute = (q: string) => (q.startsWith('/') ? posix.resolve(q) : posix.resolve(cwd(), q));
  if (isLockFile) {
    const abs = absolute(p);
    if (abs === '/') throw new InvalidOptionError('path', path, 'a lock file, not /');
    const lockPath = posix.join(realDir(kind, posix.dirname(abs)), posix.basename(abs));
    const shown = kind.display(lockPath);
    const key = kind.bytes ? `\0${lockPath}` : lockPath;
    return {
      path: shown,
      lockPath: shown,
      fsLockPath: kind.fs(lockPath),
      key,
      createDirs: false,
      // A file in a `.gastown/locks` directory is townlock's own lock file, however it is named.
      named: !isInLockDir(lockPath),
    };
  }
  const real = realTarget(kind, absolute(p), 0);
  const dir =
    lockDir === undefined
      ? posix.join(posix.dirname(real), '.gastown', 'locks')
      : realDir(kind, absolute(lockDir));
  const lockPath = posix.join(dir, `${posix.basename(real)}.lock`);
  return {
    path: kind.display(real),
    lockPath: kind.display(lockPath),
    fsLockPath: kind.fs(lockPath),
    key: kind.bytes ? `\0${lockPath}` : lockPath,
    createDirs: true,
    named: false,
  };
}

/** Whether `lockPath` lies in a `.gastown/locks` directory: a lock file of townlock's (or the Go tool's). */
function isInLockDir(lockPath: string): boolean {
  const dir = posix.dirname(lockPath);
  return posix.basename(dir) === 'locks' && posix.basename(posix.dirname(dir)) === '.gastown';
}
