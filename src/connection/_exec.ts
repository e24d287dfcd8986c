/** Helpers shared by local and SSH exec: shell quoting and output collection. */
import { statSync } from 'node:fs';
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

/** Takes a marker out of stderr as it streams (SSH's pid marker); see MarkerFilter in _remote-kill.ts. */
export interface StderrFilter {
  /** Feeds one chunk; returns the bytes that can be passed on now. */
  pass(chunk: Buffer): Buffer;
  /** At the end of stderr: whatever is still held back. */
  end(): Buffer;
}

/** Whether `input` is a readable stream (as opposed to a string or bytes). */
export function isReadableInput(input: ExecOptions['input']): input is NodeJS.ReadableStream {
  return typeof input === 'object' && input !== null && !(input instanceof Uint8Array);
}

/**
 * Feeds stdin (writes a string or bytes, or pipes a stream), delivers stdout/stderr to the
 * `onStdout`/`onStderr` callbacks as they arrive or collects them, and settles when the command ends,
 * or rejects on timeout/abort as soon as it has called `child.kill()` (which kills the command's
 * process group, possibly asynchronously). A callback that throws, a promise it returns that rejects,
 * or an error of the input stream also kills the command and rejects with that error. While a promise a
 * callback returned is pending, its stream is paused (backpressure: the command blocks once the pipe or
 * the SSH window is full). Spawn failures become exit codes 127/126, as a shell reports them.
 * `stderrFilter` takes SSH's pid marker out of stderr, streamed or collected.
 */
export function collectExec(
  machine: string,
  child: RunningCommand,
  options: ExecOptions,
  stderrFilter?: StderrFilter,
): Promise<ExecResult> {
  const { timeout, signal, input, onStdout, onStderr } = options;
  return new Promise<ExecResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const stream = isReadableInput(input) ? input : undefined;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      timer?.clear();
      signal?.removeEventListener('abort', onAbort);
      if (stream) {
        stream.off('error', fail);
        if (child.stdin) stream.unpipe(child.stdin);
      }
      // Anything still arriving (after a kill) is dropped, and a stream paused for a slow callback
      // drains, so pipes and channels close.
      child.stdout?.resume();
      child.stderr?.resume();
      fn();
    };
    const fail = (error: unknown) => {
      if (settled) return;
      child.kill('SIGKILL');
      finish(() => reject(error));
    };

    /**
     * Hands each chunk of `source` to `callback` (pausing the source while a promise it returned is
     * pending) or to `sink`; resolves once the source has ended and everything was handed over.
     */
    const drain = (
      source: Readable | null,
      callback: ((chunk: Buffer) => unknown) | undefined,
      sink: Buffer[],
      filter?: StderrFilter,
    ): Promise<void> => {
      if (!source) return Promise.resolve();
      let last: Promise<unknown> = Promise.resolve();
      const hand = (bytes: Buffer) => {
        if (settled || bytes.length === 0) return;
        if (!callback) {
          sink.push(bytes);
          return;
        }
        let r: unknown;
        try {
          r = callback(bytes);
        } catch (e) {
          fail(e);
          return;
        }
        if (typeof (r as PromiseLike<unknown> | undefined)?.then === 'function') {
          source.pause();
          last = Promise.resolve(r as PromiseLike<unknown>).then(
            () => {
              if (!settled) source.resume();
            },
            (e) => fail(e),
          );
        }
      };
      source.on('data', (chunk: Buffer) => hand(filter ? filter.pass(chunk) : chunk));
      return new Promise<void>((done) => {
        let ended = false;
        const onEnd = () => {
          if (ended) return;
          ended = true;
          if (filter) hand(filter.end());
          void last.then(() => done());
        };
        source.once('end', onEnd);
        source.once('close', onEnd);
      });
    };
    const outDone = drain(child.stdout, onStdout, out);
    const errDone = drain(child.stderr, onStderr, err, stderrFilter);

    // The command may exit or close its stdin before reading all of it (EPIPE): not an error.
    child.stdin?.on('error', () => {});
    if (stream && child.stdin) {
      stream.on('error', fail);
      // pipe() pauses the source while the command's stdin is full and ends stdin at the source's end.
      stream.pipe(child.stdin);
    } else {
      child.stdin?.end(stream ? '' : (input ?? ''));
    }

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
      const result = spawnFailure(e, onStderr);
      if (result) finish(() => resolve(result));
      else finish(() => reject(new ConnectionError(machine, 'exec', 'remote', e.message, { cause: e })));
    });
    child.on('close', (code, sig) => {
      const status = code ?? 128 + (constants.signals[sig as NodeJS.Signals] ?? 0);
      // SSH's close can come before stderr has been read to its end: wait for both streams.
      void Promise.all([outDone, errDone]).then(() =>
        finish(() =>
          resolve({
            stdout: Buffer.concat(out).toString(),
            stderr: Buffer.concat(err).toString(),
            code: status,
          }),
        ),
      );
    });
  });
}

/**
 * The result of a command that could not be started, as a shell reports it: 127 (not found) or 126
 * (not executable), its words on stderr (not Node's "spawn x ENOENT"), sent where the command's stderr
 * would have gone. Undefined for any other failure.
 */
export function spawnFailure(
  e: NodeJS.ErrnoException,
  onStderr: ExecOptions['onStderr'],
  command?: string,
): ExecResult | undefined {
  const code = e.code === 'ENOENT' ? 127 : e.code === 'EACCES' || e.code === 'ENOTDIR' ? 126 : undefined;
  if (code === undefined) return undefined;
  const message = `${shellWords(e, command)}\n`;
  if (onStderr) {
    try {
      void Promise.resolve(onStderr(Buffer.from(message))).catch(() => {});
    } catch {
      // the command never ran: the exit code says enough
    }
  }
  return { stdout: '', stderr: onStderr ? '' : message, code };
}

/** What a shell says when it cannot run a command: "x: command not found", "/a/x: is a directory"... */
function shellWords(e: NodeJS.ErrnoException, given?: string): string {
  const command = e.path ?? given ?? 'command';
  if (e.code === 'ENOENT')
    return `${command}: ${command.includes('/') ? 'no such file or directory' : 'command not found'}`;
  if (e.code === 'ENOTDIR') return `${command}: not a directory`;
  let directory = false;
  try {
    directory = command.includes('/') && statSync(command).isDirectory();
  } catch {
    // it went away meanwhile: permission denied is still what happened
  }
  return `${command}: ${directory ? 'is a directory' : 'permission denied'}`;
}
