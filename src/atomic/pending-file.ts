/**
 * PendingFile: a file that replaces its target only when committed.
 *
 * Atomicity: readers see either the old file or the new one, never a mix, because the new content is
 * written to a temporary file in the same directory and renamed over the target (rename(2) is atomic).
 * Durability (with `fsync`, the default): the data is fsynced before the rename and the directory is
 * fsynced after it, so after commit() resolves the new content survives a power cut. The directory fsync
 * is the step renameio, write-file-atomic and proper-lockfile leave out; without it the rename itself can
 * be lost.
 * Not provided: locking. Two concurrent writers each replace the file whole; the last rename wins. Callers
 * that read-modify-write compose this with a lock (the registry does).
 */
import { closeSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { crypto } from '../_crypto.js';
import { realFile } from '../_real-path.js';
import { InvalidOptionError } from '../errors.js';
import { ops } from './_fs-ops.js';

/** Options for {@link PendingFile.create} and {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Permission bits of the result. @default the existing file's mode, or 0o600 for a new file */
  mode?: number;
  /** fsync the data before the rename and the directory after it. @default true */
  fsync?: boolean;
}

/** A temporary file that becomes `path` on {@link PendingFile.commit}, or vanishes on cleanup. */
export class PendingFile {
  /** The file this will replace (symlinks resolved, so a link keeps pointing at the new content). */
  readonly path: string;
  /** The temporary file: `.<name>.tmp-<pid>-<random>` in the same directory. */
  readonly tempPath: string;
  #fd: number | undefined;
  #state: 'open' | 'committed' | 'cleaned' = 'open';
  readonly #fsync: boolean;

  private constructor(path: string, tempPath: string, fd: number, fsync: boolean) {
    this.path = path;
    this.tempPath = tempPath;
    this.#fd = fd;
    this.#fsync = fsync;
  }

  /**
   * Creates the temporary file (exclusively, so concurrent writers never share one). `newFileMode`
   * (internal: the stores pass 0o644, as the Go tool writes its files) replaces the 0o600 default of a
   * new file, filtered by the umask as any file a program creates.
   */
  static async create(
    path: string,
    options: AtomicWriteOptions = {},
    newFileMode?: number,
  ): Promise<PendingFile> {
    const { target, tempPath, exact, openMode, fsync } = prepare(path, options, newFileMode);
    // Awaited, as every step here: a step may be replaced by an asynchronous one (the tests' injections).
    const fd = await ops.open(tempPath, 'wx', openMode);
    const pending = new PendingFile(target, tempPath, fd, fsync);
    // The open mode is filtered by the umask; set it exactly, as given or as the existing file had it.
    if (exact !== undefined) await pending.#step(() => ops.chmod(fd, exact));
    return pending;
  }

  /** Writes `data` as the whole content of the pending file. */
  async write(data: string | Uint8Array): Promise<void> {
    checkData(data);
    const fd = this.#openFd();
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    await this.#step(() => ops.write(fd, bytes));
  }

  /** Atomically replaces `path` with what was written (durably unless `fsync: false`). */
  async commit(): Promise<void> {
    const fd = this.#openFd();
    await this.#step(async () => {
      if (this.#fsync) await ops.sync(fd);
      // Forgotten before it is closed: close(2) frees the descriptor even when it reports an error, and
      // closing the number again in cleanup() could close a file another thread has opened since.
      this.#fd = undefined;
      await ops.close(fd);
      await ops.rename(this.tempPath, this.path);
    });
    this.#state = 'committed';
    // Once renamed, the new content is in place; a failing directory fsync is reported, but there is
    // no temporary file left to remove.
    if (this.#fsync) await syncDirectory(dirname(this.path));
  }

  /** Discards the pending file. Idempotent; does nothing after commit(). */
  async cleanup(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'cleaned';
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // nothing more to do: the pending file is being discarded
      }
    }
    try {
      await ops.unlink(this.tempPath);
    } catch {
      // never made, or gone already
    }
  }

  /** Alias of {@link PendingFile.cleanup}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.cleanup();
  }

  /** The open descriptor, or an error if the file was committed or discarded. */
  #openFd(): number {
    if (this.#state !== 'open' || this.#fd === undefined) {
      throw new InvalidOptionError('PendingFile', this.#state, 'a pending file that is still open');
    }
    return this.#fd;
  }

  /** Runs one step; on failure removes the temporary file (closing it first) and rethrows. */
  async #step(fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (err) {
      await this.cleanup();
      throw err;
    }
  }
}

/** Writes `data` to `path` atomically and durably (see {@link PendingFile}). */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
  newFileMode?: number,
): Promise<void> {
  checkData(data); // before anything is created: a bad argument must leave every file as it was
  const pending = await PendingFile.create(path, options, newFileMode);
  try {
    await pending.write(data);
    await pending.commit();
  } finally {
    await pending.cleanup();
  }
}

/**
 * {@link writeFileAtomic} on the calling thread: the same temp file, fsync, rename and directory fsync,
 * the same modes, nothing left behind on failure; it returns once the new content is durable. Its fsyncs
 * block the event loop (a fraction of a millisecond on a local SSD, far more on a slow or network disk),
 * and save the two round trips through libuv's threadpool that writeFileAtomic makes: under a contended
 * lock, where the hold's length is everyone's wait, that is worth ~0.4 ms a write (BENCHMARKS.md,
 * "Contention"). For command-line tools and scripts; servers should keep writeFileAtomic.
 */
