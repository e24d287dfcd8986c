/**
 * LocalConnection: this machine, through node:fs and child processes started without a shell.
 * writeFile is atomic and durable (townlock/atomic). A command that cannot be started returns code 127
 * (not found) or 126 (not executable), as a shell would, so local and SSH results compare equal.
 * Commands run in a process group (and session) of their own, so exec's timeout and abort SIGKILL the
 * command and everything it started that stayed in the group. Warning: for the same reason a terminal's
 * Ctrl-C does not reach them, and they have no controlling terminal; stop them with an AbortSignal.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { basename, resolve } from 'node:path';
import { writeFileAtomic } from '../atomic/pending-file.js';
import { BaseConnection, type BaseConnectionOptions } from './_base.js';
import { abortedError, collectExec, spawnFailure } from './_exec.js';
import type { DirEntry } from './_glob.js';
import { checkExec, checkString, checkWriteFile } from './_validate.js';
import type { ExecOptions, ExecResult, FileStat } from './connection.js';
import { ConnectionError, NotFoundError, PermissionError } from './errors.js';

/** node:fs/promises, loaded on the first file operation (it pulls in Node's stream stack, ~2-3 ms). */
const fsp = () => fs.promises;

/** The local machine. */
export class LocalConnection extends BaseConnection {
  readonly isLocal = true;

  constructor(options: BaseConnectionOptions = {}) {
    super(options?.name ?? 'local', options);
  }

  async readFile(path: string): Promise<Buffer> {
    checkString('path', path);
    return this.#fs('readFile', path, () => fsp().readFile(path));
  }

  async writeFile(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
    checkWriteFile(path, data, options);
    await this.#fs('writeFile', path, () => writeFileAtomic(path, data, options));
  }

  async mkdir(path: string): Promise<void> {
    checkString('path', path);
    await this.#fs('mkdir', path, () => fsp().mkdir(path, { recursive: true }));
  }

  async remove(path: string): Promise<void> {
    checkString('path', path);
    await this.#fs('remove', path, async () => {
      const s = await fsp().lstat(path);
      await (s.isDirectory() ? fsp().rmdir(path) : fsp().unlink(path));
    });
  }

  async removeAll(path: string): Promise<void> {
    checkString('path', path);
    await this.#fs('removeAll', path, () => fsp().rm(path, { recursive: true, force: true }));
  }

  async stat(path: string): Promise<FileStat> {
    checkString('path', path);
    const s = await this.#fs('stat', path, () => fsp().stat(path));
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
      return (await fsp().readdir(path, { withFileTypes: true })).map((e) => ({
        name: e.name,
        isDir: e.isDirectory(),
      }));
    } catch {
      return undefined;
    }
  }

  async exec(command: string, args: string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    checkExec(command, args, options);
    if (options.signal?.aborted) throw abortedError(this.name, options.signal);
    // detached: the child leads a process group (and session) of its own, so a timeout or abort can kill
    // everything it started, not just the child itself.
    // node:child_process costs ~15 ms to load: only exec needs it, so importing townlock does not.
    const { spawn } = await import('node:child_process');
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: options.cwd,
        env: { ...process.env, ...options.env },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: process.platform !== 'win32',
      });
    } catch (err) {
      // Some failures (ENOTDIR: a path through a file) are thrown here rather than emitted.
      const failed = spawnFailure(err as NodeJS.ErrnoException, options.onStderr, command);
      if (failed) return failed;
      throw err;
    }
    const running = {
      stdin: child.stdin,
      stdout: child.stdout,
      stderr: child.stderr,
      kill: () => killGroup(child),
      on: child.on.bind(child),
    };
    return collectExec(this.name, running, options);
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

/** SIGKILLs the process group `child` leads; just the child where there is no group (Windows, spawn failed). */
function killGroup(child: ChildProcess): void {
  try {
    if (child.pid !== undefined && process.platform !== 'win32') {
      process.kill(-child.pid, 'SIGKILL');
      return;
    }
  } catch {
    // the group is gone already: fall back to the child itself
  }
  child.kill('SIGKILL');
}

/** Maps an fs error to the connection error hierarchy. */
function mapFsError(machine: string, operation: string, path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new NotFoundError(machine, operation, path, err);
  if (code === 'EACCES' || code === 'EPERM') return new PermissionError(machine, operation, path, err);
  return new ConnectionError(machine, operation, 'remote', `${(err as Error).message}`, { cause: err, path });
}
