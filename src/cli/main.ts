/** The process entry point: the only place that touches process.argv, stdio, signals and exit codes. */
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import { inForegroundProcessGroup } from './_terminal.js';
import { runCli } from './cli.js';
import type { CliContext, Output } from './context.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Runs townlock with this process's arguments and sets the exit code. */
export async function runMain(argv: string[] = process.argv.slice(2)): Promise<void> {
  const ctx: CliContext = {
    argBytes: rawArgBytes(argv),
    env: process.env,
    cwd: process.cwd(),
    stdout: lazyOutput(1, () => process.stdout),
    stderr: lazyOutput(2, () => process.stderr),
    stdin: {
      get isTTY() {
        return isatty(0);
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
  process.exitCode = await runCli(argv, ctx);
}

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
  /** The error that ended the stream. */
  let failed: Error | undefined;
  /** Rejecters of writeBytes promises waiting for 'drain'. */
  const waiting = new Set<(err: Error) => void>();
  const get = () => {
    if (!stream) {
      stream = open();
      stream.on('error', (err: NodeJS.ErrnoException) => {
        failed ??= err;
        if (waiting.size > 0) {
          for (const reject of waiting) reject(err);
          return;
        }
        if (err.code !== 'EPIPE') throw err;
      });
    }
    return stream;
  };
  return {
    write(text) {
      get().write(text);
    },
    writeBytes(bytes) {
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
      return isatty(fd);
    },
  };
}
