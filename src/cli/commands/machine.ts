/** `townlock machine ...`: list, show, add and remove machines in the registry. */

import { constants } from 'node:os';
import type { SshConnectionOptions } from '../../connection/ssh.js';
import type { Machine } from '../../registry/machine.js';
import { MachineRegistry } from '../../registry/registry.js';
import { parse, positionals, splitAtDashDash } from '../args.js';
import type { CliContext } from '../context.js';
import { EXIT, type ExitCode, UsageError } from '../errors.js';
import { printJson, printTable } from '../output.js';
import type { Command } from './types.js';

/** Opens the registry the global options name. */
const open = (registry: string) => MachineRegistry.open(registry);

/** One machine as a table row. */
const row = (m: Machine) => [m.name, m.type, m.host ?? '-', m.keyPath ?? '-', m.townPath ?? '-'];

export const machineList: Command = {
  path: ['machine', 'list'],
  summary: 'List the machines in the registry',
  usage: 'townlock machine list [--json]',
  example: 'townlock machine list --json',
  async run(args, ctx, { registry }): Promise<ExitCode> {
    const { values, positionals: rest } = parse(args, { json: { type: 'boolean' } });
    positionals(rest, []);
    const machines = (await open(registry)).list();
    if (values.json) printJson(ctx.stdout, machines);
    else printTable(ctx, ['NAME', 'TYPE', 'HOST', 'KEY', 'TOWN'], machines.map(row));
    return EXIT.ok;
  },
};

