/** `townlock machine exec|test`: connect to a machine and run commands there. */
import { constants } from 'node:os';
import type { SshConnectionOptions } from '../../connection/ssh.js';
import { expectPositionals, type ParsedArgs } from '../args.js';
import type { Output } from '../context.js';
import { EXIT, UsageError } from '../errors.js';
import { printJson, printLines } from '../output.js';
import type { CommandRun } from '../spec.js';
import { withRegistry } from './_registry.js';

/** SSH options from the parsed flags (known_hosts, trust on first use). */
function sshOptions({ values }: ParsedArgs): Partial<SshConnectionOptions> {
  const options: Partial<SshConnectionOptions> = {};
  if (typeof values['known-hosts'] === 'string') options.knownHostsPath = values['known-hosts'];
  if (values['accept-new-host-key']) options.hostKeyPolicy = 'accept-new';
  return options;
}

/** Parses --timeout SECONDS into ms (undefined when absent). */
function timeoutMs({ values }: ParsedArgs): number | undefined {
  const value = values.timeout;
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value) || !Number.isFinite(n) || n <= 0)
    throw new UsageError(
      `--timeout needs a positive number of seconds, got '${value}'`,
      "write e.g. '--timeout 30'",
    );
  return n * 1000;
}

export const exec: CommandRun = async (args, ctx, input) => {
  const [name] = args.positionals;
  if (!name) throw new UsageError('missing NAME', `usage: ${input.usage}`);
  const argv = args.rest[0] === '--' ? args.rest.slice(1) : args.rest;
  if (argv.length === 0) throw new UsageError('missing COMMAND', `usage: ${input.usage}`);
  const timeout = timeoutMs(args);
  const conn = await withRegistry(input, async ({ registry }) => registry.connection(name, sshOptions(args)));
  // Ctrl-C and friends kill the command and everything it started (its process group), on either side,
  // then exit 128+N like a shell: the command runs in a process group of its own, beyond the terminal's reach.
  const abort = new AbortController();
  const stopForwarding = ctx.onSignal((signal) => abort.abort(signal));
  // stdin goes to the command unless it is a terminal (no -t: there is no terminal on the other side).
  const stdin = ctx.stdin && !ctx.stdin.isTTY ? ctx.stdin.stream() : undefined;
  // The command's own output, byte for byte and as it comes, as ssh(1) passes it: not townlock's text to
  // sanitize. A full pipe pauses the command; a reader that went away ends it (below).
  let writeFailed: unknown;
  const pass = (out: Output) => (chunk: Buffer) =>
    out.writeBytes(chunk)?.catch((err: unknown) => {
      writeFailed = err;
      throw err;
    });
  try {
    const r = await conn.exec(argv[0]!, argv.slice(1), {
      timeout,
      signal: abort.signal,
      input: stdin,
      onStdout: pass(ctx.stdout),
      onStderr: pass(ctx.stderr),
    });
    return r.code;
  } catch (err) {
    if (abort.signal.aborted && (err as { reason?: string }).reason === 'aborted')
      return 128 + (constants.signals[abort.signal.reason as NodeJS.Signals] ?? 15);
    // Nobody reads our output any more (`| head -1`): the command was killed; exit as SIGPIPE would.
    if (err === writeFailed && (err as NodeJS.ErrnoException).code === 'EPIPE')
      return 128 + constants.signals.SIGPIPE;
    throw err;
  } finally {
    stopForwarding();
    // What the command did not read stays unread; a pipe still open must not keep townlock alive.
    stdin?.destroy();
    await conn.close();
  }
};

export const test: CommandRun = async (args, ctx, input) => {
  const [name] = expectPositionals(args, ['NAME'], input.usage);
  const timeout = timeoutMs(args) ?? 30_000;
  const conn = await withRegistry(input, async ({ registry }) =>
    registry.connection(name!, sshOptions(args)),
  );
  try {
    const started = performance.now();
    await conn.exec('true', [], { timeout });
    const connectMs = performance.now() - started;
    const t = performance.now();
    const uname = await conn.exec('uname', ['-a'], { timeout });
    const rttMs = performance.now() - t;
    const result = {
      name,
      ok: uname.code === 0,
      connectMs: round(connectMs),
      rttMs: round(rttMs),
      uname: uname.stdout.trim(),
    };
    if (args.values.json) printJson(ctx.stdout, result);
    else
      printLines(
        ctx.stdout,
        `ok ${name}: connected in ${result.connectMs} ms, round trip ${result.rttMs} ms`,
        result.uname,
      );
    return result.ok ? EXIT.ok : EXIT.failure;
  } finally {
    await conn.close();
  }
};

/** Rounds ms to 0.1. */
const round = (ms: number) => Math.round(ms * 10) / 10;
