/** `townlock lock run`: run a command while holding a lock, as util-linux flock(1) does. */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { constants } from 'node:os';
import { dirname } from 'node:path';
import type { Etcd } from '../../etcd/etcd.js';
import type { EtcdLock } from '../../etcd/lock.js';
import type { FsPath } from '../../filelock/_target.js';
import type { LockTimeoutError } from '../../filelock/errors.js';
import { FileLock } from '../../filelock/lock.js';
import { isRunning, processTree, signalAll } from '../_descendants.js';
import type { ParsedArgs } from '../args.js';
import type { CliContext } from '../context.js';
import { EXIT, type ExitCode, InputError, isOsError, RunError, UsageError } from '../errors.js';
import { printError, printWarning } from '../output.js';
import type { CommandInput, CommandRun } from '../spec.js';
import { connectEtcd, type EtcdTarget, parseEtcdTarget } from './_etcd.js';
import { lockArgument } from './_lock-target.js';

export const run: CommandRun = async (args, ctx, input) => {
  const { values } = args;
  if (values.shared && values.exclusive)
    throw new UsageError('-s and -x cannot be used together', 'give one of them (-x is the default)');
  const etcd = etcdOption(values.etcd, ctx);
  if (args.positionals.length === 0)
    throw new UsageError(`missing ${etcd ? 'NAME' : 'FILE'}`, `usage: ${etcd ? ETCD_USAGE : input.usage}`);
  const conflictCode = integerOption(values['conflict-exit-code'], '-E', 0, 255) ?? EXIT.failure;
  const wait = values.wait;
  const seconds = typeof wait === 'string' ? secondsOption(wait, '-w') : undefined;
  // flock(1) semantics: wait forever by default; -n or -w 0 means a single attempt.
  const timeout = values.nonblock || seconds === 0 ? -1 : seconds === undefined ? 0 : seconds * 1000;
  const type = values.shared ? 'shared' : 'exclusive';
  if (etcd) {
    for (const flag of ['lock-file', 'protect'] as const)
      if (values[flag])
        throw new UsageError(`--${flag} does not apply to --etcd`, 'an etcd lock is a NAME, not a file');
    const killAfter = secondsOption(
      typeof values['kill-after'] === 'string' ? values['kill-after'] : '10',
      '--kill-after',
    );
    const argv = commandOf(args, { ...input, usage: ETCD_USAGE });
    return runOnEtcd(etcd, args.positionals[0]!, argv, { type, timeout, conflictCode, killAfter }, ctx);
  }
  if (values['kill-after'] !== undefined)
    throw new UsageError('--kill-after applies only with --etcd', 'a file lock cannot be lost while held');
  const target = lockArgument(args, 0, ctx, input, false);
  if (target.kind === 'dir') throw new Error('lockArgument returned a directory for lock run');
  // As flock(1): the directory FILE is in must exist (a typo never creates a tree of directories);
  // only .gastown/locks inside it is created.
  requireDirectoryOf(target.path, target.shown);
  const argv = commandOf(args, input);

  const abort = new AbortController();
  let lock: FileLock;
  try {
    lock = new FileLock(target.path, {
      type,
      timeout,
      signal: abort.signal,
      isLockFile: target.kind === 'lock-file',
    });
  } catch (err) {
    const what = target.kind === 'lock-file' ? 'lock file' : 'the lock file of';
    throw isOsError(err) ? new InputError(what, target.shown, err) : err;
  }
  return underSignals(ctx, abort, async (signals) => {
    try {
      await lock.lock();
    } catch (err) {
      if (isOsError(err)) throw new InputError('lock file', lock.lockPath, err);
      const busy = (holder: string) => `${lock.lockPath} is busy${holder}`;
      return waitFailed(err, ctx, abort.signal, timeout, conflictCode, busy);
    }
    try {
      return await runChild(argv, ctx, signals);
    } finally {
      await lock.unlock();
    }
  });
};

