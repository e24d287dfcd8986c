/**
 * The Connection interface: files, commands and tmux on one machine, the same for local and SSH.
 *
 * Paths are absolute, or relative to the working directory (local) or the login directory (SSH).
 * exec never goes through a shell locally; over SSH every argument is quoted for the remote shell, so it
 * arrives literally. A non-zero exit status is a result, not an error.
 */

/** What {@link Connection.stat} reports. */
export interface FileStat {
  /** The last path component. */
  name: string;
  size: number;
  /** Permission bits (and file type bits), as st_mode. */
  mode: number;
  mtime: Date;
  isDir: boolean;
}

/** Options for {@link Connection.exec}. */
export interface ExecOptions {
  /** Working directory for the command. */
  cwd?: string;
  /** Extra environment variables (names must be `[A-Za-z_][A-Za-z0-9_]*`). */
  env?: Record<string, string>;
  /**
   * After this many ms (positive, finite; any size), SIGKILL the command and every process of its process
   * group, and reject with a `timeout` ConnectionError.
   */
  timeout?: number;
  /** When it aborts, SIGKILL the command and its process group and reject with an `aborted` ConnectionError. */
  signal?: AbortSignal;
  /**
   * The command's stdin. A string or bytes are written and stdin is closed. A readable stream (a Node
   * Readable, a file stream, the standard input) is piped in as it produces data, with backpressure
   * (read no faster than the command takes it), and stdin is closed at the stream's end. When the
   * command ends, the stream is unpiped and left as it is: exec neither closes it nor reads what the
   * command did not take. An `'error'` of the stream kills the command (as a timeout does) and exec
   * rejects with that error. Without `input` the command's stdin is closed at once (it reads end-of-file).
   */
  input?: string | Uint8Array | NodeJS.ReadableStream;
  /**
   * Streams stdout: each chunk is passed to this function as it arrives (any size, split anywhere, raw
   * bytes) and not collected, so the result's `stdout` is `''`. If the function returns a promise, stdout is
   * paused until it settles: a slow consumer slows the command down (it blocks once the pipe, or the SSH
   * channel's window, is full) instead of output piling up in memory. A function that returns nothing
   * receives output as fast as the command writes it: buffering is then its own business. If it throws,
   * or its promise rejects, the command is killed (as on timeout) and exec rejects with that error.
   * exec settles only after the last chunk has been handed over (and its promise, if any, settled).
   */
  onStdout?: (chunk: Buffer) => void | PromiseLike<void>;
  /**
   * Streams stderr, as {@link ExecOptions.onStdout} streams stdout; the result's `stderr` is then `''`.
   * Over SSH, the pid marker line (docs/connection.md, exec) is taken out first: output is held
   * back only until that line, which the remote shell prints before the command starts, has passed.
   * Locally, a command that cannot be started (exit code 127/126) reports why here.
   */
  onStderr?: (chunk: Buffer) => void | PromiseLike<void>;
}

/** The outcome of a finished command. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; 128+N when killed by signal N. */
  code: number;
}

/** Options for {@link Connection.tmuxNewSession}. */
export interface TmuxSessionOptions {
  /** Start directory. */
  cwd?: string;
  /** Command to run in the first window (a shell command line for tmux). */
  command?: string;
}

/** A machine: its files, its commands and its tmux sessions. */
export interface Connection {
  /** The machine's name in the registry. */
  readonly name: string;
  /** True for the local machine. */
  readonly isLocal: boolean;

  /** Reads a whole file. NotFoundError / PermissionError as appropriate. */
  readFile(path: string): Promise<Buffer>;
  /** Replaces a file: atomically (temp file + rename) on both sides. */
  writeFile(path: string, data: string | Uint8Array, options?: { mode?: number }): Promise<void>;
  /** Creates a directory and its parents; succeeds if it exists. */
  mkdir(path: string): Promise<void>;
  /** Removes a file or an empty directory. */
  remove(path: string): Promise<void>;
  /** Removes a file or a directory tree; succeeds if nothing is there. */
  removeAll(path: string): Promise<void>;
  /** Describes a path (symlinks followed). */
  stat(path: string): Promise<FileStat>;
  /** Whether the path exists. */
  exists(path: string): Promise<boolean>;
  /** Paths matching a pattern with `*`, `?`, `[...]` and `**`, sorted. */
  glob(pattern: string): Promise<string[]>;

  /** Runs a command (never through a local shell) and collects its output. */
  exec(command: string, args?: string[], options?: ExecOptions): Promise<ExecResult>;

  /** Starts a detached tmux session. */
  tmuxNewSession(name: string, options?: TmuxSessionOptions): Promise<void>;
  /** Kills a tmux session. */
  tmuxKillSession(name: string): Promise<void>;
  /** Types `keys` literally into the session, then Enter unless `enter` is false. */
  tmuxSendKeys(session: string, keys: string, options?: { enter?: boolean }): Promise<void>;
  /** The visible text of the session's active pane. */
  tmuxCapturePane(session: string): Promise<string>;
  /** Whether a session of exactly that name exists. */
  tmuxHasSession(name: string): Promise<boolean>;
  /** Names of all sessions (empty when no tmux server runs). */
  tmuxListSessions(): Promise<string[]>;

  /** Closes the connection; idempotent. */
  close(): Promise<void>;
  /** Alias of close(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}
