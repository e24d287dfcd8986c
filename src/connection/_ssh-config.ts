/**
 * The part of OpenSSH's client configuration (ssh_config(5), usually ~/.ssh/config) that picks a machine:
 * `HostName`, `User`, `Port` and `IdentityFile`, from `Host` blocks and the lines before the first one.
 *
 * As ssh does: keywords are case-insensitive and take `Keyword value` or `Keyword=value`, with "quoted"
 * words and `#` comments; a `Host` line holds whitespace-separated patterns with `*` and `?`, matched
 * (case-sensitively) against the name given, and a matching `!pattern` excludes the block; for each
 * keyword the first value obtained wins, except IdentityFile, which accumulates. `Include` reads files
 * (`*` and `?` allowed in the last path component; relative paths are relative to the including file's
 * directory, which is ~/.ssh for the usual file) up to 16 levels deep.
 *
 * Not supported: `Match` blocks are skipped (their settings never apply), as is every other keyword;
 * no hostname canonicalisation. A missing file is an empty configuration.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';

/** What the configuration says about one host. */
export interface SshHostConfig {
  /** The real host name (`%h` and `%%` already expanded); undefined when not set. */
  hostName?: string;
  user?: string;
  port?: number;
  /** IdentityFile values in order, unexpanded (see {@link expandIdentityFile}). */
  identityFiles: string[];
}

/** A configuration file ssh would reject; the message names the file and the line. */
export class SshConfigError extends Error {}
SshConfigError.prototype.name = 'SshConfigError';

/** How deep Include may nest, as in OpenSSH (READCONF_MAX_DEPTH). */
const MAX_DEPTH = 16;

/** Reads the configuration at `path` and returns what applies to `alias` (the host as the user gave it). */
export function readSshConfig(path: string, alias: string): SshHostConfig {
  const found: SshHostConfig = { identityFiles: [] };
  readFile(path, alias, found, { active: true }, 0);
  if (found.hostName !== undefined) found.hostName = expandTokens(found.hostName, { h: alias });
  return found;
}

/** Expands `~` and the %-tokens ssh allows in IdentityFile: %d %h %p %r %u and %%. */
export function expandIdentityFile(
  file: string,
  values: { home: string; host: string; port: number; remoteUser: string; localUser: string },
): string {
  const expanded = expandTokens(file, {
    d: values.home,
    h: values.host,
    p: String(values.port),
    r: values.remoteUser,
    u: values.localUser,
  });
  if (expanded === '~') return values.home;
  return expanded.startsWith('~/') ? join(values.home, expanded.slice(2)) : expanded;
}

/** Replaces `%x` by `values[x]` and `%%` by `%`; unknown tokens stay as they are. */
function expandTokens(text: string, values: Record<string, string>): string {
  return text.replace(/%(.)/g, (all, key: string) => (key === '%' ? '%' : (values[key] ?? all)));
}

/** Reads one file into `found`; `state.active` says whether the lines being read apply to the host. */
function readFile(
  path: string,
  alias: string,
  found: SshHostConfig,
  state: { active: boolean },
  depth: number,
) {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SshConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
  text.split(/\r?\n/).forEach((line, i) => {
    const where = `${path} line ${i + 1}`;
    const parsed = parseLine(line, where);
    if (!parsed) return;
    const [keyword, args] = parsed;
    switch (keyword) {
      case 'host':
        state.active = hostMatches(args, alias);
        return;
      case 'match':
        state.active = false; // Match blocks are not supported: their settings never apply.
        return;
      case 'include': {
        if (depth >= MAX_DEPTH) throw new SshConfigError(`${where}: Include nested too deeply`);
        const outer = state.active;
        for (const file of args.flatMap((a) => includeFiles(a, dirname(path)))) {
          if (outer) readFile(file, alias, found, state, depth + 1);
          state.active = outer; // a Host line inside an included file ends with that file
        }
        return;
      }
    }
    if (!state.active) return;
    const value = args[0]!;
    if (keyword === 'hostname') found.hostName ??= value;
    else if (keyword === 'user') found.user ??= value;
    else if (keyword === 'identityfile') found.identityFiles.push(value);
    else if (keyword === 'port' && found.port === undefined) {
      const port = Number(value);
      if (!/^\d+$/.test(value) || port < 1 || port > 65535)
        throw new SshConfigError(`${where}: bad Port ${JSON.stringify(value)}`);
      found.port = port;
    }
  });
}

/** A line's lowercased keyword and its arguments; undefined for blank and comment lines. */
export function parseLine(line: string, where: string): [string, string[]] | undefined {
  const m = /^\s*([^\s=#][^\s=]*)\s*(?:=\s*|\s+|$)(.*)$/.exec(line);
  if (!m) return undefined;
  const args = splitWords(m[2]!, where);
  if (args.length === 0) throw new SshConfigError(`${where}: no argument after keyword "${m[1]}"`);
  return [m[1]!.toLowerCase(), args];
}

/** Splits arguments as ssh's argv_split does: whitespace, "double" or 'single' quotes, `\` escapes, `#` comments. */
function splitWords(text: string, where: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length || text[i] === '#') break;
    let word = '';
    let quote: string | undefined;
    for (; i < text.length; i++) {
      const c = text[i]!;
      if (quote) {
        if (c === quote) quote = undefined;
        else if (c === '\\' && (text[i + 1] === quote || text[i + 1] === '\\')) word += text[++i];
        else word += c;
      } else if (c === '"' || c === "'") quote = c;
      else if (/\s/.test(c)) break;
      else if (c === '\\' && i + 1 < text.length) word += text[++i];
      else word += c;
    }
    if (quote) throw new SshConfigError(`${where}: invalid quotes`);
    words.push(word);
  }
  return words;
}

/** Whether a Host line's patterns select `alias`: one pattern matches and no `!pattern` does. */
export function hostMatches(patterns: string[], alias: string): boolean {
  let matched = false;
  for (const p of patterns) {
    const negated = p.startsWith('!');
    if (wildcard(negated ? p.slice(1) : p).test(alias)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** A RegExp for an ssh pattern: `*` any run of characters, `?` one character, the rest literal. */
function wildcard(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 's');
}

/** The files an Include argument names (`~/` expanded; wildcards in the last component; sorted). */
function includeFiles(arg: string, baseDir: string): string[] {
  const path = arg.startsWith('~/')
    ? join(homedir(), arg.slice(2))
    : isAbsolute(arg)
      ? arg
      : join(baseDir, arg);
  const dir = dirname(path);
  const last = path.slice(dir.length + 1);
  if (!/[*?]/.test(last)) return [path];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const re = wildcard(last);
  return names
    .filter((n) => re.test(n) && !(n.startsWith('.') && !last.startsWith('.')))
    .sort()
    .map((n) => join(dir, n));
}
