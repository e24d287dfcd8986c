/**
 * The townlock command line: global options, dispatch, help and error reporting. Pure: everything
 * outside comes through the CliContext that cli/main.ts builds.
 */
import { registryPath } from './args.js';
import { lockClean, lockRun, lockStatus } from './commands/lock.js';
import {
  machineAdd,
  machineExec,
  machineList,
  machineRemove,
  machineShow,
  machineTest,
} from './commands/machine.js';
import type { Command } from './commands/types.js';
import type { CliContext } from './context.js';
import { EXIT, type ExitCode, UsageError } from './errors.js';
import { printError } from './output.js';

/** Every command, in help order. */
export const COMMANDS: Command[] = [
  machineList,
  machineShow,
  machineAdd,
  machineRemove,
  machineExec,
  machineTest,
  lockRun,
  lockStatus,
  lockClean,
];

const VERSION = '0.1.0';

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function runCli(
  argv: string[],
  ctx: CliContext,
  commands: Command[] = COMMANDS,
): Promise<ExitCode> {
  let args: string[];
  let registryFlag: string | undefined;
  try {
    [args, registryFlag] = takeRegistryFlag(argv);
  } catch (err) {
    return printError(ctx, err);
  }
  const [group, name] = args;
  if (group === undefined || group === '--help' || group === '-h' || group === 'help') {
    ctx.stdout.write(mainHelp(commands));
    return group === undefined ? EXIT.usage : EXIT.ok;
  }
  if (group === '--version' || group === '-V') {
    ctx.stdout.write(`townlock ${VERSION}\n`);
    return EXIT.ok;
  }
  const groups = [...new Set(commands.map((c) => c.path[0]!))];
  if (!groups.includes(group)) return unknown(ctx, group, groups, 'command');
  const inGroup = commands.filter((c) => c.path[0] === group);
  if (name === undefined || name === '--help' || name === '-h') {
    ctx.stdout.write(groupHelp(group, inGroup));
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = inGroup.find((c) => c.path[1] === name);
  if (!command)
    return unknown(
      ctx,
      `${group} ${name}`,
      inGroup.map((c) => c.path.join(' ')),
      'command',
    );
  const rest = args.slice(2);
  const beforeDashDash = rest.indexOf('--') < 0 ? rest : rest.slice(0, rest.indexOf('--'));
  if (beforeDashDash.includes('--help') || beforeDashDash.includes('-h')) {
    ctx.stdout.write(commandHelp(command));
    return EXIT.ok;
  }
  try {
    return await command.run(rest, ctx, { registry: registryPath(registryFlag, ctx) });
  } catch (err) {
    if (err instanceof UsageError) err.hint ??= `see 'townlock ${command.path.join(' ')} --help'`;
    return printError(ctx, err);
  }
}

/** Removes `--registry PATH` / `--registry=PATH` (before any `--`) from argv. */
function takeRegistryFlag(argv: string[]): [string[], string | undefined] {
  const out: string[] = [];
  let registry: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (arg === '--registry') {
      registry = argv[++i];
      if (registry === undefined || registry === '')
        throw new UsageError('--registry needs a PATH', "see 'townlock --help'");
    } else if (arg.startsWith('--registry=')) {
      registry = arg.slice('--registry='.length);
    } else out.push(arg);
  }
  return [out, registry];
}

/** Reports an unknown command, suggesting the nearest known one; exit 64. */
function unknown(ctx: CliContext, given: string, known: string[], what: string): ExitCode {
  const nearest = known.map((k) => ({ k, d: distance(given, k) })).sort((a, b) => a.d - b.d)[0];
  const hint =
    nearest && nearest.d <= Math.max(2, Math.floor(given.length / 3))
      ? `did you mean '${nearest.k}'?`
      : "see 'townlock --help'";
  return printError(ctx, new UsageError(`unknown ${what} '${given}'`, hint));
}

/** Levenshtein edit distance, for suggestions. */
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

/** Top-level help. */
function mainHelp(commands: Command[]): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length));
  return `townlock ${VERSION}: cross-process file locks and a shared machine registry

Usage: townlock [--registry PATH] <command> [options]

Commands:
${commands.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`).join('\n')}

Global options:
  --registry PATH  registry file (default: $TOWNLOCK_REGISTRY, else
                   \${XDG_CONFIG_HOME:-~/.config}/townlock/machines.json)
  -h, --help       help for townlock or any command
  -V, --version    print the version

Examples:
  townlock machine add build-01 --type ssh --host deploy@build-01:2222
  townlock machine list --json
  townlock machine exec build-01 -- uname -a
  townlock lock run -n state.json -- ./update.sh

Exit codes (those of util-linux flock(1)):
  0    success
  1    lock busy or wait timed out (lock run -E changes it); a request that failed
       (machine not found, "local" removed, host key or authentication refused)
  64   usage error
  65   bad data: corrupt registry, invalid machine
  66   cannot open an input: the lock file or its directory, the registry, FILE, DIR, --key
  69   lock run: the command is not found or not executable
  70   internal error (a bug in townlock)
  71   any other operating-system error
  75   temporary failure: the machine cannot be reached now; try again
  128+N  lock run, machine exec: the command died of signal N
  lock run and machine exec otherwise exit with the command's own status.
`;
}

/** Help for a command group. */
function groupHelp(group: string, commands: Command[]): string {
  return `Usage: townlock ${group} <command>\n\nCommands:\n${commands
    .map((c) => `  ${c.usage.split('\n')[0]}\n      ${c.summary}`)
    .join('\n')}\n`;
}

/** Help for one command, with its example. */
function commandHelp(c: Command): string {
  return `${c.summary}\n\nUsage: ${c.usage}\n${c.details ? `\n${c.details}\n` : ''}\nExample:\n  ${c.example}\n`;
}
