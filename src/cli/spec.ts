/**
 * What every command is called, takes and says in --help: a light table that dispatch, the parser and
 * help read without loading any command. A command's implementation (and what it imports: the lock,
 * the registry, koffi) is loaded only when that command runs.
 */
import type { OptionSpec, ParsedArgs } from './args.js';
import { LOCK_COMMANDS } from './commands/lock-specs.js';
import { MACHINE_COMMANDS } from './commands/machine-specs.js';
import { STORE_COMMANDS } from './commands/store-specs.js';
import type { CliContext } from './context.js';
import type { ExitCode } from './errors.js';

/** What a command receives besides its parsed arguments. */
export interface CommandInput {
  /** The registry: a file, or `etcd://...` (from --registry, $TOWNLOCK_REGISTRY or the default). */
  registry: string;
  /** Where `registry` came from, to name it in errors. */
  registryFrom: '--registry' | 'TOWNLOCK_REGISTRY' | 'default';
  /**
   * The raw bytes of the argument at `index` of the command's argument list when they are not valid
   * UTF-8 (Node decodes such arguments lossily), else undefined.
   */
  bytesOf(index: number): Buffer | undefined;
  /** `townlock <group> <name>`, for messages. */
  name: string;
  /** The first usage line, for "missing ..." messages. */
  usage: string;
}

/** A command's implementation: talks to the world only through ctx. */
export type CommandRun = (args: ParsedArgs, ctx: CliContext, input: CommandInput) => Promise<ExitCode>;

/** A command as dispatch and help know it. */
export interface CommandSpec {
  /** `[group, name]`. */
  path: [string, string];
  /** Other names (`rm` for `remove`). */
  aliases?: string[];
  summary: string;
  /** Usage lines, without the leading `Usage:`. */
  usage: string[];
  /** Help text between the usage and the options: what the arguments mean, exit status, caveats. */
  details?: string;
  options: OptionSpec[];
  /** The first positional ends the options (the command's own arguments follow it). */
  stopAtPositional?: boolean;
  /** Takes `--registry PATH` among its options too. */
  registry?: boolean;
  example: string;
  /** Loads the implementation. */
  load(): Promise<CommandRun>;
}

/** `--registry PATH`, accepted by every machine command as well as before the command words. */
export const REGISTRY_OPTION: OptionSpec = {
  long: 'registry',
  value: 'PATH',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, shown to the user as written
  help: 'registry file, or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] for the registry on etcd (default: $TOWNLOCK_REGISTRY, else ${XDG_CONFIG_HOME:-~/.config}/townlock/machines.json)',
};

/** `-h, --help`, which every command takes. */
export const HELP_OPTION: OptionSpec = { long: 'help', short: 'h', help: 'show this help and exit' };

/** Every command, in help order. */
export const COMMANDS: CommandSpec[] = [...MACHINE_COMMANDS, ...LOCK_COMMANDS, ...STORE_COMMANDS];

/** The options `spec` parses: its own, --help, and --registry for machine commands. */
export function optionsOf(spec: CommandSpec): OptionSpec[] {
  return [...spec.options, ...(spec.registry ? [REGISTRY_OPTION] : []), HELP_OPTION];
}