/** Throws InputError (66) unless the directory that holds `path` exists. */
function requireDirectoryOf(path: FsPath, shown: string): void {
  const dir =
    typeof path === 'string' ? dirname(path) : Buffer.from(dirname(path.toString('latin1')), 'latin1');
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir, { throwIfNoEntry: false });
  } catch (err) {
    throw isOsError(err) ? new InputError('directory', dirname(shown), err) : err;
  }
  if (!st?.isDirectory()) {
    const code = st ? 'ENOTDIR' : 'ENOENT';
    const why = st ? 'not a directory' : 'no such file or directory';
    throw new InputError('directory', dirname(shown), Object.assign(new Error(why), { code }));
  }
}

/** The usage line of `lock run --etcd`, for its usage errors. */
const ETCD_USAGE = 'townlock lock run [options] --etcd ENDPOINTS[/PREFIX] NAME COMMAND [ARG...]';

/** What `lock run` does with a lock it could not take: the conflict code, 128+N, or the error thrown. */
function waitFailed(
  err: unknown,
  ctx: CliContext,
  signal: AbortSignal,
  timeout: number,
  conflictCode: number,
  busy: (holder: string) => string,
  timedOut: (err: LockTimeoutError) => string = (e) => e.message,
): ExitCode {
  const code = (err as { code?: string }).code;
  if (code === 'ERR_LOCK_TIMEOUT') {
    const { holderPid } = err as LockTimeoutError;
    const holder = holderPid === undefined ? '' : ` (held by pid ${holderPid})`;
    const what = timeout < 0 ? busy(holder) : timedOut(err as LockTimeoutError);
    printError(ctx, Object.assign(new Error(what), { code }));
    return conflictCode;
  }
  if (code === 'ERR_LOCK_ABORTED' && signal.aborted)
    return 128 + signalNumber(signal.reason as NodeJS.Signals);
  throw err;
}

/** The etcd cluster `lock run` uses: --etcd, else $TOWNLOCK_ETCD (empty is unset), else none. */
function etcdOption(flag: string | true | undefined, ctx: CliContext): EtcdTarget | undefined {
  if (typeof flag === 'string') {
    if (flag === '')
      throw new UsageError("--etcd needs ENDPOINTS, got ''", "write e.g. '--etcd 10.0.0.1:2379/town'");
    return parseEtcdTarget(flag, '--etcd');
  }
  const env = ctx.env.TOWNLOCK_ETCD;
  return env ? parseEtcdTarget(env, 'TOWNLOCK_ETCD') : undefined;
}

/** How `lock run --etcd` takes its lock and what it does when it cannot. */
interface EtcdRun {
  type: 'shared' | 'exclusive';
  timeout: number;
  conflictCode: number;
  /** Seconds between SIGTERM and SIGKILL when the lock is lost. */
  killAfter: number;
}

/**
 * `lock run --etcd`: the lock is NAME on the cluster; if it is lost while the command runs, the command
 * gets SIGTERM, then SIGKILL after `killAfter` seconds, and the exit status is 75 (EX_TEMPFAIL).
 */
async function runOnEtcd(target: EtcdTarget, name: string, argv: string[], run: EtcdRun, ctx: CliContext) {
  const abort = new AbortController();
  return underSignals(ctx, abort, (signals) =>
    lockAndRunOnEtcd(target, name, argv, run, ctx, abort, signals),
  );
}

