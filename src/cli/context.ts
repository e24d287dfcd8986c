/** What a CLI command may use: everything it touches in the outside world comes through here. */
import type { ChildProcess, SpawnOptions } from 'node:child_process';

/** A place to write text (stdout or stderr). */
export interface Output {
  write(text: string): void;
  /** True when writing to a terminal (enables colour unless NO_COLOR is set). */
  isTTY?: boolean;
  /**
   * Calls `handler` once the reader has gone (a closed pipe: `townlock log tail -f | head -1`), so that
   * a command that would write forever can stop; returns the unsubscribe function.
   */
  onClosed?(handler: () => void): () => void;
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
