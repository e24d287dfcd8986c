/** readJsonFile: read and parse a JSON file, with errors that say where the problem is. */
import fs from 'node:fs';
import { InvalidOptionError } from '../errors.js';
import { JsonParseError } from './errors.js';

/** Longer texts cannot become one JavaScript string (V8 stops near 512 MB); refuse them up front. */
const MAX_BYTES = 256 * 2 ** 20;
// A FIFO or device must neither block the open nor be read forever (/dev/zero).
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/**
 * Reads `path` and parses it as JSON; a parse error is a {@link JsonParseError} with line and column. A
 * path that is not a regular file, or one over 256 MB, is ERR_INVALID_OPTION; OS errors pass through.
 */
export async function readJsonFile<T = unknown>(path: string): Promise<T> {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new InvalidOptionError('path', path, 'a non-empty string');
  }
  const handle = await fs.promises.open(path, READ_FLAGS);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new InvalidOptionError('path', path, 'a regular file');
    if (st.size > MAX_BYTES) throw new InvalidOptionError('path', path, 'a file of at most 256 MB');
    return parseJson<T>(await handle.readFile('utf8'), path);
  } finally {
    await handle.close();
  }
}

/** Parses `text` read from `path`; throws {@link JsonParseError} locating the first error. */
export function parseJson<T = unknown>(text: string, path: string): T {
  if (typeof text !== 'string') throw new InvalidOptionError('text', text, 'a string');
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    const { position, detail } = locateJsonError(text);
    const before = text.slice(0, position).split('\n');
    throw new JsonParseError(path, position, before.length, before.at(-1)!.length + 1, detail, err);
  }
}

/**
 * Finds the first syntax error in `text` with a small validating scanner. V8's own messages do not always
 * carry a position (Node 20: "Unexpected token ..."), so we find it ourselves; only runs after a failure.
 * Iterative, with an explicit stack: input nested 200,000 deep must not overflow the call stack.
 */
export function locateJsonError(text: string): { position: number; detail: string } {
  let i = 0;
  /** Containers still open: '}' or ']' is what closes each. */
  const open: string[] = [];
  const fail = (detail: string) => ({ position: i, detail });
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  /** Scans a string starting at its quote; returns an error detail or undefined. */
  const string = (): string | undefined => {
    i++;
    while (i < text.length) {
      const ch = text[i]!;
      if (ch === '"') {
        i++;
        return undefined;
      }
      if (ch < ' ') return 'control character in string';
      if (ch === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) return 'invalid \\u escape';
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? '')) return 'invalid escape';
      }
      i++;
    }
    return 'unterminated string';
  };
  /** Scans one scalar, or opens a container (then `next` says what its first member is). */
  let next = 'value' as 'value' | 'key' | 'after';
  const value = (): string | undefined => {
    ws();
    const ch = text[i];
    if (ch === undefined) return 'unexpected end of input';
    if (ch === '{' || ch === '[') {
      open.push(ch === '{' ? '}' : ']');
      i++;
      ws();
      if (text[i] === open.at(-1)) {
        open.pop();
        i++;
        next = 'after';
      } else next = ch === '{' ? 'key' : 'value';
      return undefined;
    }
    next = 'after';
    if (ch === '"') return string();
    for (const word of ['true', 'false', 'null']) {
      if (ch === word[0]) {
        for (const w of word) {
          if (text[i] !== w) return `invalid literal, expected ${word}`;
          i++;
        }
        return undefined;
      }
    }
    if (ch === '-' || (ch >= '0' && ch <= '9')) {
      const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
      if (!m) return 'invalid number';
      i += m[0].length;
      return undefined;
    }
    return `unexpected character ${JSON.stringify(ch)}`;
  };
  /** Scans `"key":`; the value comes next. */
  const key = (): string | undefined => {
    ws();
    if (text[i] !== '"') return 'expected a property name in double quotes';
    const bad = string();
    if (bad) return bad;
    ws();
    if (text[i] !== ':') return "expected ':' after property name";
    i++;
    next = 'value';
    return undefined;
  };
  let bad: string | undefined;
  do {
    if (next === 'value') bad = value();
    else if (next === 'key') bad = key();
    else {
      ws();
      const close = open.at(-1)!;
      if (text[i] === ',') {
        i++;
        next = close === '}' ? 'key' : 'value';
      } else if (text[i] === close) {
        open.pop();
        i++;
      } else bad = i >= text.length ? 'unexpected end of input' : `expected ',' or '${close}'`;
    }
  } while (!bad && (next !== 'after' || open.length > 0));
  if (bad) return fail(bad);
  ws();
  if (i < text.length) return fail('unexpected data after the JSON value');
  return { position: 0, detail: 'invalid JSON' };
}
