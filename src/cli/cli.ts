/**
 * The townlock command line: global options, dispatch, help and error reporting. Pure: everything
 * outside comes through the CliContext that cli/main.ts builds. A command's module is imported only
 * when that command runs; --help and --version load none.
 */
import { nearest, parse, registryPath } from './args.js';
import type { CliContext } from './context.js';
import { EXIT, type ExitCode, UsageError } from './errors.js';
import { commandHelp, groupHelp, mainHelp, VERSION } from './help.js';
import { printError, printLines } from './output.js';
import { COMMANDS, type CommandSpec, HELP_OPTION, optionsOf, REGISTRY_OPTION } from './spec.js';

const GLOBAL_OPTIONS = [REGISTRY_OPTION, HELP_OPTION, { long: 'version', short: 'V', help: '' }];

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function runCli(argv: string[], ctx: CliContext, commands = COMMANDS): Promise<ExitCode> {
  let spec: CommandSpec | undefined;
  try {
    const global = parse(argv, GLOBAL_OPTIONS, true);
    if (global.values.help) {
      // `townlock --help lock run` is `townlock lock run --help` (unknown words are the same usage errors).
      const [words] = global.positionals;
      if (words === undefined) return print(ctx, mainHelp(commands));
      const name = global.rest[0];
      const asked = name === undefined || name.startsWith('-') ? [words] : [words, name];
      return runCli([...asked, '--help'], ctx, commands);
    }
    if (global.values.version) return print(ctx, `townlock ${VERSION}\n`);
    const [group] = global.positionals;
    if (group === undefined) throw new UsageError('missing command', "see 'townlock --help' for the list");
    const groups = [...new Set(commands.map((c) => c.path[0]))];
    if (!groups.includes(group)) throw unknownCommand(group, groups);
    const inGroup = commands.filter((c) => c.path[0] === group);
    const [name, ...args] = global.rest;
    if (name === '--help' || name === '-h') return print(ctx, groupHelp(group, inGroup));
    if (name === undefined || name.startsWith('-'))
      throw new UsageError(
        name === undefined
          ? `missing ${group} command`
          : `unknown option '${name}' before the ${group} command`,
        `give one of: ${inGroup.map((c) => c.path[1]).join(', ')} (see 'townlock ${group} --help')`,
      );
    spec = inGroup.find((c) => c.path[1] === name || c.aliases?.includes(name));
    if (!spec) {
      const names = inGroup.flatMap((c) => [c.path[1], ...(c.aliases ?? [])].map((n) => `${group} ${n}`));
      throw unknownCommand(`${group} ${name}`, names);
    }
    const parsed = parse(args, optionsOf(spec), spec.stopAtPositional);
    if (parsed.values.help) return print(ctx, commandHelp(spec));
    const registryFlag = parsed.values.registry ?? global.values.registry;
    const flag = typeof registryFlag === 'string' ? registryFlag : undefined;
    const registry = registryPath(flag, ctx);
    const registryFrom =
      flag !== undefined ? '--registry' : ctx.env.TOWNLOCK_REGISTRY ? 'TOWNLOCK_REGISTRY' : 'default';
    const offset = argv.length - args.length;
    const run = await spec.load();
    return await run(parsed, ctx, {
      registry,
      registryFrom,
      bytesOf: (index) => ctx.argBytes?.[offset + index],
      name: `townlock ${spec.path.join(' ')}`,
      usage: spec.usage[0]!,
    });
  } catch (err) {
    if (err instanceof UsageError)
      err.hint ??= `see '${spec ? `townlock ${spec.path.join(' ')}` : 'townlock'} --help'`;
    return printError(ctx, err);
  }
}

/** Writes help or version text to stdout; exit 0. */
function print(ctx: CliContext, text: string): ExitCode {
  printLines(ctx.stdout, ...text.replace(/\n$/, '').split('\n'));
  return EXIT.ok;
}

/** The error for an unknown command, suggesting the nearest known one. */
function unknownCommand(given: string, known: string[]): UsageError {
  const near = nearest(given, known);
  return new UsageError(
    `unknown command '${given}'`,
    near ? `did you mean '${near}'?` : "see 'townlock --help' for the list",
  );
}
