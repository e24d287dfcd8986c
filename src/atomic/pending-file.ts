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
import { randomBytes } from 'node:crypto';
import { closeSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
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

  /** Creates the temporary file (exclusively, so concurrent writers never share one). */
  static async create(path: string, options: AtomicWriteOptions = {}): Promise<PendingFile> {
    if (typeof path !== 'string' || path.length === 0 || path.includes('\0'))
      throw new InvalidOptionError('path', path, 'a non-empty string');
    if (options === null || typeof options !== 'object' || Array.isArray(options))
      throw new InvalidOptionError('options', options, 'an object');
    const { mode, fsync = true } = options;
    if (mode !== undefined && (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)) {
      throw new InvalidOptionError('mode', mode, 'file permission bits');
    }
    if (typeof fsync !== 'boolean') throw new InvalidOptionError('fsync', fsync, 'a boolean');
    const target = await resolveTarget(resolve(path));
    const finalMode = mode ?? (await existingMode(target)) ?? 0o600;
    const tempPath = join(
      dirname(target),
      `.${basename(target)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`,
    );
    const fd = await ops.open(tempPath, 'wx', finalMode);
    const pending = new PendingFile(target, tempPath, fd, fsync);
    // The open mode is filtered by the umask; set it exactly, as the existing file had it.
    await pending.#step(() => ops.chmod(fd, finalMode));
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
      await ops.close(fd);
      this.#fd = undefined;
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
        // already closed by a failed close step
      }
    }
    await ops.unlink(this.tempPath).catch(() => {});
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
  async #step(fn: () => Promise<void>): Promise<void> {
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
): Promise<void> {
  checkData(data); // before anything is created: a bad argument must leave every file as it was
  const pending = await PendingFile.create(path, options);
  try {
    await pending.write(data);
    await pending.commit();
  } finally {
    await pending.cleanup();
  }
}

/**
 * Removes temporary files that crashed writers left beside `path`, returning how many it removed. Only
 * files whose writer (the pid in the name) is no longer alive are removed, so a live writer's temp file
 * is never taken from under it, even by a caller that does not exclude it. Safe to call at any time.
 */
export async function removeStaleTempFiles(path: string): Promise<number> {
  if (typeof path !== 'string' || path.length === 0)
    throw new InvalidOptionError('path', path, 'a non-empty string');
  const target = await resolveTarget(resolve(path));
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
    const pid = /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length))?.[1];
    if (pid === undefined || isAlive(Number(pid))) continue;
    await ops.unlink(join(dirname(target), name)).then(
      () => removed++,
      () => {},
    );
  }
  return removed;
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

/** Follows a symlink at `path` so the rename replaces the link's target, not the link. */
async function resolveTarget(path: string): Promise<string> {
  try {
    return realpathSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path;
    throw err;
  }
}

/** The permission bits of an existing file, or undefined if there is none. */
async function existingMode(path: string): Promise<number | undefined> {
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
    const code = (err as NodeJS.ErrnoException).code;
    if (process.platform === 'win32' || code === 'EISDIR' || code === 'EINVAL' || code === 'EPERM') return;
    throw err;
  }
}