/** runOnEtcd's body, under its signal subscription. */
async function lockAndRunOnEtcd(
  target: EtcdTarget,
  name: string,
  argv: string[],
  run: EtcdRun,
  ctx: CliContext,
  abort: AbortController,
  signals: SignalRelay,
): Promise<ExitCode> {
  let etcd: Etcd | undefined;
  try {
    let lock: EtcdLock;
    try {
      etcd = await connectEtcd(target);
      lock = etcd.lock(name, { type: run.type, timeout: run.timeout, signal: abort.signal });
      await lock.lock();
    } catch (err) {
      const busy = () => `lock ${JSON.stringify(name)} on etcd is busy`;
      // A signal while connecting ends the wait as it does while waiting for the lock.
      if (abort.signal.aborted && (err as { code?: string }).code !== 'ERR_LOCK_TIMEOUT')
        return 128 + signalNumber(abort.signal.reason as NodeJS.Signals);
      // The same words for -n and -w: the name the user gave, not the key prefix.
      const timedOut = (e: LockTimeoutError) => `${busy()}: no turn within ${e.waited} ms`;
      return waitFailed(err, ctx, abort.signal, run.timeout, run.conflictCode, busy, timedOut);
    }
    let stopped: Promise<void> | undefined;
    try {
      const status = await runChild(argv, ctx, signals, {
        signal: lock.lost,
        onAbort: (child) => {
          printError(ctx, lock.lost.reason);
          stopped = stopTree(child.pid!, run.killAfter, ctx);
          return { clear: () => {} }; // the command's children may outlive it: stopTree sees to them
        },
      });
      if (stopped) await stopped;
      return stopped ? EXIT.tempFail : status;
    } finally {
      // A lost lock has nothing left to release; any other failure to delete the key is covered by
      // close(), which revokes the session lease (and with it the key).
      await lock.unlock().catch(() => {});
    }
  } finally {
    await etcd?.close().catch(() => {});
  }
}

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

/**
 * Stops the command `pid` and every process it started (see _descendants.ts): SIGTERM now, then SIGKILL
 * to those still running after `killAfter` seconds (and to what they started meanwhile). Resolves when
 * all of them have exited or been killed.
 */
async function stopTree(pid: number, killAfter: number, ctx: CliContext): Promise<void> {
  const refs = processTree(pid);
  const others = refs.length - 1;
  printWarning(
    ctx,
    `sending SIGTERM to the command (pid ${pid})${others > 0 ? ` and the ${others} process${others === 1 ? '' : 'es'} it started` : ''}; SIGKILL in ${killAfter} s to any still running`,
  );
  signalAll(refs, 'SIGTERM');
  const deadline = performance.now() + killAfter * 1000;
  for (;;) {
    const alive = refs.filter(isRunning);
    if (alive.length === 0) return;
    if (performance.now() >= deadline) {
      signalAll([...alive, ...alive.flatMap((r) => processTree(r.pid).slice(1))], 'SIGKILL');
      return;
    }
    // No event tells when another process exits: look again shortly.
    await new Promise((r) => setTimeout(r, Math.min(50, Math.max(0, deadline - performance.now()))));
  }
}

/** When to stop the command early (its lock was lost) and how. */
interface StopOn {
  signal: AbortSignal;
  /** Starts stopping the running child; returns what cancels the rest (a SIGKILL timer) once it exited. */
  onAbort(child: ChildProcess): { clear(): void };
}

/** Where lock run's signals go: first to the wait for the lock, then to the command, then nowhere yet. */
interface SignalRelay {
  /** Sends the signals that come from now on to `handler`. */
  to(handler: (signal: NodeJS.Signals) => void): void;
  /** The command ended: a signal now only notes itself, to be answered once the lock is released. */
  afterCommand(): void;
  /** The first signal that came after the command ended. */
  readonly late: NodeJS.Signals | undefined;
  /** Unsubscribes (their default actions apply again); idempotent. */
  stop(): void;
}

/**
 * Runs lock run's `body` under one signal subscription (see signalRelay): first a signal ends the wait
 * (through `abort`), then it is forwarded to the command; one that comes after the command ended, while
 * the lock is released (on etcd: the key deleted, the session closed), ends townlock once that is done,
 * with 128+N, as dying of it would have, but without leaving the lock held until its lease runs out.
 */
async function underSignals(
  ctx: CliContext,
  abort: AbortController,
  body: (signals: SignalRelay) => Promise<ExitCode>,
): Promise<ExitCode> {
  const signals = signalRelay(ctx, (signal) => abort.abort(signal));
  try {
    const code = await body(signals);
    return signals.late === undefined ? code : 128 + signalNumber(signals.late);
  } finally {
    signals.stop();
  }
}