export const machineShow: Command = {
  path: ['machine', 'show'],
  summary: 'Show one machine',
  usage: 'townlock machine show NAME [--json]',
  example: 'townlock machine show build-01',
  async run(args, ctx, { registry }): Promise<ExitCode> {
    const { values, positionals: rest } = parse(args, { json: { type: 'boolean' } });
    const [name] = positionals(rest, ['NAME']);
    const machine = (await open(registry)).get(name!);
    if (values.json) printJson(ctx.stdout, machine);
    else {
      const [, type, host, key, town] = row(machine);
      const rows = [
        ['name', machine.name],
        ['type', type!],
        ['host', host!],
        ['key', key!],
        ['town', town!],
      ];
      ctx.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(6)} ${v}\n`).join(''));
    }
    return EXIT.ok;
  },
};

export const machineAdd: Command = {
  path: ['machine', 'add'],
  summary: 'Add a machine, or replace the one with that name',
  usage: 'townlock machine add NAME --type ssh --host user@host[:port] [--key PATH] [--town PATH]',
  example:
    'townlock machine add build-01 --type ssh --host deploy@build-01.example.com:2222 --key ~/.ssh/id_ed25519',
  async run(args, ctx, { registry }): Promise<ExitCode> {
    const { values, positionals: rest } = parse(args, {
      type: { type: 'string', short: 't' },
      host: { type: 'string', short: 'H' },
      key: { type: 'string', short: 'k' },
      town: { type: 'string' },
    });
    const [name] = positionals(rest, ['NAME']);
    const type = values.type ?? (values.host ? 'ssh' : undefined);
    if (!type) throw new UsageError('missing --type (local or ssh)');
    const machine = { name, type, host: values.host, keyPath: values.key, townPath: values.town } as Machine;
    await (await open(registry)).add(machine);
    ctx.stdout.write(`added ${name}\n`);
    return EXIT.ok;
  },
};

export const machineRemove: Command = {
  path: ['machine', 'remove'],
  summary: 'Remove a machine (not "local")',
  usage: 'townlock machine remove NAME',
  example: 'townlock machine remove build-01',
  async run(args, ctx: CliContext, { registry }): Promise<ExitCode> {
    const { positionals: rest } = parse(args, {});
    const [name] = positionals(rest, ['NAME']);
    await (await open(registry)).remove(name!);
    ctx.stdout.write(`removed ${name}\n`);
    return EXIT.ok;
  },
};

/** Connection options the machine exec/test commands take from flags and the environment. */
const connectionOptions = {
  'known-hosts': { type: 'string' },
  'accept-new-host-key': { type: 'boolean' },
  timeout: { type: 'string' },
} as const;

/** SSH options from the parsed flags (known_hosts, trust on first use). */
function sshOptions(values: {
  'known-hosts'?: string;
  'accept-new-host-key'?: boolean;
}): Partial<SshConnectionOptions> {
  const options: Partial<SshConnectionOptions> = {};
  if (values['known-hosts']) options.knownHostsPath = values['known-hosts'];
  if (values['accept-new-host-key']) options.hostKeyPolicy = 'accept-new';
  return options;
}

/** Parses --timeout SECONDS into ms (undefined when absent). */
function timeoutMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`--timeout needs a number of seconds, got ${JSON.stringify(value)}`);
  return n * 1000;
}

const CONNECTION_HELP = `  --known-hosts PATH      known_hosts file (default: $TOWNLOCK_KNOWN_HOSTS, else ~/.ssh/known_hosts)
  --accept-new-host-key   trust and record the key of a host not yet in known_hosts
  --timeout SECONDS       give up after this long
The key passphrase, if any, is read from $TOWNLOCK_SSH_PASSPHRASE. A host may be a Host alias of
~/.ssh/config (or of $TOWNLOCK_SSH_CONFIG; empty: none) giving HostName, User, Port and IdentityFile.`;

export const machineExec: Command = {
  path: ['machine', 'exec'],
  summary: "Run a command on a machine; exits with the command's exit code",
  usage: 'townlock machine exec NAME [--known-hosts PATH] [--timeout SECONDS] -- COMMAND [ARGS...]',
  example: "townlock machine exec build-01 -- ls -la '/srv/my town'",
  details: `Every argument reaches the remote command literally (quoted for the remote shell).
On --timeout, Ctrl-C, SIGTERM or SIGHUP the command and every process it started are killed.\n\n${CONNECTION_HELP}`,
  async run(args, ctx, { registry }): Promise<ExitCode> {
    const [before, command] = splitAtDashDash(args);
    const { values, positionals: rest } = parse(before, connectionOptions);
    const [name, ...inline] = rest;
    if (!name) throw new UsageError('missing NAME');
    const argv = command ?? inline;
    if (argv.length === 0) throw new UsageError('missing COMMAND (after --)');
    const conn = (await open(registry)).connection(name, sshOptions(values));
    // Ctrl-C and friends kill the command and everything it started (its process group), on either side,
    // then exit 128+N like a shell: the command runs in a process group of its own, beyond the terminal's reach.
    const abort = new AbortController();
    const stopForwarding = ctx.onSignal((signal) => abort.abort(signal));
    try {
      const r = await conn.exec(argv[0]!, argv.slice(1), {
        timeout: timeoutMs(values.timeout),
        signal: abort.signal,
      });
      ctx.stdout.write(r.stdout);
      ctx.stderr.write(r.stderr);
      return r.code;
    } catch (err) {
      if (abort.signal.aborted && (err as { reason?: string }).reason === 'aborted')
        return 128 + (constants.signals[abort.signal.reason as NodeJS.Signals] ?? 15);
      throw err;
    } finally {
      stopForwarding();
      await conn.close();
    }
  },
};

export const machineTest: Command = {
  path: ['machine', 'test'],
  summary: 'Connect to a machine and report the round-trip time and `uname -a`',
  usage: 'townlock machine test NAME [--known-hosts PATH] [--accept-new-host-key] [--json]',
  example: 'townlock machine test build-01',
  details: CONNECTION_HELP,
  async run(args, ctx, { registry }): Promise<ExitCode> {
    const { values, positionals: rest } = parse(args, { ...connectionOptions, json: { type: 'boolean' } });
    const [name] = positionals(rest, ['NAME']);
    const conn = (await open(registry)).connection(name!, sshOptions(values));
    try {
      const timeout = timeoutMs(values.timeout) ?? 30_000;
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
      if (values.json) printJson(ctx.stdout, result);
      else
        ctx.stdout.write(
          `ok ${name}: connected in ${result.connectMs} ms, round trip ${result.rttMs} ms\n${result.uname}\n`,
        );
      return result.ok ? EXIT.ok : EXIT.failure;
    } finally {
      await conn.close();
    }
  },
};

/** Rounds ms to 0.1. */
const round = (ms: number) => Math.round(ms * 10) / 10;
