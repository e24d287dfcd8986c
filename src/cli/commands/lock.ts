/** `townlock lock ...`: run a command under a lock (like flock(1)), show holders, clean unheld lock files. */

import { readdir, stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { cleanStaleLocks } from '../../filelock/clean.js';
import type { LockTimeoutError } from '../../filelock/errors.js';
import { holdersOfLockFile, type LockHolder, lockHolders } from '../../filelock/holders.js';
import { FileLock } from '../../filelock/lock.js';
import { lockPathFor } from '../../filelock/options.js';
import { parse, positionals, splitAtDashDash } from '../args.js';
import type { CliContext } from '../context.js';
import { EXIT, type ExitCode, InputError, isOsError, RunError, UsageError } from '../errors.js';
import { printError, printJson, printTable } from '../output.js';
import type { Command } from './types.js';

export const lockRun: Command = {
  path: ['lock', 'run'],
  summary: 'Run a command while holding the lock on FILE (flock(1) flags and exit codes)',
  usage:
    "townlock lock run [-s|-x] [-n] [-w SECONDS] [-E CODE] FILE -- COMMAND [ARGS...]\n       townlock lock run [options] FILE -c 'shell command'",
  example: 'townlock lock run -w 10 state.json -- ./update-state.sh',
  details: `Takes the same lock as withWriteLock(FILE) (-x, the default) or withReadLock(FILE) (-s): the lock
file is .gastown/locks/<name>.lock beside FILE, shared with Node code, the Go tool and flock(1).

  -x, --exclusive            exclusive (write) lock (default)
  -s, --shared               shared (read) lock
  -n, --nonblock             fail at once if the lock is busy
  -w, --wait, --timeout SEC  fail if not acquired within SEC seconds (fractions allowed)
  -E, --conflict-exit-code N exit code when the lock is busy (default 1)
  -c, --command CMD          run CMD with /bin/sh -c

Exit status: the command's own; 128+N if it died of signal N; the conflict code (1) when -n or -w
gave up; 66 if the lock file cannot be opened or created; 69 if the command is not found or cannot be
run; 64 for usage errors (see townlock --help for the whole table). Signals sent to townlock
(INT, TERM, HUP, QUIT, USR1, USR2) are forwarded to the command; the lock is held until it exits.`,
  async run(args, ctx): Promise<ExitCode> {
    const [before, after] = splitAtDashDash(args);
    const { values, positionals: rest } = parse(before, {
      shared: { type: 'boolean', short: 's' },
      exclusive: { type: 'boolean', short: 'x' },
      nonblock: { type: 'boolean', short: 'n' },
      wait: { type: 'string', short: 'w' },
      timeout: { type: 'string' },
      'conflict-exit-code': { type: 'string', short: 'E' },
      command: { type: 'string', short: 'c' },
    });
    if (values.shared && values.exclusive) throw new UsageError('-s and -x cannot be used together');
    const [file, ...inline] = rest;
    if (!file) throw new UsageError('missing FILE');
    let argv: string[];
    if (values.command !== undefined) {
      if (after || inline.length > 0) throw new UsageError('give either -c COMMAND or -- COMMAND, not both');
      argv = ['/bin/sh', '-c', values.command];
    } else {
      argv = after ?? inline;
      if (argv.length === 0) throw new UsageError('missing COMMAND (after --, or -c)');
    }
    const conflictCode = integerOption(values['conflict-exit-code'], '-E', 0, 255) ?? EXIT.failure;
    const waitSeconds = values.wait ?? values.timeout;
    const seconds = waitSeconds === undefined ? undefined : numberOption(waitSeconds, '-w');
    // flock(1) semantics: wait forever by default; -n or -w 0 means a single attempt.
    const timeout = values.nonblock || seconds === 0 ? -1 : seconds === undefined ? 0 : seconds * 1000;

    const abort = new AbortController();
    let lock: FileLock;
    try {
      lock = new FileLock(file, {
        type: values.shared ? 'shared' : 'exclusive',
        timeout,
        signal: abort.signal,
      });
    } catch (err) {
      throw isOsError(err) ? new InputError('the lock file of', resolve(ctx.cwd, file), err) : err;
    }
    const stopWaiting = ctx.onSignal((signal) => abort.abort(signal));
    try {
      await lock.lock();
    } catch (err) {
      if (isOsError(err)) throw new InputError('lock file', lock.lockPath, err);
      const code = (err as { code?: string }).code;
      if (code === 'ERR_LOCK_TIMEOUT') {
        const { holderPid } = err as LockTimeoutError;
        const holder = holderPid === undefined ? '' : ` (held by pid ${holderPid})`;
        const what = timeout < 0 ? `${lock.lockPath} is busy${holder}` : (err as Error).message;
        ctx.stderr.write(`townlock: ${what} [ERR_LOCK_TIMEOUT]\n`);
        return conflictCode;
      }
      if (code === 'ERR_LOCK_ABORTED') return 128 + signalNumber(abort.signal.reason as NodeJS.Signals);
      throw err;
    } finally {
      stopWaiting();
    }
    try {
      return await runChild(argv, ctx);
    } finally {
      await lock.unlock();
    }
  },
};

/** Runs argv with inherited stdio, forwarding signals; resolves with its exit status (shell style). */
function runChild([command, ...args]: string[], ctx: CliContext): Promise<ExitCode> {
  return new Promise<ExitCode>((resolvePromise) => {
    const child = ctx.spawn(command!, args, {
      stdio: 'inherit',
      env: ctx.env as NodeJS.ProcessEnv,
      cwd: ctx.cwd,
    });
    const stopForwarding = ctx.onSignal((signal) => child.kill(signal));
    child.on('error', (err: NodeJS.ErrnoException) => {
      stopForwarding();
      resolvePromise(printError(ctx, new RunError(command!, err)));
    });
    child.on('exit', (code, signal) => {
      stopForwarding();
      resolvePromise(code ?? 128 + signalNumber(signal ?? 'SIGTERM'));
    });
  });
}

/** The number of a signal, for the 128+N exit status. */
function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 15;
}

