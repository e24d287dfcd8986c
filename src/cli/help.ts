/** --help texts, rendered from the command table alone (no command module is loaded to print help). */
import type { OptionSpec } from './args.js';
import { type CommandSpec, optionsOf, REGISTRY_OPTION } from './spec.js';

export const VERSION = '0.1.0';

/** `-x, --exclusive` / `-w, --wait, --timeout SECONDS`. */
function flags(o: OptionSpec): string {
  const names = [
    ...(o.short ? [`-${o.short}`] : []),
    `--${o.long}`,
    ...(o.aliases ?? []).map((a) => `--${a}`),
  ];
  return `${names.join(', ')}${o.value ? ` ${o.value}` : ''}`;
}

/** Help lines are wrapped to this many columns. */
const COLUMNS = 100;

/** Two columns: flags, then help wrapped under itself (on the next line when the flags are wide). */
function optionLines(options: OptionSpec[]): string {
  const width = Math.min(30, Math.max(...options.map((o) => flags(o).length)));
  const indent = ' '.repeat(width + 4);
  return options
    .map((o) => {
      const f = flags(o);
      const help = wrap(o.help, COLUMNS - indent.length).join(`\n${indent}`);
      return f.length > width ? `  ${f}\n${indent}${help}` : `  ${f.padEnd(width)}  ${help}`;
    })
    .join('\n');
}

/** Splits `text` into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

/** `townlock --help`. */
export function mainHelp(commands: CommandSpec[]): string {
  const names = commands.map((c) => ({
    name: `${c.path.join(' ')}${c.aliases ? ` (${c.aliases.join(', ')})` : ''}`,
    summary: c.summary,
  }));
  const width = Math.max(...names.map((n) => n.name.length));
  return `townlock ${VERSION}: cross-process file locks and a shared machine registry

Usage: townlock [--registry PATH] <command> [options] [arguments]

Commands:
${names.map((n) => `  ${n.name.padEnd(width)}  ${n.summary}`).join('\n')}

Global options (before the command):
${optionLines([
  REGISTRY_OPTION,
  { long: 'help', short: 'h', help: "this help; with a command: that command's help" },
  { long: 'version', short: 'V', help: 'print the version' },
])}

Examples:
  townlock machine add build-01 --type ssh --host deploy@build-01:2222
  townlock machine list --json
  townlock machine exec build-01 uname -a
  townlock lock run -n state.json ./update.sh
  townlock json set state.json jobs.build.status '"done"'
  townlock log append events.jsonl '{"type": "deploy"}'

Exit codes (those of util-linux flock(1)):
  0      success
  1      lock busy or wait timed out (lock run -E changes it); a request that failed
         (machine not found, "local" removed, host key or authentication refused,
         json get: nothing at PATH)
  64     usage error
  65     bad data: corrupt registry or JSON file, invalid machine
  66     cannot open an input: the lock file or its directory, the registry, FILE, DIR, --key
  69     lock run: the command is not found or not executable; etcd refused the request
  70     internal error (a bug in townlock)
  71     any other operating-system error
  75     temporary failure: the machine or etcd cannot be reached now, or an etcd lock was lost
  128+N  lock run, machine exec: the command died of signal N; log tail -f: ended by it;
         machine exec: 141 when the reader of its output went away
  lock run and machine exec otherwise exit with the command's own status.
`;
}

/** `townlock machine --help`: every command of the group with all of its flags. */
export function groupHelp(group: string, commands: CommandSpec[]): string {
  const entries = commands.map((c) => {
    const all = optionsOf(c).filter((o) => o.long !== 'help');
    const flagList = all.length > 0 ? `\n      options: ${all.map(flags).join('; ')}` : '';
    const alias = c.aliases ? ` (alias: ${c.aliases.map((a) => `${c.path[0]} ${a}`).join(', ')})` : '';
    return `  ${c.usage.join('\n  ')}\n      ${c.summary}${alias}${flagList}`;
  });
  return `Usage: townlock ${group} <command> [options] [arguments]\n\nCommands:\n${entries.join('\n')}\n\nRun 'townlock ${group} <command> --help' for what each option means.\n`;
}

/** `townlock <group> <command> --help`. */
export function commandHelp(c: CommandSpec): string {
  const alias = c.aliases
    ? `\nAlias: ${c.aliases.map((a) => `townlock ${c.path[0]} ${a}`).join(', ')}\n`
    : '';
  return `${c.summary}\n\nUsage: ${c.usage.join('\n       ')}\n${alias}${c.details ? `\n${c.details}\n` : ''}\nOptions:\n${optionLines(optionsOf(c))}\n\nExample:\n  ${c.example}\n`;
}