/**
 * One subscription to the signals lock run handles, from the wait for the lock until the command ended.
 * Switching handlers never unsubscribes in between: with no listener, Node gives a signal its default
 * action back, and a SIGALRM or SIGTERM landing in that gap would end townlock (releasing the lock)
 * while the command it had just started went on running unlocked.
 */
function signalRelay(ctx: CliContext, first: (signal: NodeJS.Signals) => void): SignalRelay {
  let handler = first;
  let late: NodeJS.Signals | undefined;
  let unsubscribe: (() => void) | undefined = ctx.onSignal((signal) => handler(signal));
  return {
    to(next) {
      handler = next;
    },
    afterCommand() {
      handler = (signal) => {
        late ??= signal;
      };
    },
    get late() {
      return late;
    },
    stop() {
      unsubscribe?.();
      unsubscribe = undefined;
    },
  };
}

/** Signals a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\\, a hangup). */
const TERMINAL_SIGNALS = new Set<NodeJS.Signals>(['SIGINT', 'SIGQUIT', 'SIGHUP']);

/**
 * Runs argv with inherited stdio, forwarding signals; resolves with its exit status (shell style). The
 * command runs in townlock's process group, as under flock(1): a Ctrl-C typed at the terminal reaches
 * it directly, so INT, QUIT and HUP are forwarded only when townlock is not the terminal's foreground
 * group (they came from kill(1), not from the keyboard or a hangup). Forwarding keeps the order signals arrived in.
 */
function runChild(
  [command, ...args]: string[],
  ctx: CliContext,
  signals: SignalRelay,
  stop?: StopOn,
): Promise<ExitCode> {
  return new Promise<ExitCode>((resolvePromise) => {
    const child = ctx.spawn(command!, args, {
      stdio: 'inherit',
      env: ctx.env as NodeJS.ProcessEnv,
      cwd: workingDirectory(ctx),
    });
    let forwarding = Promise.resolve();
    const forward = async (signal: NodeJS.Signals) => {
      if (TERMINAL_SIGNALS.has(signal) && (await ctx.inForegroundProcessGroup?.())) return;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    // In the same synchronous step as the spawn: no signal handler can run in between (they run from the
    // event loop), so the first signal after the command started is already forwarded.
    signals.to((signal) => {
      forwarding = forwarding.then(() => forward(signal)).catch(() => {});
    });
    let killer: { clear(): void } | undefined;
    const onStop = () => {
      if (child.exitCode === null && child.signalCode === null) killer = stop!.onAbort(child);
    };
    const done = () => {
      signals.afterCommand();
      stop?.signal.removeEventListener('abort', onStop);
      killer?.clear();
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      done();
      resolvePromise(printError(ctx, new RunError(command!, err)));
    });
    child.on('spawn', () => {
      if (stop?.signal.aborted) onStop();
      else stop?.signal.addEventListener('abort', onStop, { once: true });
    });
    child.on('exit', (code, signal) => {
      done();
      resolvePromise(code ?? 128 + signalNumber(signal ?? 'SIGTERM'));
    });
  });
}

/** Where the command runs: townlock's own directory, or (deleted, unreadable) wherever the process is. */
function workingDirectory(ctx: CliContext): string | undefined {
  try {
    return ctx.cwd;
  } catch {
    return undefined; // the command inherits the directory townlock is in, deleted or not
  }
}

/** The number of a signal, for the 128+N exit status. */
function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 15;
}

/** Parses an integer option in a range, or throws a UsageError naming it. */
function integerOption(value: string | true | undefined, name: string, min: number, max: number) {
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw new UsageError(
      `${name} needs an integer from ${min} to ${max}, got '${value}'`,
      `write e.g. '${name} 75'`,
    );
  return n;
}

/** Parses a non-negative number of seconds, or throws a UsageError naming the option. */
function secondsOption(value: string, name: string): number {
  const n = Number(value);
  // Decimal only, as flock(1) reads it: no '', no 0x10, no 1e3, no ' 5'.
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value) || !Number.isFinite(n))
    throw new UsageError(
      `${name} needs a number of seconds (0 or more), got '${value}'`,
      `write e.g. '${name} 10' or '${name} 0.5'`,
    );
  return n;
}
