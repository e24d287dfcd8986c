/** Argument parsing on top of node:util parseArgs, with usage errors instead of TypeErrors. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';

/** Option definitions, as parseArgs takes them. */
export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/** Parsed option values: booleans for flags, strings for options that take a value. */
export type Values<T> = { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : string };

/** Parses `args` strictly; unknown options and missing values become UsageErrors. */
export function parse<T extends OptionSpec>(
  args: string[],
  options: T,
): { values: Values<T>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...options, ...HELP },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Values<T>, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
}

/** Splits argv at the first `--`: the part before, and the command after (undefined if none). */
export function splitAtDashDash(args: string[]): [string[], string[] | undefined] {
  const i = args.indexOf('--');
  return i < 0 ? [args, undefined] : [args.slice(0, i), args.slice(i + 1)];
}

/** The registry path: --registry, else $TOWNLOCK_REGISTRY, else $XDG_CONFIG_HOME/townlock/machines.json. */
export function registryPath(flag: string | undefined, ctx: CliContext): string {
  if (flag) return flag;
  if (ctx.env.TOWNLOCK_REGISTRY) return ctx.env.TOWNLOCK_REGISTRY;
  const config = ctx.env.XDG_CONFIG_HOME || join(ctx.env.HOME || homedir(), '.config');
  return join(config, 'townlock', 'machines.json');
}

/** Requires exactly `names.length` positionals, naming the missing or extra ones. */
export function positionals(values: string[], names: string[]): string[] {
  if (values.length < names.length) throw new UsageError(`missing ${names.slice(values.length).join(' ')}`);
  if (values.length > names.length)
    throw new UsageError(`unexpected argument ${JSON.stringify(values[names.length])}`);
  return values;
}
