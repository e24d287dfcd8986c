/** The process entry point: the only place that touches process.argv, stdio, signals and exit codes. */
import { isUtf8 } from 'node:buffer';
import { fstatSync, readFileSync, type Stats, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { inForegroundProcessGroup } from './_terminal.js';
import { runCli } from './cli.js';
import type { CliContext, Output } from './context.js';
import { InputError } from './errors.js';

/**
 * Every signal whose default action would end townlock while it holds a lock for a command (and that a
 * process may catch): lock run forwards them to the command instead of dying and releasing the lock
 * while the command still runs. SIGKILL and SIGSTOP cannot be caught; fault signals (SEGV, BUS...) are not
 * sent by others.
 */
const FORWARDED = (
  [
    'SIGINT',
    'SIGTERM',
    'SIGHUP',
    'SIGQUIT',
    'SIGUSR1',
    'SIGUSR2',
    'SIGALRM',
    'SIGVTALRM',
    'SIGPROF',
    'SIGXCPU',
    'SIGXFSZ',
    'SIGPWR',
    'SIGSTKFLT',
  ] as NodeJS.Signals[]
).filter((s) => s in constants.signals);

/** Runs townlock with this process's arguments and sets the exit code. */
export async function runMain(argv: string[] = process.argv.slice(2)): Promise<void> {
  const ctx: CliContext = {
    argBytes: rawArgBytes(argv),
    env: process.env,
    // Read when a command resolves a relative path: a deleted working directory fails only those
    // commands, each with one line and exit 66, never --version or a command given absolute paths.
    get cwd() {
      try {
        return process.cwd();
      } catch (err) {
        throw new InputError('', 'the current directory', err as NodeJS.ErrnoException);
      }
    },
    stdout: lazyOutput(1, () => process.stdout),
    stderr: lazyOutput(2, () => process.stderr),
    stdin: {
      get isTTY() {
        return isTerminal(0);
      },
      // process.stdin is created on first access: only machine exec reads it.
      stream: () => process.stdin,
    },
    // Loaded on first use: node:child_process costs ~15 ms, which only lock run pays.
    spawn: (command, args, options) => childProcess().spawn(command, args, options),
    inForegroundProcessGroup,
    onSignal(handler) {
      for (const s of FORWARDED) process.on(s, handler);
      return () => {
        for (const s of FORWARDED) process.off(s, handler);
      };
    },
  };
  const code = await runCli(argv, ctx);
  // A write that failed (ENOSPC, EIO) set 71 already, or sets it when it fails later.
  if (!outputFailed) process.exitCode = code;
}

/** Whether a write to stdout or stderr failed (other than the reader going away). */
let outputFailed = false;

/**
 * The raw bytes of the arguments that are not valid UTF-8, aligned with `argv`: Node decodes such
 * arguments lossily (U+FFFD), so a file name like $'data\xff' would name another file. Linux keeps the
 * bytes in /proc/self/cmdline, whose last entries are this process's arguments. Undefined when every
 * argument is text, or when the bytes cannot be matched to `argv` with certainty.
 */
function rawArgBytes(argv: string[]): (Buffer | undefined)[] | undefined {
  if (process.platform !== 'linux' || !argv.some((a) => a.includes('\uFFFD'))) return undefined;
  let cmdline: Buffer;
  try {
    cmdline = readFileSync('/proc/self/cmdline');
  } catch {
    return undefined;
  }
  const entries: Buffer[] = [];
  for (let start = 0; start < cmdline.length; ) {
    const end = cmdline.indexOf(0, start);
    entries.push(cmdline.subarray(start, end < 0 ? cmdline.length : end));
    start = end < 0 ? cmdline.length : end + 1;
  }
  if (entries.length < argv.length) return undefined;
  const mine = entries.slice(entries.length - argv.length);
  if (mine.some((bytes, i) => bytes.toString('utf8') !== argv[i])) return undefined;
  return mine.map((bytes) => (isUtf8(bytes) ? undefined : Buffer.from(bytes)));
}

/**
 * Whether `fd` is a terminal. node:tty (and the node:net it loads, ~5 ms) is loaded only for a character
 * device other than /dev/null: a pipe or a file, what scripts give townlock, is never a terminal.
 */
function isTerminal(fd: number): boolean {
  let stat: Stats;
  try {
    stat = fstatSync(fd);
  } catch {
    return false; // closed: not a terminal
  }
  if (!stat.isCharacterDevice()) return false;
  // /dev/null (a script's `>/dev/null`) is a character device too, and never a terminal. When it cannot
  // be examined, isatty decides.
  let devNull: Stats | undefined;
  try {
    devNull = statSync('/dev/null', { throwIfNoEntry: false });
  } catch {
    devNull = undefined;
  }
  if (devNull?.isCharacterDevice() && devNull.rdev === stat.rdev) return false;
  return (createRequire('/')('node:tty') as typeof import('node:tty')).isatty(fd);
}

/** node:child_process, loaded synchronously on first use (ctx.spawn is synchronous). */
function childProcess(): typeof import('node:child_process') {
  // A builtin resolves from any base path; '/' keeps this free of import.meta (the CLI is also bundled).
  return createRequire('/')('node:child_process');
}

/**
 * stdout or stderr, created on the first write: on a pipe Node builds a socket for it (several ms), and
 * lock run usually prints nothing of its own. A closed pipe (`townlock machine list | head -1`) is the
 * reader's choice, not an error to report; writeBytes hands it (and any other write error) to its caller.
 */
function lazyOutput(fd: 1 | 2, open: () => NodeJS.WriteStream): Output {
  let stream: NodeJS.WriteStream | undefined;
  /** The error that ended the stream (EPIPE: the reader went away). */
  let failed: NodeJS.ErrnoException | undefined;
  const onClosed = new Set<() => void>();
  /** Rejecters of writeBytes promises waiting for 'drain'. */
  const waiting = new Set<(err: Error) => void>();
  /** writeBytes was used: its caller (machine exec) reports write errors itself. */
  let raw = false;
  const get = () => {
    if (!stream) {
      stream = open();
      stream.on('error', (err: NodeJS.ErrnoException) => {
        const first = failed === undefined;
        failed ??= err;
        for (const reject of waiting) reject(err);
        if (!first || raw) return;
        if (err.code === 'EPIPE') {
          for (const handler of onClosed) handler();
          return;
        }
        // One line, as every other error, and EX_OSERR: never the "busy" status 1 or a stack.
        outputFailed = true;
        process.exitCode = 71;
        if (fd === 1) {
          const reason = `${err.message.replace(/^[A-Z]+: /, '').replace(/, write$/, '')}`;
          process.stderr.write(`townlock: cannot write to stdout: ${reason} [${err.code ?? 'EIO'}]\n`);
        }
      });
    }
    return stream;
  };
  return {
    write(text) {
      if (failed) return;
      get().write(text);
    },
    writeBytes(bytes) {
      raw = true;
      const s = get();
      if (failed) return Promise.reject(failed);
      // Files and terminals are written synchronously; a pipe buffers up to its highWaterMark.
      if (s.write(bytes)) return undefined;
      if (failed) return Promise.reject(failed);
      return new Promise<void>((resolve, reject) => {
        const done = (err?: Error) => {
          waiting.delete(onError);
          s.off('drain', onDrain);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = () => done();
        const onError = (err: Error) => done(err);
        waiting.add(onError);
        s.once('drain', onDrain);
      });
    },
    get isTTY() {
      return isTerminal(fd);
    },
    onClosed(handler) {
      onClosed.add(handler);
      if (failed?.code === 'EPIPE') handler();
      return () => onClosed.delete(handler);
    },
  };
}
