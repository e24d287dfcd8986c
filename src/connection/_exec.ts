/** Helpers shared by local and SSH exec: shell quoting and output collection. */
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { setLongTimeout } from '../_long-timer.js';
import type { ExecOptions, ExecResult } from './connection.js';
import { ConnectionError } from './errors.js';

/** Quotes one word for a POSIX shell so it arrives literally, whatever it contains. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The shell command line that runs `command args` with `cwd` and `env`, every word quoted. */
export function remoteCommandLine(command: string, args: string[], options: ExecOptions): string {
  const words = [command, ...args].map(shellQuote).join(' ');
  const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${shellQuote(v)}`);
  const run = env.length > 0 ? `env ${env.join(' ')} ${words}` : `exec ${words}`;
  return options.cwd ? `cd -- ${shellQuote(cdOperand(options.cwd))} && ${run}` : run;
}

/**
 * A directory operand `cd` takes literally. `--` stops `-P`/`-L` being options, but `cd -- -` still means
 * $OLDPWD (POSIX), and a plain relative name is looked up in $CDPATH first; `./` avoids both.
 */
function cdOperand(dir: string): string {
  return dir.startsWith('/') || dir.startsWith('./') || dir.startsWith('../') ? dir : `./${dir}`;
}

/** The `aborted` ConnectionError of an exec whose AbortSignal fired (its reason is the cause). */
export function abortedError(machine: string, signal: AbortSignal): ConnectionError {
  return new ConnectionError(machine, 'exec', 'aborted', 'the command was aborted', { cause: signal.reason });
}

/** A started command as exec needs it: local ChildProcess and ssh2 channels both fit. */
export interface RunningCommand {
  stdin: Writable | null;
  stdout: Readable | null;
  stderr: Readable | null;
  kill(signal?: NodeJS.Signals): unknown;
  on(
    event: 'close',
    listener: (code: number | null, signal: NodeJS.Signals | string | null) => void,
  ): unknown;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
}

/**
 * Feeds stdin, collects stdout/stderr, and settles when the command ends, or rejects on timeout/abort
 * as soon as it has called `child.kill()` (which kills the command's process group, possibly
 * asynchronously). Spawn failures become exit codes 127/126, as a shell reports them. `cleanStderr`
 * post-processes the collected stderr (SSH strips its pid marker).
 */
export function collectExec(
  machine: string,
  child: RunningCommand,
  options: ExecOptions,
  cleanStderr: (stderr: Buffer) => Buffer = (stderr) => stderr,
): Promise<ExecResult> {
  const { timeout, signal, input } = options;
  return new Promise<ExecResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      timer?.clear();
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const fail = (error: ConnectionError) => {
      child.kill('SIGKILL');
      finish(() => reject(error));
    };
    const onAbort = () => fail(abortedError(machine, signal!));
    const timer =
      timeout !== undefined
        ? setLongTimeout(
            () => fail(new ConnectionError(machine, 'exec', 'timeout', `timed out after ${timeout} ms`)),
            timeout,
          )
        : undefined;
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      const code = e.code === 'ENOENT' ? 127 : e.code === 'EACCES' ? 126 : undefined;
      if (code === undefined)
        finish(() => reject(new ConnectionError(machine, 'exec', 'remote', e.message, { cause: e })));
      else finish(() => resolve({ stdout: '', stderr: `${e.message}\n`, code }));
    });
    child.on('close', (code, sig) => {
      const status = code ?? 128 + (constants.signals[sig as NodeJS.Signals] ?? 0);
      finish(() =>
        resolve({
          stdout: Buffer.concat(out).toString(),
          stderr: cleanStderr(Buffer.concat(err)).toString(),
          code: status,
        }),
      );
    });
  });
}
