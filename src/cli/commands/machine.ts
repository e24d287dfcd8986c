/** `townlock machine ...`: list, show, add and remove machines in the registry. */

import type { Machine } from '../../registry/machine.js';
import { MachineRegistry } from '../../registry/registry.js';
import { parse, positionals } from '../args.js';
import { type CliContext, EXIT, type ExitCode, UsageError } from '../context.js';
import { printJson, table, useColor } from '../output.js';
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
    else
      ctx.stdout.write(
        table(['NAME', 'TYPE', 'HOST', 'KEY', 'TOWN'], machines.map(row), useColor(ctx.stdout, ctx.env)),
      );
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