export function writeFileAtomicSync(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
  newFileMode?: number,
): void {
  checkData(data);
  const { target, tempPath, exact, openMode, fsync } = prepare(path, options, newFileMode);
  let fd: number | undefined = ops.open(tempPath, 'wx', openMode);
  try {
    if (exact !== undefined) ops.chmod(fd, exact);
    ops.write(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (fsync) ops.syncNow(fd);
    const closing = fd;
    fd = undefined; // as in commit(): never closed twice
    ops.close(closing);
    ops.rename(tempPath, target);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // nothing more to do: the write already failed
      }
    }
    unlinkQuietly(tempPath);
    throw err;
  }
  // As in commit(): once renamed, a failing directory fsync is reported, with nothing left to remove.
  if (!fsync) return;
  try {
    ops.syncDirNow(dirname(target));
  } catch (err) {
    if (!dirSyncUnsupported(err)) throw err;
  }
}

/** The checked arguments of an atomic write, its target, its temp file and the mode to give it. */
function prepare(
  path: string,
  options: AtomicWriteOptions,
  newFileMode: number | undefined,
): { target: string; tempPath: string; exact: number | undefined; openMode: number; fsync: boolean } {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0'))
    throw new InvalidOptionError('path', path, 'a non-empty string');
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new InvalidOptionError('options', options, 'an object');
  const { mode, fsync = true } = options;
  if (mode !== undefined && (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)) {
    throw new InvalidOptionError('mode', mode, 'file permission bits');
  }
  if (typeof fsync !== 'boolean') throw new InvalidOptionError('fsync', fsync, 'a boolean');
  // The file the rename must replace: a symlink's target, also a dangling link's (the file it will
  // create), so the link keeps pointing at the new content; the same resolution the lock uses.
  const target = realFile(resolve(path));
  const exact = mode ?? existingMode(target) ?? (newFileMode === undefined ? 0o600 : undefined);
  return {
    target,
    tempPath: tempPathFor(target, process.pid),
    exact,
    openMode: (exact ?? newFileMode)!,
    fsync,
  };
}

function unlinkQuietly(path: string): void {
  try {
    ops.unlink(path);
  } catch {
    // never made, or gone already
  }
}

/**
 * Removes temporary files that crashed writers left beside `path`, returning how many it removed. Temp
 * files are named with their writer's pid and a tag of its host and pid namespace. One of this host and
 * namespace is removed when its pid is no longer alive; one of another host or container (whose pids
 * this process cannot check) only when it is older than an hour. So a live writer's temp file is never
 * taken from under it, even by a caller that does not exclude it.
 */
export async function removeStaleTempFiles(path: string): Promise<number> {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw new InvalidOptionError('path', path, 'a non-empty string');
  }
  const target = realFile(resolve(path));
  const prefix = `.${basename(target)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const file = join(dirname(target), name);
    const m = /^(\d+)-([0-9a-f]{8})-[0-9a-f]+$/.exec(name.slice(prefix.length));
    const stale =
      m && m[2] === hostTag()
        ? !isAlive(Number(m[1]))
        : (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) < Date.now() - FOREIGN_STALE_MS;
    if (!stale) continue;
    try {
      await ops.unlink(file);
      removed++;
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed;
}

/** How old a temp file of another host or pid namespace must be before it counts as abandoned. */
const FOREIGN_STALE_MS = 60 * 60 * 1000;

/** The temp file a writer with `pid` on this host uses for `target`: `.<name>.tmp-<pid>-<host tag>-<random>`. */
export function tempPathFor(target: string, pid: number): string {
  return join(
    dirname(target),
    `.${basename(target)}.tmp-${pid}-${hostTag()}-${crypto().randomBytes(6).toString('hex')}`,
  );
}

let tag: string | undefined;

/** 8 hex digits naming this host and pid namespace: pids are only comparable within one of them. */
function hostTag(): string {
  if (tag === undefined) {
    let ns = '';
    try {
      ns = readlinkSync('/proc/self/ns/pid');
    } catch {
      // no pid namespaces here (not Linux)
    }
    tag = crypto().createHash('sha256').update(`${hostname()}\0${ns}`).digest('hex').slice(0, 8);
  }
  return tag;
}

/** Whether process `pid` exists (EPERM: it does, as another user's). */
function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Throws ERR_INVALID_OPTION unless `data` is a string or bytes (123 or {} would empty the target). */
function checkData(data: unknown): void {
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
    throw new InvalidOptionError('data', data, 'a string or a Uint8Array');
  }
}

/** The permission bits of an existing file, or undefined if there is none. */
function existingMode(path: string): number | undefined {
  try {
    return statSync(path).mode & 0o7777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** fsyncs a directory so a rename in it is durable; platforms that cannot (Windows) are skipped. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    await ops.syncDir(dir);
  } catch (err) {
    if (!dirSyncUnsupported(err)) throw err;
  }
}

/** Whether a directory fsync failed only because this platform or file system cannot do it. */
function dirSyncUnsupported(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return process.platform === 'win32' || code === 'EISDIR' || code === 'EINVAL' || code === 'EPERM';
}
