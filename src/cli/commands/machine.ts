/** `townlock machine list|show|add|remove`: read and change the registry. */
import type { Machine } from '../../registry/machine.js';
import { MachineRegistry } from '../../registry/registry.js';
import { expectPositionals } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { printJson, printLines, printTable, printWarning } from '../output.js';
import type { CommandRun } from '../spec.js';

/** Opens the registry the options name. */
export const openRegistry = (registry: string) => MachineRegistry.open(registry);

/** One machine as a table row. */
const row = (m: Machine) => [m.name, m.type, m.host ?? '-', m.keyPath ?? '-', m.townPath ?? '-'];

export const list: CommandRun = async (args, ctx, input) => {
  expectPositionals(args, [], input.usage);
  const registry = await openRegistry(input.registry);
  // Entries the file has but that are not valid machines are kept in the file and skipped here.
  for (const bad of registry.invalid())
    printWarning(ctx, `skipping invalid machine "${bad.machine ?? '?'}": ${bad.field} ${bad.detail}`);
  const machines = registry.list();
  if (args.values.json) printJson(ctx.stdout, machines);
  else printTable(ctx, ['NAME', 'TYPE', 'HOST', 'KEY', 'TOWN'], machines.map(row));
  return EXIT.ok;
};

export const show: CommandRun = async (args, ctx, input) => {
  const [name] = expectPositionals(args, ['NAME'], input.usage);
  const machine = (await openRegistry(input.registry)).get(name!);
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
  const type = typeFlag ?? (host !== undefined ? 'ssh' : undefined);
  if (!type) throw new UsageError('missing --type (local or ssh)', `usage: ${input.usage}`);
  const machine = { name, type, host, keyPath: key, townPath: town } as Machine;
  await (await openRegistry(input.registry)).add(machine);
  printLines(ctx.stdout, `added ${name}`);
  return EXIT.ok;
};

export const remove: CommandRun = async (args, ctx, input) => {
  const [name] = expectPositionals(args, ['NAME'], input.usage);
  await (await openRegistry(input.registry)).remove(name!);
  printLines(ctx.stdout, `removed ${name}`);
  return EXIT.ok;
};
