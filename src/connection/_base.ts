/**
 * What local and SSH connections share: glob and the tmux commands, written once on top of the two
 * primitives each side implements (exec and directory listing).
 */

import { type DirEntry, globWith } from './_glob.js';
import { checkBaseOptions, checkString, checkTmuxNewSession, checkTmuxSendKeys } from './_validate.js';
import type { Connection, ExecOptions, ExecResult, FileStat, TmuxSessionOptions } from './connection.js';
import { ConnectionError } from './errors.js';

/** Options every connection accepts. */
export interface BaseConnectionOptions {
  /** The machine's name (used in error messages). */
  name?: string;
  /** tmux server socket path (`tmux -S`); default: tmux's own default server. */
  tmuxSocket?: string;
}

/** Shared implementation of glob and tmux; subclasses provide the primitives. */
export abstract class BaseConnection implements Connection {
  readonly name: string;
  abstract readonly isLocal: boolean;
  readonly #tmuxSocket: string | undefined;

  protected constructor(name: string, options: BaseConnectionOptions) {
    checkBaseOptions(options);
    this.name = name;
    this.#tmuxSocket = options.tmuxSocket;
  }

  abstract readFile(path: string): Promise<Buffer>;
  abstract writeFile(path: string, data: string | Uint8Array, options?: { mode?: number }): Promise<void>;
  abstract mkdir(path: string): Promise<void>;
  abstract remove(path: string): Promise<void>;
  abstract removeAll(path: string): Promise<void>;
  abstract stat(path: string): Promise<FileStat>;
  abstract exec(command: string, args?: string[], options?: ExecOptions): Promise<ExecResult>;
  abstract close(): Promise<void>;
  /** Lists a directory for glob; undefined when it is missing or not a directory. */
  protected abstract listDir(path: string): Promise<DirEntry[] | undefined>;

  async exists(path: string): Promise<boolean> {
    checkString('path', path);
    try {
      await this.stat(path);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_NOT_FOUND') return false;
      throw err;
    }
  }

  async glob(pattern: string): Promise<string[]> {
    checkString('pattern', pattern);
    return globWith(pattern, (dir) => this.listDir(dir));
  }

  async tmuxNewSession(name: string, options: TmuxSessionOptions = {}): Promise<void> {
    checkTmuxNewSession(name, options);
    const args = ['new-session', '-d', '-s', name];
    if (options.cwd) args.push('-c', options.cwd);
    if (options.command) args.push(options.command);
    await this.#tmux('tmuxNewSession', args);
  }

  async tmuxKillSession(name: string): Promise<void> {
    checkString('name', name);
    await this.#tmux('tmuxKillSession', ['kill-session', '-t', `=${name}`]);
  }

  async tmuxSendKeys(session: string, keys: string, options: { enter?: boolean } = {}): Promise<void> {
    checkTmuxSendKeys(session, keys, options);
    await this.#tmux('tmuxSendKeys', ['send-keys', '-t', `=${session}:`, '-l', '--', keys]);
    if (options.enter !== false)
      await this.#tmux('tmuxSendKeys', ['send-keys', '-t', `=${session}:`, 'Enter']);
  }

  async tmuxCapturePane(session: string): Promise<string> {
    checkString('session', session);
    return (await this.#tmux('tmuxCapturePane', ['capture-pane', '-p', '-t', `=${session}:`])).stdout;
  }

  async tmuxHasSession(name: string): Promise<boolean> {
    checkString('name', name);
    return (await this.exec('tmux', [...this.#socketArgs(), 'has-session', '-t', `=${name}`])).code === 0;
  }

  async tmuxListSessions(): Promise<string[]> {
    const r = await this.exec('tmux', [...this.#socketArgs(), 'list-sessions', '-F', '#{session_name}']);
    if (r.code !== 0) {
      // No server (or no socket yet) simply means no sessions.
      if (/no server running|error connecting|No such file/i.test(r.stderr)) return [];
      throw new ConnectionError(
        this.name,
        'tmuxListSessions',
        'remote',
        r.stderr.trim() || `tmux exited ${r.code}`,
      );
    }
    return r.stdout.split('\n').filter(Boolean);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Runs a tmux subcommand; a non-zero exit becomes a ConnectionError carrying tmux's message. */
  async #tmux(operation: string, args: string[]): Promise<ExecResult> {
    const r = await this.exec('tmux', [...this.#socketArgs(), ...args]);
    if (r.code !== 0) {
      throw new ConnectionError(
        this.name,
        operation,
        'remote',
        r.stderr.trim() || `tmux exited with ${r.code}`,
      );
    }
    return r;
  }

  /** `-S socket` when a socket is configured. */
  #socketArgs(): string[] {
    return this.#tmuxSocket ? ['-S', this.#tmuxSocket] : [];
  }
}
