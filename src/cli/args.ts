/**
 * A getopt-like argument parser, with messages townlock writes itself (one line, saying what to type).
 *
 * - `--long value`, `--long=value`, `-x`, clusters `-sn`, `-w5` and `-w 5`; `--` ends options.
 * - An option that takes a value always takes the next argument, even one starting with `-`
 *   (`--host -oProxyCommand=x`, `-w -1`): the command's validation then refuses it by name.
 * - No abbreviations of long options (a unique prefix today is an ambiguous one tomorrow).
 * - `stopAtPositional`: the first positional ends the options and everything after it is returned as
 *   is (`lock run FILE COMMAND...`, `machine exec NAME COMMAND...`), as flock(1) does.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';

/** One option a command takes. */
export interface OptionSpec {
  /** Long name without dashes; the key in {@link ParsedArgs.values}. */
  long: string;
  /** One-letter form. */
  short?: string;
  /** Other long names for the same option. */
  aliases?: string[];
  /** Name of the value for options that take one (`SECONDS`); absent for flags. */
  value?: string;
  /** One line of help. */
  help: string;
}

/** What a command line says, option by option. */
export interface ParsedArgs {
  /** Flags are `true`, options with a value their (last) value. */
  values: Record<string, string | true>;
  /** Positional arguments (with stopAtPositional: only the first). */
  positionals: string[];
  /** Where each positional was in the parsed argument list (to find its raw bytes). */
  positionalIndexes: number[];
  /** With stopAtPositional: every argument after the first positional, as given. */
  rest: string[];
}

/**
 * Parses `args` against `options`. Unknown options, missing values and values given to flags are
 * UsageErrors naming the option (and the nearest known one).
 */
export function parse(args: string[], options: OptionSpec[], stopAtPositional = false): ParsedArgs {
  const parsed: ParsedArgs = { values: {}, positionals: [], positionalIndexes: [], rest: [] };
  let optionsEnded = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (optionsEnded || arg === '-' || !arg.startsWith('-')) {
      parsed.positionals.push(arg);
      parsed.positionalIndexes.push(i);
      if (stopAtPositional) {
        parsed.rest = args.slice(i + 1);
        break;
      }
      continue;
    }
    if (arg === '--') {
      optionsEnded = true;
      continue;
    }
    const next = () => {
      if (i + 1 >= args.length) return undefined;
      return args[++i];
    };
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const spec = options.find((o) => o.long === name || o.aliases?.includes(name));
      if (!spec) throw unknownOption(`--${name}`, options);
      if (spec.value === undefined) {
        if (eq >= 0) throw new UsageError(`option '--${name}' takes no value`, `write '--${name}' alone`);
        parsed.values[spec.long] = true;
      } else {
        const value = eq >= 0 ? arg.slice(eq + 1) : next();
        if (value === undefined) throw missingValue(`--${name}`, spec);
        parsed.values[spec.long] = value;
      }
      continue;
    }
    // A cluster of short options: flags, then at most one option whose value is the rest or the next arg.
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j]!;
      const spec = options.find((o) => o.short === letter);
      if (!spec) throw unknownOption(`-${letter}`, options);
      if (spec.value === undefined) {
        parsed.values[spec.long] = true;
        continue;
      }
      const value = j + 1 < arg.length ? arg.slice(j + 1) : next();
      if (value === undefined) throw missingValue(`-${letter}`, spec);
      parsed.values[spec.long] = value;
      break;
    }
  }
  return parsed;
}

/** The error for an option a command does not take, suggesting the nearest long one it does. */
function unknownOption(given: string, options: OptionSpec[]): UsageError {
  // One letter is too little to guess from: only long options get a suggestion.
  const names = options.flatMap((o) => [`--${o.long}`, ...(o.aliases ?? []).map((a) => `--${a}`)]);
  const near = given.startsWith('--') ? nearest(given, names) : undefined;
  // A negative number reads as an option: say how to pass it as an argument.
  if (/^-[\d.]/.test(given))
    return new UsageError(
      `unknown option '${given}'`,
      `if '${given}' is an argument, put it after '--' (e.g. '-- ${given}')`,
    );
  return new UsageError(`unknown option '${given}'`, near ? `did you mean '${near}'?` : undefined);
}

/** The error for an option given without its value. */
function missingValue(given: string, spec: OptionSpec): UsageError {
  return new UsageError(`option '${given}' needs a value`, `write '${given} ${spec.value}'`);
}

/** The known name closest to `given`, if it is close enough to be a typo of it. */
export function nearest(given: string, known: string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = distance(given, name);
    if (!best || d < best.d) best = { name, d };
  }
  return best && best.d <= Math.max(2, Math.floor(given.length / 3)) ? best.name : undefined;
}

/** Levenshtein edit distance. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** Requires exactly these positionals (by name, for the message) and returns them. */
export function expectPositionals(parsed: ParsedArgs, names: string[], usage: string): string[] {
  const given = parsed.positionals;
  if (given.length < names.length)
    throw new UsageError(`missing ${names.slice(given.length).join(' ')}`, `usage: ${usage}`);
  if (given.length > names.length)
    throw new UsageError(`unexpected argument '${given[names.length]}'`, `usage: ${usage}`);
  return given;
}

/**
 * The registry path: `--registry` (never empty), else `$TOWNLOCK_REGISTRY` (empty counts as unset), else
 * `${XDG_CONFIG_HOME:-~/.config}/townlock/machines.json`.
 */
export function registryPath(flag: string | undefined, ctx: CliContext): string {
  if (flag !== undefined) {
    if (flag === '') throw new UsageError("--registry needs a PATH, got ''", "write '--registry PATH'");
    return flag;
  }
  if (ctx.env.TOWNLOCK_REGISTRY) return ctx.env.TOWNLOCK_REGISTRY;
  const config = ctx.env.XDG_CONFIG_HOME || join(ctx.env.HOME || homedir(), '.config');
  return join(config, 'townlock', 'machines.json');
}

/**
 * `path` made absolute: against the working directory only when it is relative, so that a deleted
 * working directory fails only the commands given relative paths.
 */
export function absolutePath(ctx: CliContext, path: string): string {
  return isAbsolute(path) ? resolve(path) : resolve(ctx.cwd, path);
}