/** Parses an integer option in a range, or throws a UsageError naming it. */
function integerOption(
  value: string | undefined,
  name: string,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${name} needs an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

/** Parses a non-negative number of seconds, or throws a UsageError naming the option. */
function numberOption(value: string, name: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new UsageError(`${name} needs a number of seconds, got ${JSON.stringify(value)}`);
  return n;
}

/** A lock file and who holds it, as `lock status` reports it. */
interface LockStatus {
  lockPath: string;
  holders: LockHolder[];
}

export const lockStatus: Command = {
  path: ['lock', 'status'],
  summary: 'Show who holds which locks (like lslocks)',
  usage: 'townlock lock status [FILE|DIR] [--json]',
  example: 'townlock lock status state.json',
  details: `FILE: the lock protecting FILE. DIR (default: the current directory): every lock file in
DIR/.gastown/locks (or in DIR itself if it is a lock directory). Only held locks are listed in the table;
--json lists every lock file with its holders.`,
  async run(args, ctx): Promise<ExitCode> {
    const { values, positionals: rest } = parse(args, { json: { type: 'boolean' } });
    const [target = ctx.cwd] = rest.length > 1 ? positionals(rest, ['FILE|DIR']) : rest;
    const path = resolve(ctx.cwd, target);
    const isDir = (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
    let statuses: LockStatus[];
    if (isDir) {
      const dir = await lockDirOf(path);
      const names = (await readdir(dir).catch(() => [] as string[]))
        .filter((n) => n.endsWith('.lock'))
        .sort();
      statuses = names.map((n) => ({ lockPath: join(dir, n), holders: holdersOfLockFile(join(dir, n)) }));
    } else {
      statuses = [{ lockPath: lockPathFor(path), holders: await lockHolders(path) }];
    }
    if (values.json) {
      printJson(ctx.stdout, { locks: statuses });
      return EXIT.ok;
    }
    const rows = statuses.flatMap((s) =>
      s.holders.map((h) => [s.lockPath, String(h.pid), h.mode, h.since ?? '-', h.command ?? '-']),
    );
    if (rows.length === 0)
      ctx.stdout.write(
        isDir
          ? `no locks held (${statuses.length} lock file${statuses.length === 1 ? '' : 's'})\n`
          : `not locked: ${statuses[0]!.lockPath}\n`,
      );
    else printTable(ctx, ['LOCK', 'PID', 'MODE', 'SINCE', 'COMMAND'], rows);
    return EXIT.ok;
  },
};

export const lockClean: Command = {
  path: ['lock', 'clean'],
  summary: 'Delete lock files that nobody holds',
  usage: 'townlock lock clean [DIR]',
  example: 'townlock lock clean ~/town',
  details:
    'DIR (default: the current directory): cleans DIR/.gastown/locks, or DIR itself if it is a .gastown/locks directory.\nNothing else is ever touched; a DIR that does not exist is an error.',
  async run(args, ctx): Promise<ExitCode> {
    const { positionals: rest } = parse(args, {});
    const [target = ctx.cwd] = rest.length > 1 ? positionals(rest, ['DIR']) : rest;
    const dir = resolve(ctx.cwd, target);
    const removed = await cleanStaleLocks(dir);
    ctx.stdout.write(`removed ${removed} unused lock file${removed === 1 ? '' : 's'} from ${dir}\n`);
    return EXIT.ok;
  },
};

/** DIR/.gastown/locks if it exists, else DIR (which may itself be a lock directory). */
async function lockDirOf(dir: string): Promise<string> {
  const nested = join(dir, '.gastown', 'locks');
  return (await stat(nested).catch(() => undefined))?.isDirectory() ? nested : dir;
}
