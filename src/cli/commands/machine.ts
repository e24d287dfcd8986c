/** `townlock machine list|show|add|remove`: read and change the registry. */
import fs from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidMachineError } from '../../registry/errors.js';
import { type Machine, validateMachine } from '../../registry/machine.js';
import { absolutePath, expectPositionals } from '../args.js';
import type { CliContext } from '../context.js';
import { EXIT, InputError, isOsError, UsageError } from '../errors.js';
import { printJson, printLines, printTable, printWarning } from '../output.js';
import type { CommandRun } from '../spec.js';
import { withRegistry } from './_registry.js';

/** One machine as a table row. */
const row = (m: Machine) => [m.name, m.type, m.host ?? '-', m.keyPath ?? '-', m.townPath ?? '-'];

export const list: CommandRun = async (args, ctx, input) => {
  expectPositionals(args, [], input.usage);
  const { machines, invalid } = await withRegistry(input, async ({ registry }) => ({
    machines: registry.list(),
    invalid: registry.invalid(),
  }));
  // Entries the registry has but that are not valid machines are kept in it and skipped here.
  for (const bad of invalid)
    printWarning(ctx, `skipping invalid machine "${bad.machine ?? '?'}": ${bad.field} ${bad.detail}`);
  if (args.values.json) printJson(ctx.stdout, machines);
  else printTable(ctx, ['NAME', 'TYPE', 'HOST', 'KEY', 'TOWN'], machines.map(row));
  return EXIT.ok;
};

export const show: CommandRun = async (args, ctx, input) => {
  const [name] = expectPositionals(args, ['NAME'], input.usage);
  const machine = await withRegistry(input, async ({ registry }) => registry.get(name!));
  if (args.values.json) printJson(ctx.stdout, machine);
  else {
    const [, type, host, key, town] = row(machine);
    const rows = [
      ['name', machine.name],
      ['type', type!],
      ['host', host!],
      ['key', key!],
      ['town', town!],
    ];
    printLines(ctx.stdout, ...rows.map(([k, v]) => `${`${k}:`.padEnd(6)} ${v}`));
  }
  return EXIT.ok;
};

export const add: CommandRun = async (args, ctx, input) => {
  const [name] = expectPositionals(args, ['NAME'], input.usage);
  const { type: typeFlag, host, key, town } = args.values as Record<string, string | undefined>;
  for (const [flag, value, what] of [
    ['--host', host, '[USER@]HOST[:PORT]'],
    ['--key', key, 'a key file'],
    ['--town', town, 'a path'],
  ] as const) {
    if (value === '') throw new UsageError(`${flag} needs ${what}, got ''`, `usage: ${input.usage}`);
  }
  const type = typeFlag ?? (host !== undefined ? 'ssh' : undefined);
  if (!type) throw new UsageError('missing --type (local or ssh)', `usage: ${input.usage}`);
  if (type === 'local' && (host !== undefined || key !== undefined))
    throw new UsageError(
      `--type local takes no ${host !== undefined ? '--host' : '--key'} (the local machine is this one)`,
      `drop it, or write '--type ssh' for a machine reached over SSH`,
    );
  checkFlags({ name, type, host, keyPath: key, townPath: town }, input.usage);
  const machine = { name, type, host, keyPath: key && keyPath(key, ctx), townPath: town } as Machine;
  await withRegistry(input, ({ registry }) => registry.add(machine));
  printLines(ctx.stdout, `added ${name}`);
  return EXIT.ok;
};

/** The flag (or argument) of `machine add` that sets each field of a machine. */
const FLAG_OF: Record<string, string> = {
  name: 'NAME',
  type: '--type',
  host: '--host',
  keyPath: '--key',
  townPath: '--town',
};

/**
 * Validates what the flags give, before any file is read, naming the flag rather than the field: a
 * missing required flag is a usage error (64), a value the registry refuses is ERR_INVALID_MACHINE (65).
 */
function checkFlags(machine: Record<string, string | undefined>, usage: string): void {
  try {
    validateMachine(machine);
  } catch (err) {
    if (!(err instanceof InvalidMachineError)) throw err;
    const flag = FLAG_OF[err.field] ?? err.field;
    if (err.detail.startsWith('is required'))
      throw new UsageError(`missing ${flag}${err.detail.slice('is required'.length)}`, `usage: ${usage}`);
    throw new InvalidMachineError(flag, err.detail);
  }
}

/**
 * The key file as stored: `~` kept (expanded when connecting, as the Go tool does), a relative path made
 * absolute (it would otherwise depend on the directory of each later command). It must be a readable
 * file now: an InputError (exit 66) otherwise.
 */
function keyPath(key: string, ctx: CliContext): string {
  const home = ctx.env.HOME || homedir();
  const expanded =
    key === '~' ? home : key.startsWith('~/') ? join(home, key.slice(2)) : absolutePath(ctx, key);
  try {
    if (!fs.statSync(expanded).isFile())
      throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
    fs.accessSync(expanded, fs.constants.R_OK);
  } catch (err) {
    throw isOsError(err) ? new InputError('key file', expanded, err) : err;
  }
  return key === '~' || key.startsWith('~/') ? key : expanded;
}

export const remove: CommandRun = async (args, ctx, input) => {
  const [name] = expectPositionals(args, ['NAME'], input.usage);
  await withRegistry(input, ({ registry }) => registry.remove(name!));
  printLines(ctx.stdout, `removed ${name}`);
  return EXIT.ok;
};
