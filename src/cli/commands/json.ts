/** `townlock json get|set`: JSON state files with JsonFile's guarantees, from a shell. */
import { JsonFile } from '../../store/json-file.js';
import { absolutePath, expectPositionals } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { printDocument, printJson, printLines } from '../output.js';
import type { CommandRun } from '../spec.js';
import { requireInput } from './_input.js';
import { getAt, pathKeys, setAt } from './_json-path.js';

export const get: CommandRun = async (args, ctx, input) => {
  if (args.positionals.length === 0) throw new UsageError('missing FILE', `usage: ${input.usage}`);
  if (args.positionals.length > 2) expectPositionals(args, ['FILE', 'PATH'], input.usage);
  const [file, path = ''] = args.positionals as [string, string?];
  const abs = absolutePath(ctx, file);
  const keys = pathKeys(path);
  requireInput(abs);
  const state = await JsonFile.open<unknown>(abs, { defaults: () => ({}) });
  const found = getAt(state.read(), keys);
  if (!found) {
    printLines(ctx.stderr, `townlock: ${file} has no value at ${JSON.stringify(path)} [ERR_NOT_FOUND]`);
    return EXIT.failure;
  }
  // -r: the string itself, as jq -r prints it (escaped only on a terminal).
  if (args.values.raw && typeof found.value === 'string') printDocument(ctx.stdout, found.value);
  else printJson(ctx.stdout, found.value);
  return EXIT.ok;
};

export const set: CommandRun = async (args, ctx, input) => {
  const [file, path, text] = expectPositionals(args, ['FILE', 'PATH', 'VALUE'], input.usage) as [
    string,
    string,
    string,
  ];
  const keys = pathKeys(path);
  const value = args.values.string ? text : parseValue(text, 'VALUE');
  const state = await JsonFile.open<unknown>(absolutePath(ctx, file), { defaults: () => ({}) });
  // An empty PATH replaces the whole document; otherwise the change is made on the latest version.
  if (keys.length === 0) await state.set(value);
  else await state.update((draft) => void setAt(draft, keys, value));
  return EXIT.ok;
};

/** Parses a JSON argument, or says how to pass a plain string. */
export function parseValue(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(
      `${what} ${JSON.stringify(text)} is not JSON`,
      `quote a string ('"${text}"') or pass --string`,
    );
  }
}
