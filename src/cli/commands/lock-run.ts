/** `townlock lock run`: run a command while holding a lock, as util-linux flock(1) does. */
import { constants } from 'node:os';
import type { LockTimeoutError } from '../../filelock/errors.js';
import { FileLock } from '../../filelock/lock.js';
import type { ParsedArgs } from '../args.js';
import type { CliContext } from '../context.js';
import { EXIT, type ExitCode, InputError, isOsError, RunError, UsageError } from '../errors.js';
import { printError } from '../output.js';
import type { CommandInput, CommandRun } from '../spec.js';
import { lockArgument } from './_lock-target.js';

export const run: CommandRun = async (args, ctx, input) => {
  const { values } = args;
  if (values.shared && values.exclusive)
    throw new UsageError('-s and -x cannot be used together', 'give one of them (-x is the default)');
  if (args.positionals.length === 0) throw new UsageError('missing FILE', `usage: ${input.usage}`);
  const target = lockArgument(args, 0, ctx.cwd, input, false);
  if (target.kind === 'dir') throw new Error('lockArgument returned a directory for lock run');
  const argv = commandOf(args, input);
  const conflictCode = integerOption(values['conflict-exit-code'], '-E', 0, 255) ?? EXIT.failure;
  const wait = values.wait;
  const seconds = typeof wait === 'string' ? secondsOption(wait, '-w') : undefined;
  // flock(1) semantics: wait forever by default; -n or -w 0 means a single attempt.
  const timeout = values.nonblock || seconds === 0 ? -1 : seconds === undefined ? 0 : seconds * 1000;

  const abort = new AbortController();
  let lock: FileLock;
  try {
    lock = new FileLock(target.path, {
      type: values.shared ? 'shared' : 'exclusive',
      timeout,
      signal: abort.signal,
      isLockFile: target.kind === 'lock-file',
    });
  } catch (err) {
    const what = target.kind === 'lock-file' ? 'lock file' : 'the lock file of';
    throw isOsError(err) ? new InputError(what, target.shown, err) : err;
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
      printError(ctx, Object.assign(new Error(what), { code }));
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
};

/**
 * The command to run: `-c CMD` (before FILE, or right after it as flock(1) takes it), else everything
 * after FILE (a leading `--` dropped).
 */
function commandOf({ values, rest }: ParsedArgs, input: CommandInput): string[] {
  let shell = values.command;
  let argv = rest[0] === '--' ? rest.slice(1) : rest;
  if (rest[0] === '-c' || rest[0] === '--command') {
    if (rest.length !== 2)
      throw new UsageError(`${rest[0]} after FILE takes exactly one argument`, "quote it: -c 'cmd arg...'");
    shell = rest[1];
    argv = [];
  }
  if (typeof shell === 'string') {
    if (argv.length > 0)
      throw new UsageError(
        'give either -c COMMAND or a COMMAND after FILE, not both',
        `usage: ${input.usage}`,
      );
    return ['/bin/sh', '-c', shell];
  }
  if (argv.length === 0) throw new UsageError('missing COMMAND', `usage: ${input.usage}`);
  return argv;
}

/** Signals a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\\). */
const TERMINAL_SIGNALS = new Set<NodeJS.Signals>(['SIGINT', 'SIGQUIT']);

/**
 * Runs argv with inherited stdio, forwarding signals; resolves with its exit status (shell style). The
 * command runs in townlock's process group, as under flock(1): a Ctrl-C typed at the terminal reaches
 * it directly, so INT and QUIT are forwarded only when townlock is not the terminal's foreground group
 * (they came from kill(1), not from the keyboard). Forwarding keeps the order signals arrived in.
 */
function runChild([command, ...args]: string[], ctx: CliContext): Promise<ExitCode> {
  return new Promise<ExitCode>((resolvePromise) => {
    const child = ctx.spawn(command!, args, {
      stdio: 'inherit',
      env: ctx.env as NodeJS.ProcessEnv,
      cwd: ctx.cwd,
    });
    let forwarding = Promise.resolve();
    const forward = async (signal: NodeJS.Signals) => {
      if (TERMINAL_SIGNALS.has(signal) && (await ctx.inForegroundProcessGroup?.())) return;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    const stopForwarding = ctx.onSignal((signal) => {
      forwarding = forwarding.then(() => forward(signal)).catch(() => {});
    });
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
function integerOption(value: string | true | undefined, name: string, min: number, max: number) {
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max)
    throw new UsageError(
      `${name} needs an integer from ${min} to ${max}, got '${value}'`,
      `write e.g. '${name} 75'`,
    );
  return n;
}

/** Parses a non-negative number of seconds, or throws a UsageError naming the option. */
function secondsOption(value: string, name: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new UsageError(
      `${name} needs a number of seconds (0 or more), got '${value}'`,
      `write e.g. '${name} 10' or '${name} 0.5'`,
    );
  return n;
}
