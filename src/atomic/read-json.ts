/** readJsonFile: read and parse a JSON file, with errors that say where the problem is. */
import { readFile } from 'node:fs/promises';
import { JsonParseError } from './errors.js';

/** Reads `path` and parses it as JSON; a parse error is a {@link JsonParseError} with line and column. */
export async function readJsonFile<T = unknown>(path: string): Promise<T> {
  return parseJson<T>(await readFile(path, 'utf8'), path);
}

/** Parses `text` read from `path`; throws {@link JsonParseError} locating the first error. */
export function parseJson<T = unknown>(text: string, path: string): T {
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
 */
export function locateJsonError(text: string): { position: number; detail: string } {
  let i = 0;
  const fail = (detail: string): never => {
    throw { position: i, detail };
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const literal = (word: string) => {
    for (const ch of word) {
      if (text[i] !== ch) fail(`invalid literal, expected ${word}`);
      i++;
    }
  };
  const string = () => {
    i++;
    while (i < text.length) {
      const ch = text[i]!;
      if (ch === '"') {
        i++;
        return;
      }
      if (ch < ' ') fail('control character in string');
      if (ch === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('invalid \\u escape');
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? '')) fail('invalid escape');
      }
      i++;
    }
    fail('unterminated string');
  };
  const number = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail('invalid number');
    i += m![0].length;
  };
  const value = (): void => {
    ws();
    const ch = text[i];
    if (ch === undefined) fail('unexpected end of input');
    else if (ch === '{') container('}', true);
    else if (ch === '[') container(']', false);
    else if (ch === '"') string();
    else if (ch === 't') literal('true');
    else if (ch === 'f') literal('false');
    else if (ch === 'n') literal('null');
    else if (ch === '-' || (ch >= '0' && ch <= '9')) number();
    else fail(`unexpected character ${JSON.stringify(ch)}`);
  };
  const container = (close: string, isObject: boolean) => {
    i++;
    ws();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      if (isObject) {
        ws();
        if (text[i] !== '"') fail('expected a property name in double quotes');
        string();
        ws();
        if (text[i] !== ':') fail("expected ':' after property name");
        i++;
      }
      value();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === close) {
        i++;
        return;
      }
      fail(i >= text.length ? 'unexpected end of input' : `expected ',' or '${close}'`);
    }
  };
  try {
    value();
    ws();
    if (i < text.length) fail('unexpected data after the JSON value');
  } catch (located) {
    if (typeof located === 'object' && located && 'position' in located) {
      return located as { position: number; detail: string };
    }
    throw located;
  }
  return { position: 0, detail: 'invalid JSON' };
}
