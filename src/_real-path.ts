/**
 * Real paths, for locks and for atomic writes alike: the file a path really names, through symbolic
 * links (also a dangling link: the file it will create) and `..` after a symlinked directory, so that
 * every spelling of one file is treated as that file.
 *
 * Paths arrive as strings or, for names that are not valid UTF-8, as Buffers. Buffer paths are handled
 * as latin1 strings (one char per byte) for the path arithmetic and turned back into bytes for the
 * file system, so such a name is never mangled to U+FFFD.
 */
import fs from 'node:fs';
import { posix } from 'node:path';

/** A path as the file system takes it. */
export type FsPath = string | Buffer;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Path arithmetic and file-system calls for one kind of path: text, or raw bytes carried in latin1. */
export interface PathKind {
  bytes: boolean;
  fs(p: string): FsPath;
  display(p: string): string;
}
export const TEXT: PathKind = { bytes: false, fs: (p) => p, display: (p) => p };
export const BYTES: PathKind = {
  bytes: true,
  fs: (p) => Buffer.from(p, 'latin1'),
  display: (p) => Buffer.from(p, 'latin1').toString('utf8'),
};

/** The file a text path really names (see the module comment); `path` need not exist. */
export function realFile(path: string): string {
  return realTarget(TEXT, posix.resolve(path), 0);
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
export function decodeUtf8(buf: Buffer): string | undefined {
  try {
    return utf8.decode(buf);
  } catch {
    return undefined;
  }
}

/** The file `abs` really is: its realpath, the target of a dangling link, or its real directory + name. */
export function realTarget(kind: PathKind, abs: string, depth: number): string {
  // lstat first: exceptions cost ~10 µs each, and the common cases (a plain file, or one not created
  // yet) need none: their real path is their directory's real path and their name.
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(kind.fs(abs), { throwIfNoEntry: false });
  } catch (err) {
    if (!isMissing(err)) throw err; // ENOTDIR: a parent is a file; the lock file cannot be made either
  }
  if (st?.isSymbolicLink()) {
    try {
      return realpath(kind, abs);
    } catch (err) {
      if (!isMissing(err) || depth >= 40) throw err;
    }
    // A dangling link: the file it names, which a writer will create.
    const link = fromFs(kind, fs.readlinkSync(kind.fs(abs), { encoding: 'buffer' }));
    return realTarget(kind, posix.resolve(posix.dirname(abs), link), depth + 1);
  }
  return posix.join(realDir(kind, posix.dirname(abs)), posix.basename(abs));
}

/** The realpath of a directory, or of its nearest existing ancestor with the missing rest appended. */
export function realDir(kind: PathKind, abs: string): string {
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
