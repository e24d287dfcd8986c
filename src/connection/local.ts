/**
 * LocalConnection: this machine, through node:fs and child processes started without a shell.
 * writeFile is atomic and durable (townlock/atomic). A command that cannot be started returns code 127
 * (not found) or 126 (not executable), as a shell would, so local and SSH results compare equal.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { writeFileAtomic } from '../atomic/pending-file.js';
import { BaseConnection, type BaseConnectionOptions } from './_base.js';
import { collectExec } from './_exec.js';
import type { DirEntry } from './_glob.js';
import { checkExec, checkString, checkWriteFile } from './_validate.js';
import type { ExecOptions, ExecResult, FileStat } from './connection.js';
import { ConnectionError, NotFoundError, PermissionError } from './errors.js';

/** The local machine. */
export class LocalConnection extends BaseConnection {
  readonly isLocal = true;

  constructor(options: BaseConnectionOptions = {}) {
    super(options?.name ?? 'local', options);
  }

  async readFile(path: string): Promise<Buffer> {
    checkString('path', path);
    return this.#fs('readFile', path, () => fs.readFile(path));
  }

  async writeFile(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
    checkWriteFile(path, data, options);
    await this.#fs('writeFile', path, () => writeFileAtomic(path, data, options));
  }

  async mkdir(path: string): Promise<void> {
    checkString('path', path);
    await this.#fs('mkdir', path, () => fs.mkdir(path, { recursive: true }));
  }

  async remove(path: string): Promise<void> {
    checkString('path', path);
    await this.#fs('remove', path, async () => {
      const s = await fs.lstat(path);
      await (s.isDirectory() ? fs.rmdir(path) : fs.unlink(path));
    });
  }

  async removeAll(path: string): Promise<void> {
    checkString('path', path);
    await this.#fs('removeAll', path, () => fs.rm(path, { recursive: true, force: true }));
  }

  async stat(path: string): Promise<FileStat> {
    checkString('path', path);
    const s = await this.#fs('stat', path, () => fs.stat(path));
    return {
      name: basename(resolve(path)),
      size: s.size,
      mode: s.mode,
      mtime: s.mtime,
      isDir: s.isDirectory(),
    };
  }

  protected async listDir(path: string): Promise<DirEntry[] | undefined> {
    try {
      return (await fs.readdir(path, { withFileTypes: true })).map((e) => ({
        name: e.name,
        isDir: e.isDirectory(),
      }));
    } catch {
      return undefined;
    }
  }

  async exec(command: string, args: string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    checkExec(command, args, options);
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return collectExec(this.name, child, options);
  }

  async close(): Promise<void> {}

  /** Runs an fs call, turning OS errors into NotFoundError / PermissionError / ConnectionError. */
  async #fs<T>(operation: string, path: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapFsError(this.name, operation, path, err);
    }
  }
}

/** Maps an fs error to the connection error hierarchy. */
function mapFsError(machine: string, operation: string, path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new NotFoundError(machine, operation, path, err);
  if (code === 'EACCES' || code === 'EPERM') return new PermissionError(machine, operation, path, err);
  return new ConnectionError(machine, operation, 'remote', `${(err as Error).message}`, { cause: err, path });
}
