/** What a CLI command may use: everything it touches in the outside world comes through here. */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import type { Readable } from 'node:stream';

/** A place to write text (stdout or stderr). */
export interface Output {
  write(text: string): void;
  /**
   * Writes bytes exactly as given: only for the output of a command `machine exec` runs (everything
   * townlock says itself goes through output.ts). Returns undefined when the caller may write on at once,
   * or a promise when the stream's buffer is full: it resolves once the buffer has drained, and rejects
   * with the error that ended the stream (`EPIPE`: the reader went away). After such an error every
   * call rejects with it.
   */
  writeBytes(bytes: Uint8Array): Promise<void> | undefined;
  /** True when writing to a terminal (enables colour unless NO_COLOR is set). */
  isTTY?: boolean;
  /**
   * Calls `handler` once the reader has gone (a closed pipe: `townlock log tail -f | head -1`), so that
   * a command that would write forever can stop; returns the unsubscribe function.
   */
  onClosed?(handler: () => void): () => void;
}

/** townlock's standard input. */
export interface Input {
  /** True when stdin is a terminal (`machine exec` then gives the command no input). */
  readonly isTTY: boolean;
  /** The byte stream, opened on the first call; destroy it when done so the process can exit. */
  stream(): Readable;
}

/** The environment a command runs in; `cli/main.ts` builds it from `process`. */
export interface CliContext {
  /**
   * The raw bytes of each argument (index as in the argv given to runCli) that is not valid UTF-8, which
   * Node decodes lossily; undefined entries (or no array) for text. File arguments use them as paths.
   */
  argBytes?: (Buffer | undefined)[];
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: Output;
  stderr: Output;
  /** Standard input (`machine exec` passes it to the command). Absent: none, as on a terminal. */
  stdin?: Input;
  /** Starts a child process (lock run, machine exec). */
  spawn(command: string, args: string[], options: SpawnOptions): ChildProcess;
  /** Subscribes to the signals a wrapper must forward; returns the unsubscribe function. */
  onSignal(handler: (signal: NodeJS.Signals) => void): () => void;
  /**
   * Whether townlock is its terminal's foreground process group now: then the terminal delivered a
   * Ctrl-C (SIGINT) or Ctrl-\ (SIGQUIT) to the children in its group too. Absent: never.
   */
  inForegroundProcessGroup?(): Promise<boolean>;
}
